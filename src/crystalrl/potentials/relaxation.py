"""FIRE relaxation with the cell, one structure at a time or many in lock step.

Both paths run ASE's own ``FIRE`` over ASE's ``FrechetCellFilter`` for every structure
(the batched path's filter remembers the coordinates it set rather than recovering them
with ``logm``), so a relaxed energy means the same thing whichever path produced it: same
step rule, same parameters, same ``fmax`` test on atoms and cell, same step limit. They
differ only in how forces reach the optimiser. The serial path asks the potential's ASE
calculator, one structure per call. The batched path asks the potential once per
optimiser step for every structure still relaxing: on a CPU, CHGNet spends most of a
one-structure call on fixed costs (Python dispatch, small tensor kernels), which a batch
shares. A structure leaves the batch when it converges, fails or reaches the step limit,
and the next queued structure takes its place, so the batch stays full until the queue
runs dry. (CHGNet's batched forces come from one backward pass, its calculator's from
two; they agree to about 1e-4 eV/Å, enough for a long relaxation to end in another
minimum now and then.)

:func:`relax` is the one relaxation routine (FIRE, cell included): the hull's elemental
prototypes, ``crystalrl.relax``, ``evaluate relax=true`` and ``EnergyReward(relax=...)``
all use it, so a relaxed energy means the same thing everywhere, whether the potential
steps structures one at a time or (CHGNet) many together.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from crystalrl.gc_pause import collector_paused
from crystalrl.potentials.cell_filter import remembering_frechet_filter
from crystalrl.potentials.energy_model import POTENTIAL_ERRORS
from crystalrl.potentials.from_config import make_energy_model
from crystalrl.potentials.relax_result import (
    NO_STRUCTURE,
    SKIPPED,
    RelaxResult,
    mean_displacement,
)

#: One potential call for a batch: for each ASE ``Atoms``, (total energy in eV, forces in
#: eV/Å, stress in eV/Å³ as ASE's 6-vector or a 3x3 matrix), or where it failed ``None``
#: or the exception that says why.
BatchEvaluate = Callable[
    [Sequence[Any]], list[tuple[float, np.ndarray, np.ndarray] | Exception | None]
]


def _quiet():
    """ASE and the potentials print and warn per call; a relaxation of thousands would
    bury the log."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def _calling_potential():
    """Where a potential gives forces: with autograd on, and quiet.

    Forces and stress are gradients of the energy, so they need autograd even when the
    caller holds ``torch.no_grad()`` or ``torch.inference_mode()``: the RL rollout scores
    its samples under the first and Lightning validates under the second, and there every
    relaxation of the reward failed and fell back, unnoticed, to single points."""
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode(False))
    stack.enter_context(torch.enable_grad())
    stack.enter_context(_quiet())
    return stack


def _precheck(structure, skip) -> RelaxResult | None:
    if structure is None:
        return RelaxResult(error=NO_STRUCTURE)
    if skip is not None and skip(structure):
        return RelaxResult(error=SKIPPED)
    return None


def _optimizer(atoms, relax_cell: bool, remember: bool = False):
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    if not relax_cell:
        return FIRE(atoms, logfile=None)
    return FIRE(
        remembering_frechet_filter(atoms) if remember else FrechetCellFilter(atoms), logfile=None
    )


def _result(atoms, frac_before, e_before, e_after, steps, converged, seconds) -> RelaxResult:
    from pymatgen.io.ase import AseAtomsAdaptor

    if not math.isfinite(e_after):
        raise FloatingPointError(f"energy {e_after} after relaxation")
    displacement = mean_displacement(
        frac_before, atoms.get_scaled_positions(wrap=False), atoms.cell.array
    )
    atoms.calc = None  # the structure carries no calculator results
    return RelaxResult(
        structure=AseAtomsAdaptor.get_structure(atoms),
        energy_per_atom=e_after,
        initial_energy_per_atom=e_before,
        steps=int(steps),
        converged=bool(converged),
        displacement=displacement,
        seconds=seconds,
    )


def relax_serial(
    structure, calculator, fmax: float, max_steps: int, relax_cell: bool, skip=None
) -> RelaxResult:
    """One structure with ``calculator``: ``FIRE(...).run(fmax, max_steps)``."""
    start = time.perf_counter()
    if (early := _precheck(structure, skip)) is not None:
        return early
    try:
        from pymatgen.io.ase import AseAtomsAdaptor

        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = calculator
        n = len(atoms)
        frac_before = atoms.get_scaled_positions(wrap=False)
        with _calling_potential():
            e_before = float(atoms.get_potential_energy()) / n
            optimizer = _optimizer(atoms, relax_cell)
            converged = optimizer.run(fmax=fmax, steps=max_steps)
            e_after = float(atoms.get_potential_energy()) / n
        return _result(
            atoms,
            frac_before,
            e_before,
            e_after,
            optimizer.nsteps,
            converged,
            time.perf_counter() - start,
        )
    except POTENTIAL_ERRORS as exc:  # the potential failed on this structure: a failed record
        return RelaxResult(
            error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start
        )


class _GradientOnce:
    """An optimisable that computes the filter's gradient once per position.

    ``FrechetCellFilter`` turns stress into cell forces with a matrix exponential and its
    Fréchet derivative on every call; the batched loop asks for the gradient to test
    convergence and FIRE asks again to step, at the same positions."""

    def __init__(self, inner):
        self.inner = inner
        self.cached = None

    def get_gradient(self):
        if self.cached is None:
            self.cached = self.inner.get_gradient()
        return self.cached

    def set_x(self, x):
        self.cached = None
        self.inner.set_x(x)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class _Relaxing:
    """One structure's place in the batch: its atoms, its own FIRE state and its share of
    the batch's time."""

    def __init__(self, index: int, atoms, relax_cell: bool):
        self.index = index
        self.atoms = atoms
        self.frac_before = atoms.get_scaled_positions(wrap=False)
        self.optimizer = _optimizer(atoms, relax_cell, remember=True)
        self.optimizer.optimizable = _GradientOnce(self.optimizer.optimizable)
        self.e_before = math.nan
        self.seconds = 0.0

    def take(self, evaluation) -> float:
        """Hand the potential's results for the current positions to ASE; energy/atom."""
        from ase.calculators.singlepoint import SinglePointCalculator

        energy, forces, stress = evaluation
        self.atoms.calc = SinglePointCalculator(
            self.atoms, energy=energy, free_energy=energy, forces=forces, stress=stress
        )
        self.optimizer.optimizable.cached = None
        if not (np.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()):
            raise FloatingPointError(f"the potential returned energy {energy} or NaN forces")
        e = float(energy) / len(self.atoms)
        if math.isnan(self.e_before):
            self.e_before = e
        return e

    def converged(self, fmax: float) -> bool:
        optimizer = self.optimizer
        optimizer.fmax = fmax
        return bool(optimizer.gradient_converged(optimizer.optimizable.get_gradient()))

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.nsteps += 1


def relax_batched(
    structures: Sequence,
    evaluate: BatchEvaluate,
    fmax: float = 0.05,
    max_steps: int = 300,
    relax_cell: bool = True,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    skip: Callable[[Any], bool] | None = None,
) -> list[RelaxResult]:
    """Relax ``structures`` with up to ``batch_size`` of them in one ``evaluate`` call per
    FIRE step; the same results as :func:`relax_serial` on each, in the input's order.

    Each structure's steps, convergence test and step limit are exactly those of
    ``FIRE.run(fmax, max_steps)``: the test runs before the first step and after each.
    ``seconds`` is each structure's share of the calls it took part in, so the seconds
    add up to the wall time.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    out: list[RelaxResult | None] = [None] * len(structures)
    queue: deque[int] = deque()
    for i, structure in enumerate(structures):
        early = _precheck(structure, skip)
        if early is not None:
            out[i] = early
            if progress:
                progress(1)
        else:
            queue.append(i)

    def finish(member: _Relaxing, result: RelaxResult) -> None:
        out[member.index] = result
        if progress:
            progress(1)

    batch: list[_Relaxing] = []
    while queue or batch:
        start = time.perf_counter()
        while queue and len(batch) < batch_size:
            i = queue.popleft()
            try:
                batch.append(_Relaxing(i, AseAtomsAdaptor.get_atoms(structures[i]), relax_cell))
            except POTENTIAL_ERRORS as exc:
                out[i] = RelaxResult(error=f"{type(exc).__name__}: {exc}")
                if progress:
                    progress(1)
        if not batch:
            break
        with _calling_potential(), collector_paused():
            evaluations = evaluate([m.atoms for m in batch])
        share = (time.perf_counter() - start) / len(batch)
        still: list[_Relaxing] = []
        for member, evaluation in zip(batch, evaluations, strict=True):
            member.seconds += share
            try:
                if isinstance(evaluation, Exception):
                    raise evaluation
                if evaluation is None:
                    raise RuntimeError("the potential failed on this structure")
                with _quiet():
                    energy = member.take(evaluation)
                    converged = member.converged(fmax)
                    if not converged and member.optimizer.nsteps < max_steps:
                        member.step()
                        still.append(member)
                        continue
                finish(
                    member,
                    _result(
                        member.atoms,
                        member.frac_before,
                        member.e_before,
                        energy,
                        member.optimizer.nsteps,
                        converged,
                        member.seconds,
                    ),
                )
            except POTENTIAL_ERRORS as exc:
                finish(
                    member,
                    RelaxResult(error=f"{type(exc).__name__}: {exc}", seconds=member.seconds),
                )
        batch = still
    return [r if r is not None else RelaxResult(error="not relaxed") for r in out]


def serial_evaluate(calculator) -> BatchEvaluate:
    """A :data:`BatchEvaluate` that asks an ASE calculator one structure at a time: the
    batched loop's bookkeeping on any potential (tests compare it with the serial path)."""

    def evaluate(atoms_list: Sequence) -> list:
        out = []
        for atoms in atoms_list:
            probe = atoms.copy()
            probe.calc = calculator
            try:
                out.append(
                    (
                        float(probe.get_potential_energy()),
                        probe.get_forces(),
                        probe.get_stress(),
                    )
                )
            except POTENTIAL_ERRORS as exc:
                out.append(exc)
        return out

    return evaluate


def relax(
    structures: Sequence,
    model: Any = None,
    fmax: float = 0.05,
    max_steps: int = 300,
    relax_cell: bool = True,
    progress: Callable[[int], None] | None = None,
    skip: Callable[[Any], bool] | None = None,
) -> list[RelaxResult]:
    """Relax each structure with ASE's FIRE on ``model`` (see :func:`relax_batched`).

    ``model`` is anything :func:`make_energy_model` takes (``None``: CHGNet). With
    ``relax_cell`` the cell relaxes too, through ASE's ``FrechetCellFilter``, whose
    log-strain steps stay well-conditioned for strongly strained cells. A structure that is
    ``None``, flagged by ``skip`` (callers pass cells a potential should not see at all,
    such as collapsed ones) or that the potential fails on gives a failed
    :class:`RelaxResult`. Not converged within ``max_steps`` is not a failure: the last
    structure is kept and ``converged`` is False.

    A potential with ``batched_forces`` (CHGNet) relaxes ``batch_size`` structures in
    lock step, one potential call per FIRE step for all of them: on a CPU one call per
    structure spends most of its time on fixed costs. Any other ASE calculator relaxes one
    structure at a time. In the batched path a CHGNet graph with an isolated atom (none
    within 6 Å) fails its structure, as it fails a single-point energy.
    """
    energy_model = make_energy_model(model)
    options = {"fmax": fmax, "max_steps": max_steps, "relax_cell": relax_cell, "skip": skip}
    if energy_model.batched_forces:
        return relax_batched(
            structures,
            energy_model.evaluate_batch,
            batch_size=int(getattr(energy_model, "batch_size", 64)),
            progress=progress,
            **options,
        )
    calculator = energy_model.ase_calculator()
    out = []
    for structure in structures:
        out.append(relax_serial(structure, calculator, **options))
        if progress:
            progress(1)
    return out

"""Single-point energies from a machine-learned potential (CHGNet by default, any ASE calculator).

E_hull is only meaningful when the generated structures and the reference hull are
evaluated with the same potential, so every energy model carries a ``key`` that names the
potential and its weights; cached reference energies are keyed by it.
A structure the potential cannot handle (isolated atoms, overlapping atoms, a broken
cell) gets NaN, never an exception: callers treat NaN as a failed energy.

Commands pick a potential from the ``configs/potential/`` group (``potential=emt``); a new
file there with a ``_target_`` (an :class:`EnergyModel` or any ASE calculator) adds one.
This module sits below ``reference`` and ``metrics`` and imports nothing of crystalrl but
:mod:`crystalrl.gc_pause` (and, inside :func:`relax`, :mod:`crystalrl.relaxation`).

:func:`relax` is the one relaxation routine (FIRE, cell included): the hull's elemental
prototypes, ``crystalrl.relax``, ``evaluate relax=true`` and ``EnergyReward(relax=...)``
all use it, so a relaxed energy means the same thing everywhere, whether the potential
steps structures one at a time or (CHGNet) many together.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crystalrl.gc_pause import collector_paused

#: What a potential raises on a structure it cannot handle (isolated or overlapping atoms,
#: a broken cell, an element it has no parameters for: CHGNet's ValueError and
#: RuntimeError, ASE's CalculatorError and NotImplementedError, torch's RuntimeError and
#: IndexError, numpy's LinAlgError). Such a structure gets NaN; anything else (a TypeError,
#: an AttributeError) is a bug and propagates. Evaluation counts the NaNs (energy_failed).
POTENTIAL_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    RuntimeError,
    ArithmeticError,
    IndexError,
    KeyError,
)


class EnergyModel:
    """Energies per atom (eV/atom) of pymatgen structures; NaN where the model fails."""

    #: Identifies the potential and its weights; part of every cache key.
    key: str = "undefined"

    def energies(
        self, structures: Sequence, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    def ase_calculator(self) -> Any:
        """An ASE calculator with forces and stress: what :func:`relax` drives."""
        raise NotImplementedError

    #: A potential that predicts many structures in one call sets this and implements
    #: :meth:`evaluate_batch`; :func:`relax` then steps its structures together.
    batched_forces: bool = False

    def evaluate_batch(self, atoms_list: Sequence) -> list:
        """Energy (eV), forces (eV/Å) and stress (eV/Å³) of ASE ``Atoms`` in one call each
        batch; ``None`` for a structure the potential fails on."""
        raise NotImplementedError


class CHGNetEnergy(EnergyModel):
    """CHGNet (weights ship with the pip package), batched graph prediction.

    Graphs are built one structure at a time so that a structure CHGNet rejects costs only
    itself; the rest are predicted in batches of ``batch_size``. ``num_threads`` sets
    torch's intra-op threads while predicting and restores them afterwards.
    """

    def __init__(
        self,
        model_name: str = "0.3.0",
        batch_size: int = 64,
        num_threads: int | None = None,
        device: str = "cpu",
    ):
        self.model_name = model_name
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.device = device
        self.key = f"chgnet-{model_name}"
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from chgnet.model import CHGNet

            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._model = CHGNet.load(
                    model_name=self.model_name, use_device=self.device, verbose=False
                )
            self._model.eval()
        return self._model

    def energies(
        self, structures: Sequence, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        out = np.full(len(structures), np.nan)
        # graphs are many small objects alive until their batch is predicted: without the
        # pause, Python's collector traverses a loaded process's every object for them
        with self._threads(), collector_paused():
            for start in range(0, len(structures), self.batch_size):
                chunk = structures[start : start + self.batch_size]
                graphs, where = [], []
                for i, s in enumerate(chunk):
                    graph = self._graph(s)
                    if graph is not None:
                        graphs.append(graph)
                        where.append(start + i)
                if graphs:
                    for i, e in zip(where, self._predict(graphs), strict=True):
                        out[i] = e
                if progress:
                    progress(len(chunk))
        out[~np.isfinite(out)] = np.nan
        return out

    @contextlib.contextmanager
    def _threads(self):
        import torch

        old_threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(old_threads)

    batched_forces = True

    def evaluate_batch(self, atoms_list: Sequence) -> list:
        """One batched CHGNet pass over all graphs, in the units ``CHGNetCalculator``
        gives ASE (energy in eV, stress GPa -> eV/Å³); when the batch fails, one pass per
        graph, so that only the bad one fails."""
        from ase.units import GPa
        from pymatgen.io.ase import AseAtomsAdaptor

        out: list = [None] * len(atoms_list)
        graphs, where = [], []
        for i, atoms in enumerate(atoms_list):
            graph = self._graph(AseAtomsAdaptor.get_structure(atoms))
            if graph is not None:
                graphs.append(graph)
                where.append(i)
        if not graphs:
            return out
        with self._threads():
            try:
                preds = self._efs(graphs)
            except POTENTIAL_ERRORS:
                preds = []
                for g in graphs:
                    try:
                        preds.extend(self._efs([g]))
                    except POTENTIAL_ERRORS as exc:
                        preds.append(exc)
        for i, p in zip(where, preds, strict=True):
            out[i] = p if isinstance(p, Exception) else (p[0], p[1], p[2] * GPa)
        return out

    def _efs(self, graphs: list) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """Energy (eV), forces and stress (GPa) of each graph from ONE backward pass.

        ``CHGNet.forward(task="efs")`` takes two (forces, then stress), each building a
        second-order graph for training; relaxation needs neither. The values are
        CHGNet's: the same batched graph, the same derivatives (stress = dE/dstrain / V).
        """
        import torch
        from chgnet.model.model import BatchedGraph

        model = self.model
        batch = BatchedGraph.from_graphs(
            graphs,
            bond_basis_expansion=model.bond_basis_expansion,
            angle_basis_expansion=model.angle_basis_expansion,
            compute_stress=True,
        )
        pred = model._compute(batch, compute_force=False, compute_stress=False)
        n_atoms = torch.tensor([len(p) for p in batch.atom_positions], dtype=pred["e"].dtype)
        composition = 0 if model.composition_model is None else model.composition_model(graphs)
        per_atom = pred["e"] + composition
        total = per_atom * n_atoms if model.is_intensive else per_atom
        n = len(graphs)
        grads = torch.autograd.grad(total.sum(), [*batch.atom_positions, *batch.strains])
        out = []
        for k in range(n):
            stress = grads[n + k] / batch.volumes[k] * 160.21766208
            out.append(
                (
                    float(total[k]),
                    -grads[k].detach().cpu().numpy(),
                    stress.detach().cpu().numpy(),
                )
            )
        return out

    def _graph(self, structure):
        if structure is None:
            return None
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                return self.model.graph_converter(structure)  # isolated atoms raise: a failure
        except POTENTIAL_ERRORS:
            return None

    def _predict(self, graphs: list) -> list[float]:
        import torch

        with torch.no_grad():  # energies only: no autograd graph, about 6x faster on a CPU
            return self._predict_graphs(graphs)

    def _predict_graphs(self, graphs: list) -> list[float]:
        try:
            preds = self.model.predict_graph(graphs, task="e", batch_size=len(graphs))
        except POTENTIAL_ERRORS:  # one bad graph spoils the batch: retry them one by one
            preds = []
            for g in graphs:
                try:
                    preds.append(self.model.predict_graph(g, task="e"))
                except POTENTIAL_ERRORS:
                    preds.append({"e": math.nan})
        if isinstance(preds, dict):
            preds = [preds]
        return [float(p["e"]) for p in preds]

    def ase_calculator(self) -> Any:
        from chgnet.model.dynamics import CHGNetCalculator

        with contextlib.redirect_stdout(io.StringIO()):
            return CHGNetCalculator(model=self.model, use_device=self.device)


class ASEEnergy(EnergyModel):
    """Any ASE calculator, one structure at a time."""

    def __init__(self, calculator: Any, key: str | None = None):
        self.calculator = calculator
        self.key = key or _calculator_key(calculator)

    def energies(
        self, structures: Sequence, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        from pymatgen.io.ase import AseAtomsAdaptor

        out = np.full(len(structures), np.nan)
        for i, s in enumerate(structures):
            if s is not None:
                try:
                    atoms = AseAtomsAdaptor.get_atoms(s)
                    atoms.calc = self.calculator
                    out[i] = float(atoms.get_potential_energy()) / len(atoms)
                except POTENTIAL_ERRORS:
                    pass
            if progress:
                progress(1)
        out[~np.isfinite(out)] = np.nan
        return out

    def ase_calculator(self) -> Any:
        return self.calculator


def _calculator_key(calculator) -> str:
    cls = type(calculator)
    params = getattr(calculator, "parameters", {}) or {}
    try:
        params = json.dumps(dict(params), sort_keys=True, default=str)
    except TypeError:
        params = repr(params)
    return f"ase:{cls.__module__}.{cls.__qualname__}:{params}"


def make_energy_model(spec: Any = None) -> EnergyModel:
    """An energy model from a config: ``None`` -> CHGNet; a ``_target_`` mapping -> whatever
    it instantiates (an :class:`EnergyModel`, or an ASE calculator that gets wrapped); an
    object -> itself (wrapped when it is an ASE calculator).

    A mapping that instantiates a calculator is keyed by the mapping itself (its JSON), so
    two configs name one cache only when they describe the same calculator."""
    if spec is None:
        return CHGNetEnergy()
    if isinstance(spec, EnergyModel):
        return spec
    key = None
    if _is_mapping(spec):
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        plain = OmegaConf.to_container(spec, resolve=True) if not isinstance(spec, dict) else spec
        key = "ase:" + json.dumps(plain, sort_keys=True, default=str)
        spec = instantiate(plain, _convert_="all")
        if isinstance(spec, EnergyModel):
            return spec
    from ase.calculators.calculator import BaseCalculator

    if isinstance(spec, BaseCalculator):
        return ASEEnergy(spec, key=key)
    raise TypeError(
        f"cannot use {type(spec).__name__} as a potential: expected an ASE calculator or an "
        "EnergyModel (configure it with _target_)"
    )


def _is_mapping(obj) -> bool:
    if isinstance(obj, Mapping):
        return True
    try:
        from omegaconf import DictConfig

        return isinstance(obj, DictConfig)
    except ImportError:  # pragma: no cover
        return False


# ---------------------------------------------------------------------- relaxation
@dataclass
class RelaxResult:
    """One structure's relaxation. A failure is a record (``structure`` is ``None`` and
    ``error`` says why), not an exception, so one bad crystal never stops a batch."""

    #: The relaxed pymatgen structure; ``None`` when the relaxation failed.
    structure: Any = None
    #: Energy per atom (eV/atom) at the end and at the start, from the potential's calculator.
    energy_per_atom: float = math.nan
    initial_energy_per_atom: float = math.nan
    #: FIRE steps taken; ``converged``: every force (and the cell's stress) under ``fmax``.
    steps: int = 0
    converged: bool = False
    #: Mean distance (Å) an atom moved relative to the lattice, see :func:`mean_displacement`.
    displacement: float = math.nan
    seconds: float = 0.0
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.structure is None


def mean_displacement(frac_before: np.ndarray, frac_after: np.ndarray, cell: np.ndarray) -> float:
    """Mean minimum-image distance (Å) between two sets of fractional coordinates, measured
    in the final ``cell``.

    Comparing fractional coordinates removes the cell change: a uniform strain, which
    moves every atom with the lattice, counts as no displacement, while an atom that moved
    within the cell counts by how far it moved in the relaxed cell.
    """
    from ase.geometry import find_mic

    delta = np.asarray(frac_after, dtype=np.float64) - np.asarray(frac_before, dtype=np.float64)
    delta -= np.round(delta)
    _, lengths = find_mic(delta @ np.asarray(cell, dtype=np.float64), cell, pbc=True)
    return float(np.mean(lengths)) if len(lengths) else 0.0


def relax(
    structures: Sequence,
    model: Any = None,
    fmax: float = 0.05,
    max_steps: int = 300,
    relax_cell: bool = True,
    progress: Callable[[int], None] | None = None,
    skip: Callable[[Any], bool] | None = None,
) -> list[RelaxResult]:
    """Relax each structure with ASE's FIRE on ``model`` (see :mod:`crystalrl.relaxation`).

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
    from crystalrl import relaxation

    energy_model = make_energy_model(model)
    options = {"fmax": fmax, "max_steps": max_steps, "relax_cell": relax_cell, "skip": skip}
    if energy_model.batched_forces:
        return relaxation.relax_batched(
            structures,
            energy_model.evaluate_batch,
            batch_size=int(getattr(energy_model, "batch_size", 64)),
            progress=progress,
            **options,
        )
    calculator = energy_model.ase_calculator()
    out = []
    for structure in structures:
        out.append(relaxation.relax_serial(structure, calculator, **options))
        if progress:
            progress(1)
    return out

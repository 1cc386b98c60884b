"""What every potential is to the rest of the package: energies per atom, NaN where it fails.

E_hull is only meaningful when the generated structures and the reference hull are
evaluated with the same potential, so every energy model carries a ``key`` that names the
potential and its weights; cached reference energies are keyed by it.
A structure the potential cannot handle (isolated atoms, overlapping atoms, a broken
cell) gets NaN, never an exception: callers treat NaN as a failed energy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
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


def loading_weights():
    """Where a potential loads its weights: outside ``torch.inference_mode``.

    A model first used inside Lightning's validation (which runs under inference mode)
    would otherwise hold inference tensors for the rest of the run, and autograd refuses
    them: every force, hence every relaxation, would fail from then on."""
    import torch

    return torch.inference_mode(False)


#: The lowest energy per atom (eV/atom) a potential may report for a real crystal. The
#: lowest of the 41,456 Materials Project crystals of the default reference is -14.3 for
#: both CHGNet and SevenNet; SevenNet gives cells with overlapping atoms -1e3 to -1e9, which
#: would otherwise count as the most stable crystals ever made. Below it: a failed energy.
MIN_ENERGY_PER_ATOM = -15.0

#: The highest for a potential fitted to the Materials Project's DFT energies (CHGNet,
#: SevenNet): the reference's highest is -0.02 eV/atom with SevenNet, and 15 eV/atom above
#: the free atoms takes atoms on top of each other. SevenNet gives such cells up to +4e10
#: eV/atom, which alone made the base's mean E_hull read 4e7 eV/atom. A classical or toy
#: calculator (EMT) has its own zero and reports tens of eV/atom for squeezed cells, so
#: an arbitrary ASE calculator is held to the lower bound only.
MAX_ENERGY_PER_ATOM = 15.0


def failed_as_nan(energies: np.ndarray, highest: float = MAX_ENERGY_PER_ATOM) -> np.ndarray:
    """NaN for every energy per atom that is not finite or lies outside
    [:data:`MIN_ENERGY_PER_ATOM`, ``highest``]: the potential failed there, whatever number
    it returned."""
    energies = np.asarray(energies, dtype=float).copy()
    with np.errstate(invalid="ignore"):
        outside = (energies < MIN_ENERGY_PER_ATOM) | (energies > highest)
        energies[~np.isfinite(energies) | outside] = np.nan
    return energies


class EnergyModel:
    """Energies per atom (eV/atom) of pymatgen structures; NaN where the model fails."""

    #: Identifies the potential and its weights; part of every cache key.
    key: str = "undefined"

    def energies(
        self, structures: Sequence, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    #: torch's intra-op threads while predicting (None: leave torch's setting)
    num_threads: int | None = None
    #: structures per forward pass of a batched potential
    batch_size: int = 1

    @contextlib.contextmanager
    def _threads(self):
        """``num_threads`` while predicting, torch's own setting restored afterwards."""
        import torch

        old_threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            yield
        finally:
            torch.set_num_threads(old_threads)

    def _batched_energies(
        self,
        structures: Sequence,
        graph: Callable[[Any], Any],
        predict: Callable[[list, list[int]], Sequence[float]],
        progress: Callable[[int], None] | None,
    ) -> np.ndarray:
        """Energies per atom of ``structures``, ``batch_size`` at a time: ``graph`` turns a
        structure into the potential's input (None: it cannot take it, NaN), ``predict``
        gives the energies per atom of a chunk's graphs (and their indices)."""
        out = np.full(len(structures), np.nan)
        # graphs are many small objects alive until their batch is predicted: without the
        # pause, Python's collector traverses a loaded process's every object for them
        with self._threads(), collector_paused():
            for start in range(0, len(structures), self.batch_size):
                chunk = structures[start : start + self.batch_size]
                graphs, where = [], []
                for i, s in enumerate(chunk):
                    g = None if s is None else graph(s)
                    if g is not None:
                        graphs.append(g)
                        where.append(start + i)
                if graphs:
                    out[where] = predict(graphs, where)
                if progress:
                    progress(len(chunk))
        return failed_as_nan(out)

    def ase_calculator(self) -> Any:
        """An ASE calculator with forces and stress: what
        :func:`crystalrl.potentials.relax` drives."""
        raise NotImplementedError

    #: A potential that predicts many structures in one call sets this and implements
    #: :meth:`evaluate_batch`; :func:`crystalrl.potentials.relax` then steps its
    #: structures together.
    batched_forces: bool = False

    def evaluate_batch(self, atoms_list: Sequence) -> list:
        """Energy (eV), forces (eV/Å) and stress (eV/Å³) of ASE ``Atoms`` in one call each
        batch; ``None`` for a structure the potential fails on."""
        raise NotImplementedError

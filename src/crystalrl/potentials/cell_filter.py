"""The batched relaxation's cell filter: ASE's ``FrechetCellFilter`` without its ``logm``s.

ASE's filter is kept, not rewritten, so that the batched path steps exactly as the serial
one; only the two matrix logarithms per step, which it can answer from memory, are gone.
"""

from __future__ import annotations

import functools
import math

import numpy as np


def remembering_frechet_filter(atoms):
    """ASE's ``FrechetCellFilter`` over ``atoms`` that remembers the coordinates it set (see
    :func:`_remembering_filter_class`)."""
    return _remembering_filter_class()(atoms)


@functools.cache
def _remembering_filter_class():
    """ASE's ``FrechetCellFilter`` that remembers the coordinates it was last set to.

    ASE recovers the log-strain coordinates with scipy's ``logm`` twice per FIRE step: for
    the point FIRE steps from, and for the Fréchet derivative of the cell forces. On a 3x3
    matrix each takes about 2 ms, a fifth of a batched CHGNet step. After
    ``set_positions(x)`` both are known without it: the coordinates are ``x`` and, since the
    filter set the deformation gradient to ``expm(x_cell / exp_cell_factor) / cell_factor``,
    its log is ``x_cell / exp_cell_factor - log(cell_factor) I``. They differ from ASE's
    values by float64 rounding only; whenever the atoms moved by other means, ASE's own
    path runs.
    """
    import scipy.linalg
    from ase.filters import FrechetCellFilter

    class RememberingFrechetCellFilter(FrechetCellFilter):
        def __init__(self, atoms):
            super().__init__(atoms)
            self._set: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
            self._utility.logm = self._logm

        def _current(self) -> np.ndarray | None:
            if self._set is None:
                return None
            x, cell, positions = self._set
            atoms = self.atoms
            same = np.array_equal(atoms.cell.array, cell)
            return x if same and np.array_equal(atoms.positions, positions) else None

        def set_positions(self, new, **kwargs):
            super().set_positions(new, **kwargs)
            atoms = self.atoms
            self._set = (np.array(new, copy=True), atoms.cell.array.copy(), atoms.positions.copy())

        def get_positions(self):
            x = self._current()
            return x.copy() if x is not None else super().get_positions()

        def _logm(self, matrix):
            # only get_forces asks while current (get_positions answers from memory): for
            # the deformation gradient of the cell the filter set
            x = self._current()
            if x is None:
                return scipy.linalg.logm(matrix)
            n = len(self.atoms)
            return x[n:] / self.exp_cell_factor - math.log(self.cell_factor) * np.eye(3)

    return RememberingFrechetCellFilter

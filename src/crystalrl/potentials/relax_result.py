"""What a relaxation did to one structure, whichever path relaxed it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The ``error`` of a structure never handed to the potential: there was none, or the
#: caller's ``skip`` flagged it.
NO_STRUCTURE = "no structure"
SKIPPED = "skipped"


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

    @property
    def attempted(self) -> bool:
        """Whether the potential was asked at all (see :data:`NO_STRUCTURE`, :data:`SKIPPED`)."""
        return self.error not in (NO_STRUCTURE, SKIPPED)


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

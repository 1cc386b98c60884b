"""Average minimum distance (AMD) fingerprints: a continuous, cheap distance between crystals.

StructureMatcher says only match / no match; the creativity reward needs "how far from the
nearest known structure" for the in-between cases, which the AMD (Widdowson et al.)
gives in a few milliseconds per crystal. Cells are used as they are (P1), without a
symmetry search.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

DEFAULT_K = 100


def amd_vector(structure, k: int = DEFAULT_K) -> np.ndarray | None:
    """The AMD of a structure (k nearest neighbours), or ``None`` if it cannot be computed."""
    import amd

    if structure is None:
        return None
    try:
        frac = np.mod(structure.frac_coords, 1.0)
        cell = structure.lattice.matrix
        pset = amd.PeriodicSet(motif=frac @ cell, cell=cell)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vec = np.asarray(amd.AMD(pset, k), dtype=np.float64)
        return vec if np.all(np.isfinite(vec)) else None
    except Exception:
        return None


def nearest_nonzero_distance(target: np.ndarray, others: Sequence[np.ndarray]) -> float:
    """Smallest non-zero L∞ (Chebyshev) AMD distance from ``target`` to ``others``; 0 if none."""
    if target is None:
        return 0.0
    vectors = [o for o in others if o is not None]
    if not vectors:
        return 0.0
    d = np.abs(np.stack(vectors) - target[None, :]).max(1)
    d = d[d > 0]
    return float(d.min()) if len(d) else 0.0


class AMDCache:
    """AMDs memoised by a caller-chosen key (reference index), reused across reward calls."""

    def __init__(self, k: int = DEFAULT_K):
        self.k = k
        self._memo: dict = {}

    def get(self, key, structure) -> np.ndarray | None:
        """The AMD for ``key``; ``structure`` may be a zero-argument function returning it,
        called only on a cache miss."""
        if key not in self._memo:
            s = structure() if callable(structure) else structure
            self._memo[key] = amd_vector(s, self.k)
        return self._memo[key]

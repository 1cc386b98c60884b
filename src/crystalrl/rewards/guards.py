"""Guards against the loopholes a policy finds in its reward.

A guard does not reward anything: it marks structures whose reward should not count, each
for one loophole measured on our own RL runs (single-element repackings, systems the hull
knows nothing about, inflated or collapsed cells, one composition repeated across a group;
OMatGRPO and MatInvent guard the same ones). ``keep`` returns a factor per structure in
[0, 1]: 1 leaves the reward alone, 0 scores the structure as the batch's worst, values in
between move it part of the way there. :class:`~crystalrl.rewards.reward.ReinforceReward`
multiplies the factors of its guards and applies them to the weighted total, so a guarded
structure gets a low advantage whatever its components said.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from crystalrl.metrics.results import MetricResults
from crystalrl.reference.hull import MIN_HULL_SUPPORT

#: Bounds of a sane cell: the 0.1st and 99.9th percentiles of MP-20's Niggli-reduced cells
#: (lattice lengths 2.5-39.7 Å, atomic density 0.011-0.136 atoms/Å³; mean 0.058).
CELL_BOUNDS = {"min_length": 2.5, "max_length": 40.0, "min_density": 0.011, "max_density": 0.136}


class RewardGuard:
    """Base class: which metrics it reads, and the factor it keeps of each reward."""

    name: str = "guard"
    required_metrics: tuple[str, ...] = ()

    def keep(
        self, structures: Sequence, metrics: MetricResults, group_size: int | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SingleElementGuard(RewardGuard):
    """A cell of one element is a repacked known element, not a new material: OMatGRPO
    found 502 of its 939 "mSUN" crystals were such, and our DNG run went to Ga, Sn, Hg, In."""

    name = "single_element"

    def keep(self, structures, metrics, group_size=None):
        return np.array(
            [s is None or len(s.composition.elements) > 1 for s in structures], dtype=np.float64
        )


class DeepBelowHullGuard(RewardGuard):
    """An E_hull far below a DFT-anchored hull is the potential's error or a hole in the
    reference, not a discovery (OMatGRPO treats E_hull < -0.1 eV/atom as an error). The
    energy reward's ``min_e_above_hull`` scores such a structure's energy term as the cap;
    this guard takes its whole reward."""

    name = "deep_below_hull"
    required_metrics = ("e_above_hull",)

    def __init__(self, min_e_above_hull: float = -0.1):
        if not min_e_above_hull < 0:
            raise ValueError(
                f"DeepBelowHullGuard min_e_above_hull must be < 0, got {min_e_above_hull}"
            )
        self.min_e_above_hull = float(min_e_above_hull)

    def keep(self, structures, metrics, group_size=None):
        e = np.asarray(metrics.require("e_above_hull"), dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return np.where(e < self.min_e_above_hull, 0.0, 1.0)

    def __repr__(self) -> str:
        return f"DeepBelowHullGuard(min_e_above_hull={self.min_e_above_hull})"


class HullSupportGuard(RewardGuard):
    """A chemical system with fewer than ``min_support`` reference compounds: its E_hull
    cannot tell a discovery from a known compound the reference lacks."""

    name = "hull_support"
    required_metrics = ("hull_support",)

    def __init__(self, min_support: int = MIN_HULL_SUPPORT):
        if not (isinstance(min_support, int) and min_support >= 0):
            raise ValueError(
                f"HullSupportGuard min_support must be an integer >= 0, got {min_support!r}"
            )
        self.min_support = min_support

    def keep(self, structures, metrics, group_size=None):
        support = np.asarray(metrics.require("hull_support"))
        return (support >= self.min_support).astype(np.float64)

    def __repr__(self) -> str:
        return f"HullSupportGuard(min_support={self.min_support})"


class CellSanityGuard(RewardGuard):
    """A cell outside the lengths and densities MP-20's own cells span: an inflated cell
    dilutes the potential's energy penalty for odd contacts, and our DNG run's density fell
    to 0.040 from the base's 0.057 atoms/Å³."""

    name = "cell_sanity"

    def __init__(
        self,
        min_length: float = CELL_BOUNDS["min_length"],
        max_length: float = CELL_BOUNDS["max_length"],
        min_density: float = CELL_BOUNDS["min_density"],
        max_density: float = CELL_BOUNDS["max_density"],
    ):
        if not (0 <= min_length < max_length and 0 <= min_density < max_density):
            raise ValueError(
                "CellSanityGuard needs 0 <= min_length < max_length and "
                f"0 <= min_density < max_density, got lengths [{min_length}, {max_length}], "
                f"densities [{min_density}, {max_density}]"
            )
        self.bounds = (min_length, max_length, min_density, max_density)

    def keep(self, structures, metrics, group_size=None):
        lo_len, hi_len, lo_den, hi_den = self.bounds
        out = np.ones(len(structures))
        for i, s in enumerate(structures):
            if s is None:
                continue
            lengths = s.lattice.abc
            density = len(s) / s.lattice.volume if s.lattice.volume > 0 else np.inf
            sane = lo_len <= min(lengths) and max(lengths) <= hi_len and lo_den <= density <= hi_den
            out[i] = float(sane)
        return out

    def __repr__(self) -> str:
        return (
            "CellSanityGuard(min_length={}, max_length={}, min_density={}, max_density={})".format(
                *self.bounds
            )
        )


class CompositionOccurrenceGuard(RewardGuard):
    """A reduced formula repeated within a group: the first ``free`` copies keep their
    reward, later ones lose it linearly until copy ``zero_at`` and beyond keep none
    (OMatGRPO: more than 3 loses, fully at 6). Stops a group collapsing onto the one
    composition that scores well. Without groups, the whole batch is one group."""

    name = "composition_occurrence"

    def __init__(self, free: int = 3, zero_at: int = 6):
        if not (isinstance(free, int) and isinstance(zero_at, int) and 0 < free < zero_at):
            raise ValueError(
                "CompositionOccurrenceGuard needs integers 0 < free < zero_at, "
                f"got {free}, {zero_at}"
            )
        self.free, self.zero_at = free, zero_at

    def keep(self, structures, metrics, group_size=None):
        n = len(structures)
        size = group_size or n
        out = np.ones(n)
        formulas = metrics.formulas or tuple(
            None if s is None else s.composition.reduced_formula for s in structures
        )
        for start in range(0, n, size):
            seen: Counter = Counter()
            for i in range(start, min(start + size, n)):
                f = formulas[i]
                if f is None:
                    continue
                seen[f] += 1
                k = seen[f]  # this is the k-th copy in its group
                if k > self.free:
                    out[i] = max(0.0, (self.zero_at - k) / (self.zero_at - self.free))
        return out

    def __repr__(self) -> str:
        return f"CompositionOccurrenceGuard(free={self.free}, zero_at={self.zero_at})"


def apply_guards(total: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Move each total toward the batch's worst by the part of it its guards do not keep."""
    worst = float(np.min(total)) if len(total) else 0.0
    return keep * total + (1.0 - keep) * worst

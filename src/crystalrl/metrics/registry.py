"""The registry of named metrics: what each computes, needs first, and loads of the reference.

Metrics depend on each other (``MSUN`` needs ``unique``, ``novel`` and ``is_metastable``;
both diversity metrics need the VAE ``features``) and rewards reuse them, so each is
registered with its dependencies and the reference parts it uses; :class:`Metrics`
resolves that graph so every metric is computed once per batch and setting up for, say,
``unique`` alone loads nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from crystalrl.metrics.metrics import Metrics


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[[Metrics], Any]
    needs: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    implies: tuple[str, ...] = ()  # computed along with it (is_stable with e_above_hull)
    column: bool = True  # a per-structure array that goes in the results table


REGISTRY: dict[str, MetricSpec] = {}


def register_metric(
    name: str,
    needs: Sequence[str] = (),
    uses: Sequence[str] = (),
    implies: Sequence[str] = (),
    column: bool = True,
) -> Callable[[Callable[[Metrics], Any]], Callable[[Metrics], Any]]:
    """Register ``fn(metrics) -> value`` under ``name``; ``needs`` are computed first."""

    def wrap(fn: Callable[[Metrics], Any]) -> Callable[[Metrics], Any]:
        REGISTRY[name] = MetricSpec(name, fn, tuple(needs), tuple(uses), tuple(implies), column)
        return fn

    return wrap


def nan_mean(values: Any) -> float:
    """The ``avg_`` summary of a per-structure metric: NaN entries (failed structures for
    energies and distances) are left out; an all-NaN or empty column is NaN."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.all(np.isnan(arr)):
        return math.nan
    return float(np.nanmean(arr))


def nan_median(values: Any) -> float:
    """The ``median_`` summary of a per-structure metric, NaN entries left out."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.all(np.isnan(arr)):
        return math.nan
    return float(np.nanmedian(arr))

"""The one StructureMatcher wrapper: default tolerances, and a miss (not a crash) on bad cells."""

from __future__ import annotations

import warnings
from typing import Any


def matcher(**matcher_kwargs: Any):
    """pymatgen's StructureMatcher with default tolerances, as the published benchmarks use."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**matcher_kwargs)


def fit(structure_matcher, a, b) -> bool:
    """True when the two match; ``None`` or a degenerate generated cell is a miss."""
    if a is None or b is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(structure_matcher.fit(a, b))
        except Exception:  # a degenerate generated cell is a miss, not a crash
            return False


def structures_match(pair: tuple, **matcher_kwargs: Any) -> bool:
    """:func:`fit` of a pair with a fresh matcher: picklable, for worker processes."""
    return fit(matcher(**matcher_kwargs), *pair)

"""StructureMatcher comparisons that can be run in worker processes."""

from __future__ import annotations

import warnings


def structures_match(pair: tuple, **matcher_kwargs) -> bool:
    """True when pymatgen's StructureMatcher (default tolerances) finds the two equivalent."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    a, b = pair
    if a is None or b is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(StructureMatcher(**matcher_kwargs).fit(a, b))
        except Exception:  # a degenerate generated cell is a miss, not a crash
            return False

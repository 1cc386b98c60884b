"""The one StructureMatcher wrapper: default tolerances, and a miss (not a crash) on bad cells.

``StructureMatcher.fit`` reduces *both* structures (Niggli, then primitive cell) on every
call, and that reduction is most of a fit's time. :func:`reduced_cell` does the matcher's
own reduction once per structure, and ``fit(..., reduced=True)`` then skips it, as
pymatgen's ``group_structures`` does: the same comparison, the same answer, a fraction of
the time when a structure is compared with many others. Reduced cells of different sizes
never match under the default options, and ``fit`` says so without calling pymatgen.
"""

from __future__ import annotations

import warnings
from typing import Any


def matcher(**matcher_kwargs: Any):
    """pymatgen's StructureMatcher with default tolerances, as the published benchmarks use."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**matcher_kwargs)


def reduced_cell(structure, structure_matcher=None):
    """The Niggli-reduced primitive cell a default StructureMatcher compares, or ``None``
    when the structure is ``None`` or degenerate (a miss for every comparison)."""
    if structure is None:
        return None
    sm = structure_matcher or matcher()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # the matcher's own reduction (what fit does per pair), as group_structures calls it
            return sm._get_reduced_structure(structure, sm._primitive_cell, niggli=True)
        except Exception:  # a degenerate generated cell is a miss, not a crash
            return None


def fit(structure_matcher, a, b, reduced: bool = False) -> bool:
    """True when the two match; ``None`` or a degenerate generated cell is a miss.

    ``reduced``: both are already :func:`reduced_cell` outputs, so the per-pair reduction
    is skipped.
    """
    if a is None or b is None:
        return False
    if reduced and len(a) != len(b) and not _supercell_or_subset(structure_matcher):
        # what fit concludes too, but only after copying and rescaling both cells: most
        # same-formula pairs of a generated batch and a reference differ in primitive size
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(structure_matcher.fit(a, b, skip_structure_reduction=reduced))
        except Exception:  # a degenerate generated cell is a miss, not a crash
            return False


def _supercell_or_subset(structure_matcher) -> bool:
    """Whether the matcher may map a cell onto a supercell or a subset of another (then
    cells of different sizes can match); pymatgen keeps these options private."""
    return bool(
        getattr(structure_matcher, "_supercell", True)
        or getattr(structure_matcher, "_subset", True)
    )


def structures_match(pair: tuple, **matcher_kwargs: Any) -> bool:
    """:func:`fit` of a pair with a fresh matcher: picklable, for worker processes."""
    return fit(matcher(**matcher_kwargs), *pair)

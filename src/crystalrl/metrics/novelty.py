"""Uniqueness within a generated set and novelty against a reference, with StructureMatcher.

Two crystals can only match when their reduced formulas agree, so all comparisons are
bucketed by formula: a structure is compared with the few reference structures and batch
mates that share its formula, never with the whole set. Buckets run in worker processes
with a per-item timeout (:func:`crystalrl.metrics.parallel.map_with_timeout`); when a
bucket hangs the answer is the conservative one: not novel, and only the first structure
of a hung uniqueness bucket counts as unique. ``None`` (a structure that failed to
decode) is neither unique nor novel.

Each structure is reduced to the matcher's cell once per bucket or item
(:func:`~crystalrl.metrics.matching.reduced_cell`), never once per pair; reference
structures come reduced already (:mod:`crystalrl.metrics.matcher_cells`).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from crystalrl.metrics.matching import fit, matcher, reduced_cell
from crystalrl.metrics.parallel import map_with_timeout


def reduced_formula(structure) -> str | None:
    if structure is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return structure.composition.reduced_formula
    except Exception:
        return None


def first_of_groups(bucket: list) -> list[bool]:
    """Greedy StructureMatcher grouping in order: True for the first member of each group."""
    sm = matcher()
    representatives: list = []
    flags = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in bucket:
            s = reduced_cell(s, sm)
            new = not any(fit(sm, r, s, reduced=True) for r in representatives)
            if new:
                representatives.append(s)
            flags.append(new)
    return flags


def matches_none(item: tuple) -> bool:
    """True when ``structure`` matches none of ``candidates`` (stops at the first match).

    ``item`` is ``(structure, candidates, candidates_reduced)``; candidates that are not
    reduced yet are reduced here, each only when it is reached.
    """
    structure, candidates, candidates_reduced = item
    sm = matcher()
    structure = reduced_cell(structure, sm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in candidates:
            c = c if candidates_reduced else reduced_cell(c, sm)
            if fit(sm, c, structure, reduced=True):
                return False
        return True


def unique_flags(
    structures: Sequence,
    formulas: Sequence[str | None] | None = None,
    timeout: float = 30.0,
    num_workers: int | None = None,
) -> np.ndarray:
    """First of each StructureMatcher group within ``structures`` (bucketed by formula)."""
    formulas = formulas if formulas is not None else [reduced_formula(s) for s in structures]
    buckets: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(formulas):
        if f is not None:
            buckets[f].append(i)
    flags = np.zeros(len(structures), dtype=bool)
    work = []
    for idx in buckets.values():
        if len(idx) == 1:
            flags[idx[0]] = True
        else:
            work.append(idx)
    results = map_with_timeout(
        first_of_groups,
        [[structures[i] for i in idx] for idx in work],
        timeout=timeout,
        num_workers=num_workers,
        default=None,
    )
    for idx, res in zip(work, results, strict=True):
        if res is None:  # hung: only the first structure of the bucket counts
            res = [True] + [False] * (len(idx) - 1)
        flags[idx] = res
    return flags


def novel_flags(
    structures: Sequence,
    reference_by_formula: Callable[[str], list],
    formulas: Sequence[str | None] | None = None,
    timeout: float = 30.0,
    num_workers: int | None = None,
    reference_reduced: bool = False,
) -> np.ndarray:
    """True where no reference structure of the same reduced formula matches.

    ``reference_by_formula(formula)`` returns the reference structures with that formula;
    ``reference_reduced`` says they are :func:`~crystalrl.metrics.matching.reduced_cell`
    outputs already (as ``MatcherCells.with_formula`` gives).
    """
    formulas = formulas if formulas is not None else [reduced_formula(s) for s in structures]
    flags = np.zeros(len(structures), dtype=bool)
    work, items = [], []
    for i, f in enumerate(formulas):
        if f is None:
            continue
        candidates = reference_by_formula(f)
        if not candidates:
            flags[i] = True
        else:
            work.append(i)
            items.append((structures[i], candidates, reference_reduced))
    results = map_with_timeout(
        matches_none, items, timeout=timeout, num_workers=num_workers, default=False
    )
    flags[work] = np.asarray(results, dtype=bool)
    return flags

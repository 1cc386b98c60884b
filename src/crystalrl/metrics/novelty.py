"""Uniqueness within a generated set and novelty against a reference, with StructureMatcher.

Two crystals can only match when their reduced formulas agree, so all comparisons are
bucketed by formula: a structure is compared with the few reference structures and batch
mates that share its formula, never with the whole set. Buckets run in worker processes
with a per-item timeout (:func:`crystalrl.metrics.parallel.map_with_timeout`); when a
bucket hangs the answer is the conservative one: not novel, and only the first structure
of a hung uniqueness bucket counts as unique. ``None`` (a structure that failed to
decode) is neither unique nor novel.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from crystalrl.metrics.matching import fit, matcher
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
            new = not any(fit(sm, r, s) for r in representatives)
            if new:
                representatives.append(s)
            flags.append(new)
    return flags


def matches_none(item: tuple) -> bool:
    """True when ``structure`` matches none of ``candidates`` (stops at the first match)."""
    structure, candidates = item
    sm = matcher()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return not any(fit(sm, c, structure) for c in candidates)


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
) -> np.ndarray:
    """True where no reference structure of the same reduced formula matches.

    ``reference_by_formula(formula)`` returns the reference structures with that formula.
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
            items.append((structures[i], candidates))
    results = map_with_timeout(
        matches_none, items, timeout=timeout, num_workers=num_workers, default=False
    )
    flags[work] = np.asarray(results, dtype=bool)
    return flags

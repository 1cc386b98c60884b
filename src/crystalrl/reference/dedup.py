"""Which rows of a union of reference datasets are the same material as an earlier row.

MP-20 and the band-gap set are both Materials Project snapshots: about a third of the
band-gap set's materials are MP-20 rows too, under the same ``material_id``, and a few
more are the same crystal under another id (an older snapshot's entry, later merged). A
union keeps each material once, from the first dataset that has it, so that a duplicate
neither weighs twice in the reference features nor counts twice in a hull's support.

Same id = same material. Otherwise a row is a duplicate when pymatgen's
``StructureMatcher`` (default tolerances) matches it with an earlier row of the same
reduced formula. The DFT formation energy of a duplicate is kept when the row it
duplicates has none (MP-20's unlabelled train rows): the DFT-anchored hull uses it.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from crystalrl.data.parse import ParsedSplit
from crystalrl.reference.cells import element_counts, reduced_formulas

#: Raise when the rule changes (part of the cache key).
DEDUP_VERSION = 1


def _first_match(item: tuple) -> int:
    """Index (into ``candidates``) of the first candidate matching ``structure``, or -1."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    structure, candidates = item
    sm = StructureMatcher()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for index, other in candidates:
            try:
                if sm.fit(structure, other):
                    return index
            except Exception:  # a degenerate cell is a miss, not a crash
                continue
    return -1


def duplicates_of_earlier(
    dataset: np.ndarray,
    material_ids: np.ndarray,
    formulas: np.ndarray,
    structure: Callable[[int], Any],
    num_workers: int | None = None,
) -> np.ndarray:
    """For every row, the index of the earlier-dataset row it duplicates, or -1.

    ``dataset`` (int per row) orders the datasets; rows of the same dataset are never
    compared (a dataset's own rows are distinct entries). ``structure(i)`` loads row i.
    """
    out = np.full(len(dataset), -1, dtype=np.int64)
    first_id: dict[str, int] = {}
    by_formula: dict[str, list[int]] = defaultdict(list)
    with ProcessPoolExecutor(max_workers=num_workers) as pool:
        for d in np.unique(dataset):
            rows = np.flatnonzero(dataset == d)
            items: list[tuple[int, list[int]]] = []
            for i in rows:
                j = first_id.get(str(material_ids[i]))
                if j is not None:
                    out[i] = j
                elif by_formula.get(str(formulas[i])):
                    items.append((int(i), list(by_formula[str(formulas[i])])))
            work = [(structure(i), [(j, structure(j)) for j in c]) for i, c in items]
            for (i, _), j in zip(items, pool.map(_first_match, work, chunksize=32), strict=True):
                out[i] = j
            # this dataset's kept rows are candidates for the later datasets only
            for i in rows:
                if out[i] < 0:
                    first_id.setdefault(str(material_ids[i]), int(i))
                    by_formula[str(formulas[i])].append(int(i))
    return out


def deduplicate(
    parts: Sequence[ParsedSplit], datasets: Sequence[int], labels: np.ndarray
) -> dict[str, np.ndarray]:
    """``duplicate_of`` over all rows of the parts (each part belonging to ``datasets[k]``,
    earlier datasets first) and the DFT ``labels`` with duplicates' carried over, as
    ``dft_formation``."""
    dataset = np.concatenate([np.full(len(p), d) for p, d in zip(parts, datasets, strict=True)])
    formulas = np.array(reduced_formulas(element_counts(parts)))
    ids = np.concatenate([p.material_ids.astype(str) for p in parts])
    locate = [(k, j) for k, p in enumerate(parts) for j in range(len(p))]

    def structure(i: int):
        k, j = locate[i]
        return parts[k].to_structures([j])[0]

    duplicate_of = duplicates_of_earlier(dataset, ids, formulas, structure)
    return {"duplicate_of": duplicate_of, "dft_formation": fill_labels(labels, duplicate_of)}


def fill_labels(values: np.ndarray, duplicate_of: np.ndarray) -> np.ndarray:
    """Labels of kept rows, each missing one taken from a dropped duplicate that has it."""
    values = np.asarray(values, dtype=np.float64).copy()
    for i in np.flatnonzero((duplicate_of >= 0) & np.isfinite(values)):
        j = duplicate_of[i]
        if not np.isfinite(values[j]):
            values[j] = values[i]
    return values

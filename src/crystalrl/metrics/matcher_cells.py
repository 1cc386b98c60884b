"""Every reference structure in the cell StructureMatcher compares, reduced once and cached.

Novelty compares each generated crystal with the reference structures of its formula, and
``StructureMatcher.fit`` spends most of its time reducing both cells (Niggli, primitive)
on every call, the same reference cell again in every batch. Reducing each reference cell
once (:func:`crystalrl.metrics.matching.reduced_cell`, in worker processes, about a
millisecond a cell) and keeping the result on disk turns that into one reduction per
generated crystal. The table is flat arrays like a parsed split: lattice matrices rather
than lengths and angles, so a cell comes back exactly as the matcher left it. It is cached
beside the reference's other parts, keyed by its content and pymatgen's version.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from crystalrl.data.parse import ParsedSplit
from crystalrl.metrics.matching import matcher, reduced_cell
from crystalrl.metrics.parallel import map_with_timeout
from crystalrl.reference import Reference
from crystalrl.reference.cache import load_npz, save_npz

log = logging.getLogger("crystalrl")

#: Raise when the stored reduction changes (part of the cache key, with pymatgen's version).
MATCHER_CELLS_VERSION = 1
#: Reference cells per worker task.
CHUNK = 500


def reduce_chunk(part: ParsedSplit) -> dict[str, np.ndarray]:
    """The matcher cells of one chunk; a cell that cannot be reduced gets ``num_atoms`` 0."""
    sm = matcher()
    num_atoms, lattices, types, coords = [], [], [], []
    for s in part.to_structures():
        r = reduced_cell(s, sm)
        if r is None:
            num_atoms.append(0)
            lattices.append(np.full((3, 3), np.nan))
            continue
        num_atoms.append(len(r))
        lattices.append(r.lattice.matrix)
        types.append(np.array([site.specie.Z for site in r], dtype=np.int64))
        coords.append(r.frac_coords)
    return {
        "num_atoms": np.array(num_atoms, dtype=np.int64),
        "lattice": np.array(lattices, dtype=np.float64).reshape(-1, 3, 3),
        "atom_types": np.concatenate(types) if types else np.zeros(0, np.int64),
        "frac_coords": np.concatenate(coords) if coords else np.zeros((0, 3)),
    }


def build_matcher_cells(parts: list[ParsedSplit], num_workers: int | None = None) -> dict:
    """The matcher cells of all structures of ``parts``, in order, as one flat table."""
    chunks = [
        part.subset(np.arange(start, min(start + CHUNK, len(part))))
        for part in parts
        for start in range(0, len(part), CHUNK)
    ]
    # a chunk that hangs (a pathological cell) is left unreduced: novelty reduces those cells
    # itself, as it did before this table existed
    done = map_with_timeout(reduce_chunk, chunks, timeout=600.0, num_workers=num_workers)
    tables = [t if t is not None else _unreduced(len(c)) for t, c in zip(done, chunks, strict=True)]
    if not tables:
        return _unreduced(0)
    return {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}


def _unreduced(n: int) -> dict[str, np.ndarray]:
    return {
        "num_atoms": np.zeros(n, np.int64),
        "lattice": np.full((n, 3, 3), np.nan),
        "atom_types": np.zeros(0, np.int64),
        "frac_coords": np.zeros((0, 3)),
    }


class MatcherCells:
    """The matcher cells of a reference, read from its cache (built there on first use)."""

    def __init__(self, reference: Reference, num_workers: int | None = None):
        import pymatgen.core

        self.reference = reference
        cache = reference.cache_file(
            "matcher-cells", MATCHER_CELLS_VERSION, pymatgen.core.__version__
        )
        if cache.is_file():
            self.table = load_npz(cache)
        else:
            log.info("reducing %d reference cells for StructureMatcher (once)", len(reference))
            self.table = build_matcher_cells(list(reference.parsed.values()), num_workers)
            save_npz(cache, self.table)
        self.offsets = np.concatenate([[0], np.cumsum(self.table["num_atoms"])])
        self._memo: dict[int, Any] = {}

    def with_formula(self, formula: str) -> list:
        """The reference structures of a formula in the matcher's cell, for
        ``fit(..., reduced=True)``; ``None`` for a cell that cannot be reduced."""
        from pymatgen.core import Lattice, Structure

        out = []
        for i in self.reference.by_formula.get(formula, []):
            i = int(i)
            if i not in self._memo:
                # not in the table: its chunk hung, or the cell cannot be reduced (None again)
                if self.table["num_atoms"][i] == 0:
                    c = reduced_cell(self.reference.structures([i])[0])
                else:
                    sl = slice(self.offsets[i], self.offsets[i + 1])
                    c = Structure(
                        Lattice(self.table["lattice"][i]),
                        self.table["atom_types"][sl].tolist(),
                        self.table["frac_coords"][sl],
                    )
                self._memo[i] = c
            out.append(self._memo[i])
        return out

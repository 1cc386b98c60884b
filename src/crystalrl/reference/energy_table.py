"""Reference energies as a compact table: one row per reference structure.

Computing CHGNet energies for all of MP-20 takes tens of minutes on a CPU, so the table is
stored (in the cache, and a copy is shipped in the repository's ``reference/`` folder) and
reused row by row: a row is taken from any stored table made with the same potential when
its ``material_id``, reduced formula and atom count agree. That makes a table survive a
re-ordered or extended CSV, and lets an interrupted build resume from its partial table.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crystalrl.checkpoint_registry import PROJECT_ROOT
from crystalrl.progress_bar import progress_bar

log = logging.getLogger("crystalrl")

TABLE_VERSION = 1
#: Tables of reference energies computed by this project and shipped with it.
SHIPPED_DIR = PROJECT_ROOT / "reference"


@dataclass
class EnergyTable:
    """Per-structure energies (eV/atom, NaN = the potential failed) and how they were made."""

    split: np.ndarray  # (M,) str
    row: np.ndarray  # (M,) int64, row of the source file
    material_id: np.ndarray  # (M,) str
    formula: np.ndarray  # (M,) str, reduced formula
    num_atoms: np.ndarray  # (M,) int64
    energy_per_atom: np.ndarray  # (M,) float64
    potential: str
    files: dict[str, str]  # split -> sha256 of the source file

    def __len__(self) -> int:
        return len(self.energy_per_atom)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"version": TABLE_VERSION, "potential": self.potential, "files": self.files}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
        np.savez_compressed(
            tmp,
            split=self.split.astype(str),
            row=self.row.astype(np.int32),
            material_id=self.material_id.astype(str),
            formula=self.formula.astype(str),
            num_atoms=self.num_atoms.astype(np.int16),
            energy_per_atom=self.energy_per_atom.astype(np.float32),
            meta=np.array(json.dumps(meta, sort_keys=True)),
        )
        os.replace(tmp, path)  # atomic: a killed build never leaves half a table
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> EnergyTable:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(
                split=z["split"],
                row=z["row"].astype(np.int64),
                material_id=z["material_id"],
                formula=z["formula"],
                num_atoms=z["num_atoms"].astype(np.int64),
                energy_per_atom=z["energy_per_atom"].astype(np.float64),
                potential=meta["potential"],
                files=meta.get("files", {}),
            )

    def subset(self, mask: np.ndarray) -> EnergyTable:
        """The rows where ``mask`` is true (a partial table saved while a build runs)."""
        return EnergyTable(
            split=self.split[mask],
            row=self.row[mask],
            material_id=self.material_id[mask],
            formula=self.formula[mask],
            num_atoms=self.num_atoms[mask],
            energy_per_atom=self.energy_per_atom[mask],
            potential=self.potential,
            files=self.files,
        )

    def lookup(self) -> dict[tuple[str, str, int], float]:
        """(material_id, formula, num_atoms) -> energy per atom, for row-by-row reuse."""
        return {
            (str(m), str(f), int(n)): float(e)
            for m, f, n, e in zip(
                self.material_id, self.formula, self.num_atoms, self.energy_per_atom, strict=True
            )
        }


def reusable_energies(tables: list[Path], potential: str) -> dict[tuple[str, str, int], float]:
    """Merged lookup of every readable table made with ``potential`` (later tables win)."""
    merged: dict[tuple[str, str, int], float] = {}
    for path in tables:
        try:
            table = EnergyTable.load(path)
        # an unreadable or foreign file (not an .npz, or without a table's fields) is simply
        # not a source
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            continue
        if table.potential == potential:
            merged.update(table.lookup())
    return merged


def compute_energy_table(
    flat: dict[str, np.ndarray],
    files: dict[str, str],
    model: Any,
    cache: Path,
    sources: list[Path],
    structures: Callable[[list[int]], list],
    progress: bool = True,
    name: str = "",
) -> EnergyTable:
    """The energy table of a reference index (``flat``: split, row, material_id, formula,
    num_atoms): rows reused from stored ``sources`` where they match, the rest computed with
    ``model`` in chunks, each chunk saved to a partial table that an interrupted build
    resumes from; saved to ``cache`` and read back as stored (float32), so every later run
    sees the same numbers."""
    partial = cache.with_name(cache.name.replace(".npz", ".partial.npz"))
    known = reusable_energies([*sources, partial], model.key)
    keys = list(zip(flat["material_id"], flat["formula"], flat["num_atoms"].tolist(), strict=True))
    energies = np.array([known.get((str(m), str(f), n), np.nan) for m, f, n in keys])
    todo = [i for i, k in enumerate(keys) if (str(k[0]), str(k[1]), k[2]) not in known]
    log.info(
        "reference %s: %d energies reused, %d to compute with %s",
        name,
        len(keys) - len(todo),
        len(todo),
        model.key,
    )

    def table(e: np.ndarray) -> EnergyTable:
        return EnergyTable(
            split=flat["split"],
            row=flat["row"],
            material_id=flat["material_id"],
            formula=flat["formula"],
            num_atoms=flat["num_atoms"],
            energy_per_atom=e,
            potential=model.key,
            files=files,
        )

    if todo:
        chunk = 2048
        pending = np.zeros(len(keys), dtype=bool)
        pending[todo] = True
        with progress_bar(progress, f"energies ({model.key})", len(todo)) as advance:
            for start in range(0, len(todo), chunk):
                idx = todo[start : start + chunk]
                energies[idx] = model.energies(structures(idx), progress=advance)
                pending[idx] = False
                table(energies).subset(~pending).save(partial)
    table(energies).save(cache)
    partial.unlink(missing_ok=True)
    return EnergyTable.load(cache)

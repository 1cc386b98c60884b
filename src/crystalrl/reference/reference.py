"""The reference set that novelty, E_hull and the diversity metrics are measured against.

A reference is a CDVAE-layout dataset folder, named (``mp-20`` = every split of MP-20
found in the data directory) or given as a path. Everything derived from it is computed
lazily, only when a metric asks for it, and cached (see :mod:`crystalrl.reference.cache`):

* structures grouped by reduced formula (from the parse cache of ``crystalrl.data``);
* single-point energies of every structure from the configured potential (reused row by
  row from tables shipped in the repository's ``reference/`` folder when they match);
* the convex hull built from those energies (see :mod:`crystalrl.reference.hull`);
* VAE structure and composition features (keyed by a hash of the VAE's weights).
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections import defaultdict
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crystalrl.checkpoint_registry import sha256_of
from crystalrl.data.parse import SPLITS, ParsedSplit, find_split_file
from crystalrl.potentials import EnergyModel, make_energy_model
from crystalrl.reference.cache import (
    cache_root,
    digest,
    load_npz,
    load_pickle,
    save_npz,
    save_pickle,
    weights_key,
)
from crystalrl.reference.cells import element_counts, mean_atomic_density, reduced_formulas
from crystalrl.reference.datasets import (
    DEFAULT_REFERENCE,
    ReferenceDatasetError,
    resolve_reference_dirs,
)
from crystalrl.reference.energy_table import SHIPPED_DIR, EnergyTable, compute_energy_table

if TYPE_CHECKING:
    from crystalrl.reference.hull import ReferenceHull

log = logging.getLogger("crystalrl")

REFERENCE_VERSION = 1
#: What unpickling a cache written by another pymatgen (a class moved or changed) or a
#: truncated file raises: the cache is rebuilt.
STALE_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError)
#: The dataset column of DFT formation energies (MP-20's labelled rows, the band-gap set).
DFT_FORMATION_ENERGY = "formation_energy_per_atom"
#: Reference cells are read without an atom limit: a reference must hold every row.
NO_ATOM_LIMIT = 10_000


class Reference:
    """Lazily built, disk-cached reference data for one dataset folder."""

    def __init__(
        self,
        dataset: str | os.PathLike = DEFAULT_REFERENCE,
        data_dir: str | None = None,
        splits: tuple[str, ...] | None = None,
        potential: Any = None,
        cache_dir: str | os.PathLike | None = None,
        hull: dict | None = None,
        progress: bool = True,
        use_shipped: bool = True,
    ):
        self.name = str(dataset)
        self.dataset_dirs = resolve_reference_dirs(dataset, data_dir)
        union = len(self.dataset_dirs) > 1
        #: split label ("train", or "mp_20/train" in a union) -> file
        self.split_files: dict[str, Path] = {}
        for folder in self.dataset_dirs:
            found = 0
            for split in splits or SPLITS:
                try:
                    path = find_split_file(folder, split)
                except ValueError:
                    if splits:  # asked for explicitly: must exist
                        raise
                    continue
                self.split_files[f"{folder.name}/{split}" if union else split] = path
                found += 1
            if not found:
                raise ReferenceDatasetError(
                    f"reference_dataset={self.name!r}: no train/val/test .csv(.gz) files in "
                    f"{folder}"
                )
        self.cache_dir = cache_root(cache_dir)
        self._potential_spec = potential
        self.hull_options = dict(hull or {})
        self.progress = progress
        self.use_shipped = use_shipped
        self.timings: dict[str, float] = {}
        self._structure_memo: dict[int, Any] = {}

    @property
    def dataset_dir(self) -> Path:
        """The folder of a single-dataset reference (the first one of a union)."""
        return self.dataset_dirs[0]

    def __repr__(self) -> str:
        return f"Reference({self.name!r}, splits={list(self.split_files)})"

    # ------------------------------------------------------------------ keys
    @cached_property
    def file_hashes(self) -> dict[str, str]:
        return {split: sha256_of(path) for split, path in self.split_files.items()}

    @cached_property
    def key(self) -> str:
        """Content key of the reference structures."""
        files = sorted(self.file_hashes.items())
        return digest(REFERENCE_VERSION, files, NO_ATOM_LIMIT, "niggli")

    def cache_file(self, kind: str, *extra: Any, suffix: str = ".npz") -> Path:
        """Where a part derived from this reference is cached: its kind, this reference's
        content key and ``extra`` inputs (a potential, a version) make the name."""
        key = digest(self.key, *extra) if extra else self.key
        return self.cache_dir / f"{self.cache_stem}-{kind}-{key}{suffix}"

    @property
    def cache_stem(self) -> str:
        """The start of every cache file name of this reference: its dataset folders."""
        return "+".join(folder.name for folder in self.dataset_dirs)

    # ------------------------------------------------------------------ structures
    @cached_property
    def _all_parsed(self) -> dict[str, ParsedSplit]:
        """Every row of every split file, duplicates across a union's datasets included."""
        from crystalrl.data.parse import read_split

        return {
            split: read_split(path, max_atoms=NO_ATOM_LIMIT, niggli=True)
            for split, path in self.split_files.items()
        }

    @cached_property
    def _dedup(self) -> dict[str, np.ndarray]:
        """``duplicate_of`` (over all rows: the earlier row a row repeats, or -1) and the
        DFT formation energy of every row with duplicates' labels carried over; cached."""
        import pymatgen.core

        from crystalrl.reference.dedup import DEDUP_VERSION, deduplicate

        parts = self._all_parsed
        labels = np.concatenate(
            [
                p.properties.get(DFT_FORMATION_ENERGY, np.full(len(p), np.nan))
                for p in parts.values()
            ]
        )
        if len(self.dataset_dirs) == 1:
            return {"duplicate_of": np.full(len(labels), -1), "dft_formation": labels}
        cache = self.cache_file("dedup", DEDUP_VERSION, pymatgen.core.__version__)
        if cache.is_file():
            return load_npz(cache)
        start = time.perf_counter()
        names = [folder.name for folder in self.dataset_dirs]
        datasets = [names.index(label.split("/")[0]) for label in parts]
        out = deduplicate(list(parts.values()), datasets, labels)
        self.timings["dedup"] = time.perf_counter() - start
        log.info(
            "reference %s: %d of %d rows repeat an earlier dataset's material and are dropped",
            self.name,
            int((out["duplicate_of"] >= 0).sum()),
            len(labels),
        )
        save_npz(cache, out)
        return out

    @cached_property
    def parsed(self) -> dict[str, ParsedSplit]:
        """The reference's structures by split, each material once (see
        :mod:`crystalrl.reference.dedup`)."""
        parts = self._all_parsed
        if len(self.dataset_dirs) == 1:
            return parts
        keep = self._dedup["duplicate_of"] < 0
        out, start = {}, 0
        for label, part in parts.items():
            out[label] = part.subset(np.flatnonzero(keep[start : start + len(part)]))
            start += len(part)
        return out

    @property
    def num_duplicates(self) -> int:
        """Rows of a union's later datasets dropped as materials an earlier one holds."""
        return int((self._dedup["duplicate_of"] >= 0).sum())

    @property
    def dft_formation_energies(self) -> np.ndarray:
        """DFT formation energy per atom (eV/atom) of every reference structure where the
        dataset gives one (NaN otherwise): MP-20's labelled rows, the band-gap set."""
        return self._dedup["dft_formation"][self._dedup["duplicate_of"] < 0]

    @property
    def datasets(self) -> np.ndarray:
        """The dataset folder name of every reference structure."""
        split = self._flat["split"]
        if len(self.dataset_dirs) == 1:
            return np.full(len(split), self.dataset_dirs[0].name)
        return np.array([s.split("/")[0] for s in split])

    @cached_property
    def _flat(self) -> dict[str, np.ndarray]:
        """Per-structure index over all splits: split, row, material_id, formula, num_atoms."""
        cache = self.cache_file("index")
        if cache.is_file():
            return load_npz(cache)
        formula = reduced_formulas(self.element_counts())
        split, row, mid, natoms = [], [], [], []
        for name, part in self.parsed.items():
            split += [name] * len(part)
            row.append(part.row_index)
            mid.append(part.material_ids.astype(str))
            natoms.append(part.num_atoms)
        flat = {
            "split": np.array(split, dtype=str),
            "row": np.concatenate(row).astype(np.int64),
            "material_id": np.concatenate(mid).astype(str),
            "formula": np.array(formula, dtype=str),
            "num_atoms": np.concatenate(natoms).astype(np.int64),
        }
        save_npz(cache, flat)
        return flat

    def __len__(self) -> int:
        return len(self._flat["formula"])

    @property
    def formulas(self) -> np.ndarray:
        """Reduced formula of every reference structure (all splits, in order)."""
        return self._flat["formula"]

    @cached_property
    def by_formula(self) -> dict[str, np.ndarray]:
        """Reduced formula -> indices of the reference structures with it."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, f in enumerate(self.formulas):
            groups[str(f)].append(i)
        return {f: np.array(v, dtype=np.int64) for f, v in groups.items()}

    @cached_property
    def _locate(self) -> list[tuple[str, int]]:
        return [(name, i) for name, part in self.parsed.items() for i in range(len(part))]

    def structures(self, indices: list[int] | np.ndarray | None = None) -> list:
        """pymatgen structures of the reference (Niggli-reduced cells), memoised by index."""
        if indices is None:
            indices = range(len(self))
        out = []
        for i in indices:
            i = int(i)
            s = self._structure_memo.get(i)
            if s is None:
                split, j = self._locate[i]
                s = self.parsed[split].to_structures([j])[0]
                self._structure_memo[i] = s
            out.append(s)
        return out

    def structures_with_formula(self, formula: str) -> list:
        return self.structures(self.by_formula.get(formula, []))

    @cached_property
    def mean_atomic_density(self) -> float:
        """Mean atoms per Å³ of the reference cells: what a generated set's density is
        compared with (a policy that inflates its cells drifts below it)."""
        return mean_atomic_density(self.parsed.values())

    def element_counts(self) -> list[dict[str, int]]:
        """Element counts of every cell (not reduced): hull entries need total energies."""
        return element_counts(self.parsed.values())

    # ------------------------------------------------------------------ energies
    @cached_property
    def energy_model(self) -> EnergyModel:
        return make_energy_model(self._potential_spec)

    @property
    def energy_file(self) -> Path:
        return self.cache_file("energies", self.energy_model.key)

    @cached_property
    def energy_table(self) -> EnergyTable:
        cache = self.energy_file
        if cache.is_file():
            return EnergyTable.load(cache)
        start = time.perf_counter()
        table = self._compute_energies(cache)
        self.timings["energies"] = time.perf_counter() - start
        return table

    @property
    def energies(self) -> np.ndarray:
        """Energy per atom (eV/atom) of every reference structure; NaN where it failed."""
        return self.energy_table.energy_per_atom

    def _compute_energies(self, cache: Path) -> EnergyTable:
        sources = sorted(SHIPPED_DIR.glob("*.npz")) if self.use_shipped else []
        return compute_energy_table(
            self._flat,
            self.file_hashes,
            self.energy_model,
            cache,
            sources,
            self._structures_once,
            progress=self.progress,
            name=self.name,
        )

    def _structures_once(self, indices: list[int]) -> list:
        """Structures read for one pass over the reference, not kept in memory after."""
        out = self.structures(indices)
        self._structure_memo.clear()
        return out

    # ------------------------------------------------------------------ hull
    @cached_property
    def hull(self) -> ReferenceHull:
        """The convex hull of the reference energies (:class:`ReferenceHull`), cached."""
        from crystalrl.reference.hull import ANCHORED_KINDS, HULL_VERSION, build_hull, hull_options

        kind, options = hull_options(self.hull_options)
        cache = self.cache_file(
            "hull",
            self.energy_model.key,
            HULL_VERSION,
            kind,
            sorted(options.items()),
            suffix=".pkl",
        )
        if cache.is_file():
            try:
                return load_pickle(cache)
            except STALE_PICKLE_ERRORS as exc:
                log.warning("could not read %s (%s); rebuilding the hull", cache, exc)
        energies = self.energies
        start = time.perf_counter()
        labels = self.dft_formation_energies
        if kind in ANCHORED_KINDS and not np.isfinite(labels).any():
            raise ReferenceDatasetError(
                f"hull.kind={kind}: reference {self.name!r} has no DFT formation energies "
                f"(column {DFT_FORMATION_ENERGY!r}); use hull.kind=potential or a "
                "reference with them (mp-20, mp-bandgap)"
            )
        hull = build_hull(
            kind,
            self.element_counts(),
            energies,
            labels,
            self.energy_model,
            progress=self.progress,
            **options,
        )
        self.timings["hull"] = time.perf_counter() - start
        save_pickle(cache, hull)
        return hull

    # ------------------------------------------------------------------ features
    def features(self, vae: Any, batch_size: int = 512) -> dict[str, Any]:
        """VAE ``structure`` and ``composition`` features of every reference structure."""
        import torch

        from crystalrl.reference.features import compute_features

        cache = self.cache_file("features", weights_key(vae))
        if cache.is_file():
            return {k: torch.from_numpy(v) for k, v in load_npz(cache).items()}
        start = time.perf_counter()
        arrays = compute_features(vae, len(self), self._structures_once, batch_size, self.progress)
        self.timings["features"] = time.perf_counter() - start
        save_npz(cache, arrays)
        return {k: torch.from_numpy(v) for k, v in arrays.items()}


_REFERENCES: dict[tuple, Reference] = {}


def get_reference(
    dataset: str | os.PathLike = DEFAULT_REFERENCE, potential: Any = None, **kwargs: Any
) -> Reference:
    """A shared :class:`Reference` per (dataset, potential, options): loaded data is reused
    by every metric and reward in the process."""
    key = (str(dataset), repr(potential), repr(sorted(kwargs.items())))
    if key not in _REFERENCES:
        _REFERENCES[key] = Reference(dataset, potential=potential, **kwargs)
    return _REFERENCES[key]

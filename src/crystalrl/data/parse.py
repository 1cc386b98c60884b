"""Read CDVAE-layout CSV files into flat numpy arrays, in parallel, with an on-disk cache.

Parsing 16k CIFs with pymatgen takes about a minute; every training, evaluation and
reference build reads the same files, so the parsed arrays are cached next to a hash of
the source file's bytes and the parse settings. A changed file or setting is a new key.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CACHE_VERSION = 1
SPLITS = ("train", "val", "test")
#: Columns that identify rows rather than measure them; never used as property targets.
_NON_PROPERTY_COLUMNS = {"cif", "material_id", "pretty_formula", "elements", "source", "nsites"}


class DatasetError(ValueError):
    """A dataset file is missing or malformed in a way that cannot be skipped row by row."""


@dataclass
class ParsedSplit:
    """One split as flat arrays: atoms of all structures concatenated, split by ``num_atoms``.

    Angles are stored in degrees and lengths in Å, float64, so that converting back to
    pymatgen reproduces the source lattice to machine precision.
    """

    num_atoms: np.ndarray  # (M,) int64
    atom_types: np.ndarray  # (sum N,) int64, atomic numbers
    frac_coords: np.ndarray  # (sum N, 3) float64
    lengths: np.ndarray  # (M, 3) float64, Å
    angles: np.ndarray  # (M, 3) float64, degrees
    row_index: np.ndarray  # (M,) int64, row of the source file
    material_ids: np.ndarray  # (M,) str
    properties: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (M,) float64
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    source: str = ""

    def __len__(self) -> int:
        return len(self.num_atoms)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.num_atoms)])

    def subset(self, indices: np.ndarray | list[int]) -> ParsedSplit:
        """A new split holding only the given structures, in the given order."""
        indices = np.asarray(indices, dtype=np.int64)
        offsets = self.offsets
        atom_idx = np.concatenate(
            [np.arange(offsets[i], offsets[i + 1]) for i in indices] or [np.zeros(0, np.int64)]
        )
        return ParsedSplit(
            num_atoms=self.num_atoms[indices],
            atom_types=self.atom_types[atom_idx],
            frac_coords=self.frac_coords[atom_idx],
            lengths=self.lengths[indices],
            angles=self.angles[indices],
            row_index=self.row_index[indices],
            material_ids=self.material_ids[indices],
            properties={k: v[indices] for k, v in self.properties.items()},
            skipped=dict(self.skipped),
            source=self.source,
        )

    def to_structures(self, indices: list[int] | None = None) -> list:
        """pymatgen structures of the split (all, or the given indices)."""
        from pymatgen.core import Lattice, Structure

        offsets = self.offsets
        out = []
        for i in range(len(self)) if indices is None else indices:
            lattice = Lattice.from_parameters(*self.lengths[i], *self.angles[i])
            sl = slice(offsets[i], offsets[i + 1])
            out.append(Structure(lattice, self.atom_types[sl].tolist(), self.frac_coords[sl]))
        return out


def find_split_file(dataset_dir: str | os.PathLike, split: str, key: str | None = None) -> Path:
    """The ``split.csv`` or ``split.csv.gz`` file of a dataset folder.

    An error names both file names, the folder, and ``key`` (the config key the folder came
    from, such as ``data.data_dir``), because a wrong data directory is usually a missing
    ``CRYSTALRL_DATA_DIR`` and the user has to know which setting to fix.
    """
    dataset_dir = Path(dataset_dir)
    label = f"{key}={str(dataset_dir)!r}" if key else str(dataset_dir)
    layout = "a CDVAE-layout folder: train/val/test .csv(.gz) files with a 'cif' column"
    if not dataset_dir.is_dir():
        raise DatasetError(
            f"{label}: no such folder ({dataset_dir.absolute()}); expected {layout}. "
            f"Set CRYSTALRL_DATA_DIR to the folder holding the dataset folders (mp_20, "
            f"perov_5, ...; now {os.environ.get('CRYSTALRL_DATA_DIR', 'unset')})"
            + (f" or {key}=PATH" if key else "")
        )
    for name in (f"{split}.csv", f"{split}.csv.gz"):
        if (dataset_dir / name).is_file():
            return dataset_dir / name
    raise DatasetError(f"{label}: no {split}.csv or {split}.csv.gz in it; expected {layout}")


def _parse_one(cif: str, max_atoms: int, niggli: bool):
    """Parse one CIF; return arrays, or a skip reason string."""
    import warnings as _w

    from pymatgen.core import Structure

    try:
        with _w.catch_warnings():
            _w.simplefilter("ignore")
            structure = Structure.from_str(cif, fmt="cif")
    except Exception:
        return "unparseable CIF"
    if len(structure) == 0:
        return "no sites"
    if len(structure) > max_atoms:
        return f"more than {max_atoms} atoms"
    if not structure.is_ordered:
        return "disordered sites"
    if abs(np.linalg.det(structure.lattice.matrix)) < 1e-6:
        return "singular lattice"
    if niggli:
        try:
            structure = structure.get_reduced_structure()
        except Exception:
            return "singular lattice"
    lattice = structure.lattice
    return (
        np.array([site.specie.Z for site in structure], dtype=np.int64),
        structure.frac_coords.astype(np.float64),
        np.array(lattice.abc, dtype=np.float64),
        np.array(lattice.angles, dtype=np.float64),
    )


def _parse_chunk(args: tuple[list[str], int, bool]) -> list:
    cifs, max_atoms, niggli = args
    return [_parse_one(c, max_atoms, niggli) if isinstance(c, str) else "empty cif" for c in cifs]


def _file_key(path: Path, max_atoms: int, niggli: bool) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    h.update(f"v{CACHE_VERSION}|max_atoms={max_atoms}|niggli={niggli}".encode())
    return h.hexdigest()[:20]


def default_cache_dir() -> Path:
    return Path(os.environ.get("CRYSTALRL_CACHE_DIR", Path.home() / ".cache" / "crystalrl"))


def default_data_dir() -> Path:
    """The folder holding the dataset folders (``mp_20``, ...): ``$CRYSTALRL_DATA_DIR``.

    The one place this default lives, so training data and reference data agree on it.
    """
    return Path(os.environ.get("CRYSTALRL_DATA_DIR", "data"))


def read_split(
    path: str | os.PathLike,
    max_atoms: int = 20,
    niggli: bool = True,
    num_workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> ParsedSplit:
    """Parse one CSV(.gz) file of CIFs into a :class:`ParsedSplit`.

    Rows that do not parse, have no sites, exceed ``max_atoms`` or have a singular lattice
    are skipped; one warning reports how many and why. ``niggli`` reduces each cell first,
    as CDVAE did, so that equivalent cells look alike to the networks.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _file_key(path, max_atoms, niggli)
    cache_file = cache_dir / f"{path.name.split('.')[0]}-{key}.npz"
    if use_cache and cache_file.is_file():
        parsed = _load_cache(cache_file, source=str(path))
    else:
        parsed = _parse_file(path, max_atoms, niggli, num_workers)
        if use_cache:
            _save_cache(parsed, cache_file)
    if parsed.skipped:
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(parsed.skipped.items()))
        warnings.warn(
            f"{path}: skipped {sum(parsed.skipped.values())} rows ({reasons})", stacklevel=2
        )
    return parsed


def _parse_file(path: Path, max_atoms: int, niggli: bool, num_workers: int | None) -> ParsedSplit:
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for broken files
        raise DatasetError(f"cannot read {path} as CSV: {exc}") from exc
    if "cif" not in frame.columns:
        raise DatasetError(f"{path} has no 'cif' column (columns: {', '.join(frame.columns)})")
    cifs = frame["cif"].tolist()
    num_workers = num_workers if num_workers is not None else min(os.cpu_count() or 1, 8)
    chunk = 256
    jobs = [(cifs[i : i + chunk], max_atoms, niggli) for i in range(0, len(cifs), chunk)]
    if num_workers > 1 and len(cifs) > chunk:
        with ProcessPoolExecutor(num_workers) as pool:
            results = [r for part in pool.map(_parse_chunk, jobs) for r in part]
    else:
        results = [r for job in jobs for r in _parse_chunk(job)]

    keep = [i for i, r in enumerate(results) if not isinstance(r, str)]
    skipped = Counter(r for r in results if isinstance(r, str))
    good = [results[i] for i in keep]
    ids = (
        frame["material_id"].astype(str).to_numpy()
        if "material_id" in frame.columns
        else np.array([str(i) for i in range(len(frame))])
    )
    properties = {}
    for col in frame.columns:
        if col in _NON_PROPERTY_COLUMNS or not pd.api.types.is_numeric_dtype(frame[col]):
            continue
        properties[col] = frame[col].to_numpy(dtype=np.float64)[keep]
    return ParsedSplit(
        num_atoms=np.array([len(g[0]) for g in good], dtype=np.int64),
        atom_types=np.concatenate([g[0] for g in good]) if good else np.zeros(0, np.int64),
        frac_coords=np.concatenate([g[1] for g in good]) if good else np.zeros((0, 3)),
        lengths=np.stack([g[2] for g in good]) if good else np.zeros((0, 3)),
        angles=np.stack([g[3] for g in good]) if good else np.zeros((0, 3)),
        row_index=np.array(keep, dtype=np.int64),
        material_ids=ids[keep].astype(str),
        properties=properties,
        skipped=dict(skipped),
        source=str(path),
    )


def _save_cache(parsed: ParsedSplit, cache_file: Path) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        num_atoms=parsed.num_atoms,
        atom_types=parsed.atom_types,
        frac_coords=parsed.frac_coords,
        lengths=parsed.lengths,
        angles=parsed.angles,
        row_index=parsed.row_index,
        material_ids=parsed.material_ids,
        skip_reasons=np.array(list(parsed.skipped), dtype=str),
        skip_counts=np.array(list(parsed.skipped.values()), dtype=np.int64),
        **{f"prop__{k}": v for k, v in parsed.properties.items()},
    )
    os.replace(tmp, cache_file)  # atomic: a killed run never leaves a half-written cache


def _load_cache(cache_file: Path, source: str) -> ParsedSplit:
    with np.load(cache_file, allow_pickle=False) as z:
        return ParsedSplit(
            num_atoms=z["num_atoms"],
            atom_types=z["atom_types"],
            frac_coords=z["frac_coords"],
            lengths=z["lengths"],
            angles=z["angles"],
            row_index=z["row_index"],
            material_ids=z["material_ids"],
            properties={k[6:]: z[k] for k in z.files if k.startswith("prop__")},
            skipped={
                str(r): int(n) for r, n in zip(z["skip_reasons"], z["skip_counts"], strict=True)
            },
            source=source,
        )


def read_dataset(
    dataset_dir: str | os.PathLike, splits: tuple[str, ...] = SPLITS, **kwargs
) -> dict[str, ParsedSplit]:
    """All requested splits of a CDVAE-layout dataset folder."""
    return {s: read_split(find_split_file(dataset_dir, s), **kwargs) for s in splits}

"""Read generated structures for evaluation: a folder of CIFs, a JSON list, or a CSV.

An entry that cannot be read becomes ``None`` rather than an error: a generator that
writes a broken file has produced a failed structure, and evaluation should count it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import warnings
from pathlib import Path


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _from_cif(text: str):
    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_str(text, fmt="cif")
    except Exception:
        return None


def _from_dict(d):
    from pymatgen.core import Structure

    try:
        return Structure.from_dict(d) if d is not None else None
    except Exception:
        return None


def read_structures(path: str | os.PathLike, limit: int | None = None) -> tuple[list, list[str]]:
    """Structures (``None`` where unreadable) and a name for each.

    ``path`` is a folder written by ``crystalrl.sample`` (its ``samples.json.gz`` is read),
    a folder of ``*.cif`` files (natural order of file names), a ``.json`` or
    ``.json.gz`` file holding a list of pymatgen ``Structure.as_dict()`` (what the sampler
    writes), or a ``.csv``/``.csv.gz`` file with a ``cif`` column (the dataset layout).
    """
    path = Path(path).expanduser()
    if path.is_dir() and (path / "samples.json.gz").is_file():
        # the sampler's own record keeps failed decodes (as None), the CIFs do not: rates
        # must count them
        path = path / "samples.json.gz"
    if path.is_dir():
        files = sorted(path.glob("*.cif"), key=lambda p: _natural_key(p.name))
        if not files:
            raise FileNotFoundError(f"no .cif files in {path}")
        files = files[:limit] if limit else files
        return [_from_cif(f.read_text()) for f in files], [f.stem for f in files]
    if not path.is_file():
        raise FileNotFoundError(f"structure_path {path} is neither a folder nor a file")
    name = path.name.lower()
    if name.endswith((".json", ".json.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt") as fh:
            data = json.load(fh)
        if isinstance(data, dict) and "structures" in data:
            data = data["structures"]
        if not isinstance(data, list):
            raise ValueError(f"{path} should hold a JSON list of structure dicts")
        data = data[:limit] if limit else data
        return [_from_dict(d) for d in data], [str(i) for i in range(len(data))]
    if name.endswith((".csv", ".csv.gz")):
        import pandas as pd

        frame = pd.read_csv(path, nrows=limit)
        if "cif" not in frame.columns:
            raise ValueError(f"{path} has no 'cif' column")
        names = (
            frame["material_id"].astype(str).tolist()
            if "material_id" in frame.columns
            else [str(i) for i in range(len(frame))]
        )
        return [_from_cif(c) if isinstance(c, str) else None for c in frame["cif"]], names
    raise ValueError(f"cannot read structures from {path}: expected a folder, .json(.gz) or .csv")


def write_structures_json(structures, path: str | os.PathLike) -> Path:
    """A (gzipped when the name ends in .gz) JSON list of ``Structure.as_dict()``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [None if s is None else s.as_dict() for s in structures]
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt") as fh:
        json.dump(data, fh)
    return path

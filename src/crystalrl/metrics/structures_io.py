"""Read generated structures for evaluation (a folder of CIFs, a JSON list, or a CSV) and
write them as the sampler does, so that every layer reads and writes one layout.

An entry that cannot be read becomes ``None`` rather than an error: a generator that
writes a broken file has produced a failed structure, and evaluation should count it.
Each such entry keeps the reason it failed, and one warning counts them by reason (as
:func:`crystalrl.data.parse.read_split` does for datasets), so a broken input is never
mistaken for a bad model without a word.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

#: What ``structure_path`` may be, for error messages.
ACCEPTED_INPUTS = (
    "a folder written by crystalrl.sample (samples.json.gz), a folder of .cif files, "
    "a .json(.gz) list of pymatgen Structure.as_dict(), or a .csv(.gz) with a 'cif' column"
)
#: Rows listed by number in the warning, per reason; the CSV column has them all.
MAX_LISTED_ROWS = 10


@dataclass
class StructureInput:
    """What :func:`read_structure_input` read: a structure (``None`` where it failed), a name
    and a skip reason (``""`` for a good one) per entry, in input order."""

    structures: list
    names: list[str]
    reasons: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> dict[str, list[int]]:
        """Reason (its kind, before any ``:`` detail) -> positions of the entries it hit."""
        out: dict[str, list[int]] = {}
        for i, reason in enumerate(self.reasons):
            if reason:
                out.setdefault(reason.split(":")[0], []).append(i)
        return out

    def summary(self) -> str:
        """``"2 of 200 structures skipped: 1 unparseable CIF (row 3), 1 empty cif (row 7)"``;
        empty when nothing was skipped. Rows count from 0 in input order, as the rows of
        ``crystalrl.evaluate``'s per-structure CSV do."""
        skipped = self.skipped
        if not skipped:
            return ""
        parts = []
        for reason, rows in sorted(skipped.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            listed = ", ".join(str(r) for r in rows[:MAX_LISTED_ROWS])
            more = ", …" if len(rows) > MAX_LISTED_ROWS else ""
            parts.append(f"{len(rows)} {reason} (row{'s' if len(rows) > 1 else ''} {listed}{more})")
        n = sum(len(rows) for rows in skipped.values())
        return f"{n} of {len(self.reasons)} structures skipped: {', '.join(parts)}"


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _detail(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:160]


#: Cells with a smaller volume (Å³) are degenerate: metrics that invert or take roots of
#: the lattice fail on them, and no real crystal has one.
MIN_CELL_VOLUME = 1e-3


def malformed(structure) -> str:
    """Why ``structure`` cannot be evaluated (``""`` when it can): a lattice or coordinate
    that is not finite, or a (near-)zero or negative cell volume. pymatgen reads such
    cells without complaint, and one of them used to crash a whole evaluation (a NaN
    lattice in the diversity metrics) or pass as valid, unique and novel."""
    import numpy as np

    try:
        matrix = np.asarray(structure.lattice.matrix, dtype=float)
        coords = np.asarray(structure.frac_coords, dtype=float)
    except Exception as exc:
        return f"degenerate lattice: {_detail(exc)}"
    if not np.isfinite(matrix).all():
        return "degenerate lattice: a lattice vector is not finite"
    if not np.isfinite(coords).all():
        return "degenerate lattice: a coordinate is not finite"
    volume = float(np.linalg.det(matrix))
    if not volume > MIN_CELL_VOLUME:
        return f"degenerate lattice: volume {volume:.3g} Å³"
    return ""


def _checked(read: tuple[object, str]) -> tuple[object, str]:
    structure, reason = read
    if structure is None:
        return read
    reason = malformed(structure)
    return (None, reason) if reason else (structure, "")


def _from_cif(text: object) -> tuple[object, str]:
    """(structure, "") or (None, reason). Any error pymatgen's CIF parser raises means an
    unparseable entry: that parser raises many types, and every one is reported."""
    from pymatgen.core import Structure

    if not isinstance(text, str) or not text.strip():
        return None, "empty cif"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(text, fmt="cif")
    except Exception as exc:
        return None, f"unparseable CIF: {_detail(exc)}"
    if len(structure) == 0:
        return None, "no sites"
    return structure, ""


def _from_dict(d) -> tuple[object, str]:
    """(structure, "") or (None, reason); ``null`` is what the sampler writes for a
    structure it failed to decode."""
    from pymatgen.core import Structure

    if d is None:
        return None, "not decoded (null entry)"
    try:
        return Structure.from_dict(d), ""
    except Exception as exc:  # a foreign or truncated dict: reported like a bad CIF
        return None, f"unreadable structure dict: {_detail(exc)}"


#: What ``crystalrl.sample`` writes (see :mod:`crystalrl.output_paths`).
SAMPLES = "samples.json.gz"
PARTIAL_SAMPLES = "samples.partial.jsonl"


def _sample_record(folder: Path) -> Path:
    """The file to read for a folder: the sampler's record when there is one (it keeps
    failed decodes as ``null``, the CIFs do not, and rates must count them), the
    finished batches of an interrupted sample run (with a warning), else the folder."""
    if (folder / SAMPLES).is_file():
        return folder / SAMPLES
    if (folder / PARTIAL_SAMPLES).is_file():
        warnings.warn(
            f"{folder}: the sample run that wrote it did not finish (no {SAMPLES}); "
            f"reading the structures of its finished batches from {PARTIAL_SAMPLES}",
            stacklevel=3,
        )
        return folder / PARTIAL_SAMPLES
    return folder


def _warn_unread_cifs(record: Path, decoded: int) -> None:
    """CIFs beside a sampler's record are not read; say so when they are not the record's
    own (another number of them: files of another run, or added by hand)."""
    cifs = len(list(record.parent.glob("*.cif")))
    if cifs and cifs != decoded:
        warnings.warn(
            f"{record.parent}: reading {record.name} ({decoded} decoded structures); the "
            f"{cifs} .cif files beside it are not its own and are not read (give a folder "
            "with only CIFs to evaluate those)",
            stacklevel=3,
        )


def read_structure_input(
    path: str | os.PathLike, limit: int | None = None, key: str = "structure_path"
) -> StructureInput:
    """Structures (``None`` where unreadable), names and skip reasons, with one warning
    counting the skipped entries by reason.

    ``path`` is a folder written by ``crystalrl.sample`` (its ``samples.json.gz`` is read),
    a folder of ``*.cif`` files (natural order of file names), a ``.json`` or
    ``.json.gz`` file holding a list of pymatgen ``Structure.as_dict()`` (what the sampler
    writes), or a ``.csv``/``.csv.gz`` file with a ``cif`` column (the dataset layout).
    Errors about the input as a whole name ``key``, the config key it came from.
    """
    given = path
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise ValueError(f"num_structures={limit!r}: expected an integer ≥ 1, or null (all)")
    path = Path(path).expanduser()
    from_folder = path.is_dir()
    if from_folder:
        path = _sample_record(path)
    if path.is_dir():
        files = sorted(path.glob("*.cif"), key=lambda p: _natural_key(p.name))
        if not files:
            raise FileNotFoundError(
                f"{key}={str(given)!r}: no .cif files and no samples.json.gz in the folder "
                f"{path}; expected {ACCEPTED_INPUTS}"
            )
        files = files[:limit] if limit else files
        read = [_from_cif(f.read_text()) for f in files]
        names = [f.stem for f in files]
    elif not path.is_file():
        raise FileNotFoundError(
            f"{key}={str(given)!r}: no such file or folder ({path.absolute()}); "
            f"expected {ACCEPTED_INPUTS}"
        )
    elif path.name == PARTIAL_SAMPLES:
        with open(path) as fh:
            data = [json.loads(line) for line in fh if line.strip()]
        data = data[:limit] if limit else data
        read = [_from_dict(d) for d in data]
        names = [str(i) for i in range(len(data))]
    elif path.name.lower().endswith((".json", ".json.gz")):
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt") as fh:
            data = json.load(fh)
        if isinstance(data, dict) and "structures" in data:
            data = data["structures"]
        if not isinstance(data, list):
            raise ValueError(f"{key}={str(given)!r} should hold a JSON list of structure dicts")
        data = data[:limit] if limit else data
        read = [_from_dict(d) for d in data]
        names = [str(i) for i in range(len(data))]
    elif path.name.lower().endswith((".csv", ".csv.gz")):
        import pandas as pd

        try:
            frame = pd.read_csv(path, nrows=limit)
        except (ValueError, UnicodeDecodeError) as exc:  # empty (EmptyDataError), not a CSV
            raise ValueError(f"{key}={str(given)!r}: cannot read {path} as CSV ({exc})") from exc
        if "cif" not in frame.columns:
            raise ValueError(
                f"{key}={str(given)!r} has no 'cif' column (columns: {', '.join(frame.columns)})"
            )
        names = (
            frame["material_id"].astype(str).tolist()
            if "material_id" in frame.columns
            else [str(i) for i in range(len(frame))]
        )
        read = [_from_cif(c) for c in frame["cif"]]
    else:
        raise ValueError(
            f"{key}={str(given)!r}: cannot read structures from it; expected {ACCEPTED_INPUTS}"
        )
    if from_folder and path.is_file() and not limit:
        _warn_unread_cifs(path, sum(s is not None for s, _ in read))
    read = [_checked(r) for r in read]
    result = StructureInput([s for s, _ in read], names, [r for _, r in read])
    if message := result.summary():
        warnings.warn(f"{path}: {message}", stacklevel=2)
    return result


def read_structures(path: str | os.PathLike, limit: int | None = None) -> tuple[list, list[str]]:
    """Structures (``None`` where unreadable) and a name for each; see
    :func:`read_structure_input`, which also gives the reasons."""
    result = read_structure_input(path, limit)
    return result.structures, result.names


def write_structures_json(structures, path: str | os.PathLike) -> Path:
    """A (gzipped when the name ends in .gz) JSON list of ``Structure.as_dict()``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [None if s is None else s.as_dict() for s in structures]
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt") as fh:
        json.dump(data, fh)
    return path


def write_structures(structures: list, output_dir: str | Path, write_cifs: bool = True) -> Path:
    """A folder as ``crystalrl.sample`` leaves it: ``samples.json.gz`` (``null`` for a
    missing structure, so that rates still count it) and, with ``write_cifs``, one CIF per
    structure named by its position, so that a folder of results reads like one of samples."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if write_cifs:
        for i, s in enumerate(structures):
            if s is not None:
                s.to(filename=str(out / f"{i:06d}_{s.composition.reduced_formula}.cif"))
    return write_structures_json(structures, out / SAMPLES)

"""Output paths checked before the work, and sample folders that never mix two runs.

``sample`` and ``evaluate`` used to compute everything and then fail on a read-only
folder with a bare ``OSError``; a folder that already held samples silently gained the
new ones beside the old (with clashing names) while ``samples.json.gz`` held only the
new. Paths are now tried before any model is loaded, a folder with earlier samples is
refused unless ``overwrite=true``, and a sample run writes each finished batch as it goes
(``samples.partial.jsonl``) and marks a complete folder (``samples.json.gz`` and
``complete.json`` appear only at the end).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Written by ``sample`` when every batch is done: what was sampled, how, how long.
COMPLETE_MARKER = "complete.json"
#: One JSON structure dict (or ``null``) per line, appended batch by batch while sampling.
PARTIAL_SAMPLES = "samples.partial.jsonl"
SAMPLES = "samples.json.gz"
#: What Hydra writes into its run folder, which is ``sample``'s default output folder.
HYDRA_ENTRIES = (".hydra",)
HYDRA_SUFFIXES = (".log",)


class OutputPathError(OSError):
    """An output path that cannot be written, or a folder that would mix two runs."""


def writable_folder(folder: str | os.PathLike, key: str, given: Any = None) -> Path:
    """Create ``folder`` and try writing a file in it, or fail naming ``key``."""
    folder = Path(folder).expanduser()
    label = f"{key}={str(given if given is not None else folder)!r}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(
            f"{label}: the folder {folder} cannot be created ({exc.strerror or exc}); "
            "give a path whose folder exists or can be created"
        ) from exc
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputPathError(
            f"{label}: the folder {folder} is not writable ({exc.strerror or exc}); "
            "give another path"
        ) from exc
    return folder


def writable_file(path: str | os.PathLike, key: str) -> Path:
    """Check that ``path`` can be written (its folder created, an existing file replaced)
    before the work that produces it; fail naming ``key``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputPathError(f"{key}={str(path)!r} is a folder; give a file name")
    writable_folder(path.parent, key, given=path)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{key}={str(path)!r}: the file exists and is not writable")
    return path


def sample_outputs(folder: Path) -> list[Path]:
    """The files an earlier sample run wrote in ``folder``."""
    names = (SAMPLES, PARTIAL_SAMPLES, COMPLETE_MARKER)
    return sorted([*folder.glob("*.cif"), *(folder / n for n in names if (folder / n).exists())])


def foreign_entries(folder: Path) -> list[Path]:
    """Entries of ``folder`` that neither Hydra nor a sample run wrote."""
    ours = set(sample_outputs(folder))
    return sorted(
        e
        for e in folder.iterdir()
        if e not in ours
        and e.name not in HYDRA_ENTRIES
        and not (e.is_file() and e.name.endswith(HYDRA_SUFFIXES))
    )


def prepare_sample_folder(
    folder: str | os.PathLike, overwrite: bool = False, key: str = "output_dir"
) -> Path:
    """The folder ``sample`` writes to: created, writable, and empty of other runs.

    With ``overwrite`` the files of an earlier sample run are removed first; other files
    are never removed, and a folder holding them is refused either way.
    """
    path = writable_folder(folder, key)
    earlier, other = sample_outputs(path), foreign_entries(path)
    if other:
        listed = ", ".join(e.name for e in other[:5]) + (", …" if len(other) > 5 else "")
        raise OutputPathError(
            f"{key}={str(folder)!r} is not empty ({listed}); give a new or empty folder"
        )
    if earlier and not overwrite:
        cifs = sum(p.suffix == ".cif" for p in earlier)
        raise OutputPathError(
            f"{key}={str(folder)!r} already holds samples ({cifs} .cif files"
            + "".join(f", {p.name}" for p in earlier if p.suffix != ".cif")
            + "); give a new folder, or add overwrite=true to replace them"
        )
    for p in earlier:
        p.unlink()
    return path


class SampleWriter:
    """Writes a sample run batch by batch: the CIFs and a line per structure in
    :data:`PARTIAL_SAMPLES` as each batch finishes, the complete record at the end."""

    def __init__(self, folder: str | os.PathLike, write_cifs: bool = True):
        self.folder = Path(folder)
        self.write_cifs = write_cifs
        self.count = 0

    def add(self, structures: Iterable[Any]) -> None:
        """Write one finished batch (``None`` for a structure that failed to decode)."""
        lines = []
        for s in structures:
            if s is not None and self.write_cifs:
                name = f"{self.count:06d}_{s.composition.reduced_formula}.cif"
                s.to(filename=str(self.folder / name))
            lines.append(json.dumps(None if s is None else s.as_dict()))
            self.count += 1
        with open(self.folder / PARTIAL_SAMPLES, "a") as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self, structures: list, record: dict[str, Any]) -> Path:
        """Write ``samples.json.gz`` and the completion marker; drop the partial record."""
        from crystalrl.metrics.structures_io import write_structures_json

        path = write_structures_json(structures, self.folder / SAMPLES)
        (self.folder / COMPLETE_MARKER).write_text(json.dumps(record, indent=1) + "\n")
        (self.folder / PARTIAL_SAMPLES).unlink(missing_ok=True)
        return path

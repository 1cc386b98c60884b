"""Which folders a reference name means: ``mp-20`` is MP-20 in the data directory.

Commands and configs name references the way the paper does (``mp-20``), while datasets
live in CDVAE-layout folders (``mp_20``) under ``$CRYSTALRL_DATA_DIR``; a path to any such
folder works too, so a user's own dataset can be a reference without registering it.
A reference may also be a union of several, joined with ``+`` (``mp-20+mp-bandgap``):
MP-20 as recovered lacks whole chemical systems that the band-gap set holds, and a known
compound missing from the reference is scored as novel and, with an empty hull around it,
as deeply stable.
"""

from __future__ import annotations

import os
from pathlib import Path

from crystalrl.data.parse import default_data_dir

#: Reference names -> dataset folder under the data directory.
REFERENCE_DATASETS = {
    "mp-20": "mp_20",
    "perov-5": "perov_5",
    "carbon-24": "carbon_24",
    "mp-bandgap": "mp_bandgap",
}
#: Every Materials Project dataset we hold: the default reference for novelty, the hull and
#: the reference features (``mp-20`` alone is the paper's and stays selectable).
DEFAULT_REFERENCE = "mp-20+mp-bandgap"


class ReferenceDatasetError(ValueError):
    """A reference name or folder that cannot be used."""


def resolve_reference_dir(
    name_or_path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    key: str = "reference_dataset",
) -> Path:
    """``mp-20`` -> ``$CRYSTALRL_DATA_DIR/mp_20``; an existing folder -> itself; else an error
    naming ``key``, the config key the name came from (every command and the RL reward
    call it ``reference_dataset``)."""
    text = str(name_or_path)
    if text in REFERENCE_DATASETS:
        folder = Path(data_dir or default_data_dir()) / REFERENCE_DATASETS[text]
        if not folder.is_dir():
            raise ReferenceDatasetError(
                f"{key}={text!r}: reference dataset '{text}' should be at {folder}, which "
                "does not exist; set CRYSTALRL_DATA_DIR to the folder holding the datasets"
            )
        return folder
    folder = Path(text).expanduser()
    if folder.is_dir():
        return folder
    known = ", ".join(sorted(REFERENCE_DATASETS))
    raise ReferenceDatasetError(
        f"{key}={text!r} is neither a known reference dataset ({known}) nor an existing "
        f"folder ({folder.absolute()} does not exist); give one of those names or a "
        "CDVAE-layout folder with train/val/test .csv(.gz) files"
    )


def resolve_reference_dirs(
    name_or_path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    key: str = "reference_dataset",
) -> list[Path]:
    """The folders of a reference: one, or one per ``+``-joined part, in the given order
    (earlier parts win when the union drops duplicates). An unknown part is an error that
    names it; a folder named twice is an error too."""
    text = str(name_or_path)
    parts = [p.strip() for p in text.split("+")] if "+" in text else [text]
    if "+" in text and not Path(text).expanduser().is_dir():
        if any(not p for p in parts):
            raise ReferenceDatasetError(
                f"{key}={text!r}: an empty name in the union; join reference names or "
                "folders with '+', for example mp-20+mp-bandgap"
            )
        folders = []
        for part in parts:
            try:
                folders.append(resolve_reference_dir(part, data_dir, key))
            except ReferenceDatasetError as exc:
                raise ReferenceDatasetError(f"{key}={text!r}, part {part!r}: {exc}") from exc
        seen = [f.resolve() for f in folders]
        if len(set(seen)) != len(seen):
            raise ReferenceDatasetError(f"{key}={text!r} names the same dataset twice")
        return folders
    return [resolve_reference_dir(text, data_dir, key)]

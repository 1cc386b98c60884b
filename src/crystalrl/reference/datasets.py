"""Which folder a reference name means: ``mp-20`` is MP-20 in the data directory.

Commands and configs name references the way the paper does (``mp-20``), while datasets
live in CDVAE-layout folders (``mp_20``) under ``$CRYSTALRL_DATA_DIR``; a path to any such
folder works too, so a user's own dataset can be a reference without registering it.
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

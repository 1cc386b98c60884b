"""The checkpoint registry and the ``${hub:NAME}`` config resolver.

Shipped checkpoints live in the repository's ``checkpoints/`` folder and are listed in
``checkpoints/registry.yaml`` with their sha256, so a config can name a model
(``${hub:mp_20_vae}``) and be sure it gets the exact weights the registry describes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import yaml

#: Repository root when installed in editable mode (src layout): src/crystalrl/hub.py -> ../..
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class UnknownCheckpointError(KeyError):
    """A name that is neither in the registry nor an existing path."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def registry_path() -> Path:
    return Path(
        os.environ.get("CRYSTALRL_REGISTRY", PROJECT_ROOT / "checkpoints" / "registry.yaml")
    )


def load_registry(path: str | os.PathLike | None = None) -> dict[str, dict]:
    path = Path(path) if path is not None else registry_path()
    if not path.is_file():
        return {}
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    return data.get("checkpoints", data) or {}


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve(name_or_path: str, registry: str | os.PathLike | None = None) -> str:
    """A registry name -> its verified local file; an existing path -> itself; else an error.

    The file of a registry entry is relative to the registry's folder. A checksum mismatch
    is an error too: training on silently different weights is worse than stopping.
    """
    reg_path = Path(registry) if registry is not None else registry_path()
    entries = load_registry(reg_path)
    if name_or_path in entries:
        entry = entries[name_or_path]
        file = (reg_path.parent / entry["file"]).resolve()
        if not file.is_file():
            raise FileNotFoundError(
                f"checkpoint '{name_or_path}' is registered as {file} but that file is missing"
            )
        expected = entry.get("sha256")
        if expected and sha256_of(file) != expected:
            raise ValueError(
                f"checkpoint '{name_or_path}' at {file} does not match its registered sha256 "
                f"{expected[:12]}…; re-fetch the file or update {reg_path}"
            )
        return str(file)
    if Path(name_or_path).expanduser().exists():
        return str(Path(name_or_path).expanduser())
    known = ", ".join(sorted(entries)) or "(registry is empty)"
    raise UnknownCheckpointError(
        f"'{name_or_path}' is neither a registered checkpoint nor an existing path. "
        f"Known checkpoints in {reg_path}: {known}"
    )

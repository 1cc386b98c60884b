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

#: The repository root in an editable install (src layout: this file is src/crystalrl/*.py)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class UnknownCheckpointError(KeyError, FileNotFoundError):
    """A name that is neither in the registry nor an existing file.

    Both a failed registry lookup and a missing file, so code that catches either keeps
    catching it.
    """

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class ChecksumMismatchError(ValueError):
    """A registered file whose bytes are not the ones its registry entry vouches for."""


class UnreadableCheckpointError(ValueError):
    """A file that exists but is not a checkpoint crystalrl can load (safely)."""


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


def _label(value: object, key: str | None) -> str:
    return f"{key}={value!r}" if key else repr(value)


def resolve_checkpoint(
    value: str | os.PathLike | None,
    key: str | None = None,
    registry: str | os.PathLike | None = None,
) -> str:
    """A registry name -> its verified local file; an existing file -> itself; else an error.

    Every checkpoint a user names (a config key, ``${hub:NAME}``, a loader's argument)
    passes through here, so every miss says the same useful thing: which key, which value,
    and what would have been accepted. ``key`` is the config key the value came from
    (``rl_module.ldm_ckpt_path``); errors name it. The file of a registry entry is relative
    to the registry's folder. A checksum mismatch is an error too: training on silently
    different weights is worse than stopping.
    """
    reg_path = Path(registry) if registry is not None else registry_path()
    entries = load_registry(reg_path)
    known = ", ".join(sorted(entries)) or "(registry is empty)"
    accepted = (
        "give a registered name or the path of an existing .ckpt file. "
        f"Known checkpoints in {reg_path}: {known}"
    )
    label = _label(None if value is None else str(value), key)
    if value is None or not str(value).strip():
        raise UnknownCheckpointError(f"{label}: no checkpoint given; {accepted}")
    name = str(value)
    if name in entries:
        entry = entries[name]
        file = (reg_path.parent / entry["file"]).resolve()
        if not file.is_file():
            raise FileNotFoundError(
                f"{label}: checkpoint '{name}' is registered as {file} but that file is "
                f"missing; restore it, or {accepted}"
            )
        expected = entry.get("sha256")
        if expected and sha256_of(file) != expected:
            raise ChecksumMismatchError(
                f"{label}: checkpoint '{name}' at {file} does not match its registered sha256 "
                f"{expected[:12]}…; re-fetch the file or update {reg_path}"
            )
        return str(file)
    path = Path(name).expanduser()
    if path.is_file():
        return str(path)
    where = "is a folder, not a file" if path.is_dir() else "does not exist"
    raise UnknownCheckpointError(
        f"{label} is neither a registered checkpoint nor an existing file "
        f"({path.absolute()} {where}); {accepted}"
    )


def resolve(name_or_path: str, registry: str | os.PathLike | None = None) -> str:
    """:func:`resolve_checkpoint` without a config key, for callers that have none
    (``python -m crystalrl.hub verify``)."""
    return resolve_checkpoint(name_or_path, registry=registry)


def load_checkpoint(
    value: str | os.PathLike, key: str | None = None, map_location: str = "cpu"
) -> dict:
    """The contents of a checkpoint named by ``value`` (registry name or file).

    Loaded with ``weights_only=True``: a checkpoint is data (tensors, numbers, strings,
    lists and dicts of them), and unpickling arbitrary objects from a downloaded file could
    run code. Every crystalrl checkpoint, exported or Lightning's, is such data.
    """
    import pickle

    import torch

    path = resolve_checkpoint(value, key)
    label = _label(str(value), key)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    # what torch.load raises on files that are not checkpoints (a text file: KeyError) or
    # hold objects other than data
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, ValueError) as exc:
        raise UnreadableCheckpointError(
            f"{label}: {path} is not a checkpoint that loads with torch.load(weights_only=True) "
            f"({_load_failure(exc)}); expected a Lightning or exported crystalrl .ckpt file"
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UnreadableCheckpointError(
            f"{label}: {path} holds no 'state_dict'; expected a Lightning or exported "
            "crystalrl .ckpt file"
        )
    return ckpt


def _load_failure(exc: BaseException) -> str:
    """The line of a torch.load error that says what was wrong (torch's weights-only error
    is a paragraph whose useful part, the class it refused, is in the middle)."""
    text = str(exc)
    if "Unsupported global:" in text:
        name = text.split("Unsupported global:")[1].split(" was not")[0].strip()
        return f"it holds a {name.removeprefix('GLOBAL ')} object, not only tensors and numbers"
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:")[1].strip().splitlines()
        return detail[0][:200] if detail else "not a pickle of data"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def register(
    name: str,
    file: str | os.PathLike,
    command: str,
    quality: dict | None = None,
    notes: str | None = None,
    registry: str | os.PathLike | None = None,
) -> dict:
    """Add or replace a registry entry for a file under the registry's folder."""
    reg_path = Path(registry) if registry is not None else registry_path()
    file = Path(file).resolve()
    try:
        rel = file.relative_to(reg_path.parent.resolve())
    except ValueError as exc:
        raise ValueError(f"{file} must live under {reg_path.parent} to be registered") from exc
    data = {}
    if reg_path.is_file():
        with open(reg_path) as fh:
            data = yaml.safe_load(fh) or {}
    entries = data.setdefault("checkpoints", {}) or {}
    data["checkpoints"] = entries
    entry = {
        "file": str(rel),
        "sha256": sha256_of(file),
        "size_mb": round(file.stat().st_size / 1e6, 2),
        "command": command,
        "quality": dict(quality or {}),
    }
    if notes:
        entry["notes"] = notes
    entries[name] = entry
    header = (
        "# Shipped checkpoints. `file` is relative to this folder; `${hub:NAME}` in a config\n"
        "# resolves NAME to that file after checking its sha256.\n"
    )
    with open(reg_path, "w") as fh:
        fh.write(header)
        yaml.safe_dump(data, fh, sort_keys=False, width=100)
    return entry


def refresh_entry(name: str, registry: str | os.PathLike | None = None) -> dict:
    """Set ``name``'s ``sha256`` and ``size_mb`` to those of its file, once rewritten.

    Only those two lines of the registry change: people write its notes and quality by
    hand, and a YAML dump would reflow every entry.
    """
    reg_path = Path(registry) if registry is not None else registry_path()
    file = reg_path.parent / load_registry(reg_path)[name]["file"]
    new = {"sha256": sha256_of(file), "size_mb": round(file.stat().st_size / 1e6, 2)}
    lines = reg_path.read_text().splitlines(keepends=True)
    at = lines.index(f"  {name}:\n") + 1
    while at < len(lines) and lines[at].startswith("    "):
        field = lines[at].split(":")[0].strip()
        if field in new and lines[at].startswith(f"    {field}:"):
            lines[at] = f"    {field}: {new[field]}\n"
        at += 1
    reg_path.write_text("".join(lines))
    entry = load_registry(reg_path)[name]
    if any(entry.get(k) != v for k, v in new.items()):
        raise ValueError(f"{reg_path}: {name} has no sha256 and size_mb lines to update")
    return entry

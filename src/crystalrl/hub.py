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


def main(argv: list[str] | None = None) -> int:
    """``python -m crystalrl.hub [list | verify | register NAME FILE --command ...]``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m crystalrl.hub")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="registered checkpoints")
    sub.add_parser("verify", help="check every registered file's sha256")
    reg = sub.add_parser("register", help="add a checkpoint file to the registry")
    reg.add_argument("name")
    reg.add_argument("file")
    reg.add_argument("--command", required=True, help="the command that made the file")
    reg.add_argument("--quality", default="{}", help="measured quality as a JSON object")
    reg.add_argument("--notes", default=None)
    args = parser.parse_args(argv)
    if args.cmd == "register":
        entry = register(args.name, args.file, args.command, json.loads(args.quality), args.notes)
        print(f"registered {args.name}: {entry['file']} ({entry['sha256'][:12]}…)")
        return 0
    for name, entry in load_registry().items():
        status = ""
        if args.cmd == "verify":
            try:
                resolve(name)
                status = "ok"
            except (ValueError, FileNotFoundError) as exc:
                status = f"FAILED: {exc}"
        print(f"{name:24s} {entry.get('file', '')}  {status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

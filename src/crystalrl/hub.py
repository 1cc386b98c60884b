"""``python -m crystalrl.hub [list | verify | register NAME FILE --command ... | reexport NAME]``:
the shipped checkpoints of :mod:`crystalrl.checkpoint_registry`, listed, verified, added or
written again with today's code (:func:`crystalrl.checkpoint_io.reexport_checkpoint`)."""

from __future__ import annotations

import argparse
import json

from crystalrl.checkpoint_registry import load_registry, refresh_entry, register, resolve


def _loader(path: str):
    """The loader of the stage a shipped file holds."""
    from crystalrl.checkpoint_kind import checkpoint_kind
    from crystalrl.checkpoint_registry import load_checkpoint
    from crystalrl.ldm.module import load_ldm
    from crystalrl.predictor.module import load_predictor
    from crystalrl.vae.module import load_vae

    loaders = {"VAE": load_vae, "LDM": load_ldm, "predictor": load_predictor}
    return loaders[checkpoint_kind(load_checkpoint(path))]


def main(argv: list[str] | None = None) -> int:
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
    again = sub.add_parser("reexport", help="rewrite a registered file with today's code")
    again.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "reexport":
        from crystalrl.checkpoint_io import reexport_checkpoint

        for name in args.names:
            path = resolve(name)
            reexport_checkpoint(path, _loader(path))
            entry = refresh_entry(name)
            print(f"re-exported {name}: {entry['file']} ({entry['sha256'][:12]}…)")
        return 0
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

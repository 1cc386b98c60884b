"""Summarise a dataset folder: rows read and skipped, elements, atom-count histogram.

Usage: ``python -m crystalrl.data.summary DATASET_DIR [--json] [--max-atoms N]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

from crystalrl.data.parse import SPLITS, DatasetError, find_split_file, read_split


def summarise(dataset_dir: str, max_atoms: int = 20, niggli: bool = True) -> dict:
    """Per-split counts, skip reasons, elements and atom-count histogram as one dict."""
    from pymatgen.core import Element

    out: dict = {"dataset": str(dataset_dir), "max_atoms": max_atoms, "splits": {}}
    start = time.perf_counter()
    for name in SPLITS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the skip counts are reported below instead
            split = read_split(
                find_split_file(dataset_dir, name), max_atoms=max_atoms, niggli=niggli
            )
        zs = np.unique(split.atom_types)
        hist = np.bincount(split.num_atoms, minlength=max_atoms + 1)
        out["splits"][name] = {
            "file": split.source,
            "read": len(split),
            "skipped": int(sum(split.skipped.values())),
            "skipped_reasons": split.skipped,
            "elements": [Element.from_Z(int(z)).symbol for z in zs],
            "num_atoms_histogram": {str(n): int(c) for n, c in enumerate(hist) if c},
        }
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def _print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{summary['dataset']} (max {summary['max_atoms']} atoms)")
    for col in ("split", "read", "skipped", "reasons", "elements"):
        table.add_column(col)
    for name, s in summary["splits"].items():
        reasons = ", ".join(f"{n} {r}" for r, n in s["skipped_reasons"].items()) or "-"
        table.add_row(name, str(s["read"]), str(s["skipped"]), reasons, str(len(s["elements"])))
    console.print(table)
    for name, s in summary["splits"].items():
        hist = s["num_atoms_histogram"]
        peak = max(hist.values())
        console.print(f"[bold]{name}[/bold] atoms per cell:")
        for n, c in hist.items():
            console.print(f"  {int(n):3d} {c:7d} " + "#" * max(1, round(40 * c / peak)))
    console.print(f"loaded in {summary['seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crystalrl.data.summary", description=__doc__)
    parser.add_argument("dataset_dir")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--max-atoms", type=int, default=20)
    parser.add_argument("--no-niggli", action="store_true", help="keep cells as written")
    args = parser.parse_args(argv)
    try:
        summary = summarise(args.dataset_dir, args.max_atoms, not args.no_niggli)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        _print_table(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One offline HTML page to look at an RL run: its curves, what it samples, and the best crystals.

``python -m crystalrl.report RUN_DIR [--samples BASE [TUNED]] --output report.html``

RUN_DIR is a ``crystalrl.train_rl`` run folder; each sample set is a ``crystalrl.sample``
folder or a ``.json(.gz)`` list of structures. Everything (styles, figures as base64 PNG)
is inside the one file so it can be mailed, attached to an issue or opened without network.
Only cheap metrics are computed by default; ``--metrics e_above_hull novel`` adds ones that
need a reference and an energy model, and columns that ``crystalrl.evaluate`` already wrote
to a CSV next to the samples are read from it instead of being recomputed.
"""

from __future__ import annotations

import argparse
import sys

from crystalrl.reporting.page import CHEAP_METRICS, build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crystalrl.report",
        description=__doc__.split("\n\n")[0],
        epilog="e.g. python -m crystalrl.report logs/train_rl/rl_custom_reward "
        "--samples out/base out/tuned --output report.html",
    )
    parser.add_argument("run_dir", help="a crystalrl.train_rl run folder (logs/train_rl/NAME)")
    parser.add_argument(
        "--samples", nargs="+", default=[], metavar="DIR_OR_JSON", help="base [tuned] samples"
    )
    parser.add_argument("--output", default=None, help="HTML path (default RUN_DIR/report.html)")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=[],
        help=f"metrics beyond {', '.join(CHEAP_METRICS)} (e.g. e_above_hull novel; these "
        "need --reference and CHGNet unless an evaluate CSV next to the samples has them)",
    )
    parser.add_argument(
        "--rank-by",
        default="auto",
        help="column that picks the crystals shown: atomic_density, e_above_hull (lowest "
        "first) or any per-structure column (default: e_above_hull when known)",
    )
    parser.add_argument("--top", type=int, default=12, help="crystals shown per sample set")
    parser.add_argument("--labels", nargs="+", default=None, help="names of the sample sets")
    parser.add_argument("--reference", default="mp-20", help="reference for novel/e_above_hull")
    parser.add_argument("--num-workers", type=int, default=None, help="StructureMatcher workers")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        out = build_report(
            args.run_dir,
            args.samples,
            args.output,
            args.metrics,
            args.rank_by,
            args.top,
            args.labels,
            None if args.reference.lower() in ("none", "null") else args.reference,
            args.num_workers,
            args.title,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

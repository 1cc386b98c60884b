"""Plot a run's logged metrics: reward, KL and reward components against step.

``python -m crystalrl.plot RUN_DIR [--output reward.png] [--title TITLE]``

RUN_DIR is a run folder (``logs/train_rl/<run_name>``); every CSV log version in it is
read, so a run that was stopped and resumed plots as one curve.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crystalrl.reporting.curves import plot_run, read_metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crystalrl.plot", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--output", default=None, help="PNG path (default RUN_DIR/metrics.png)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        frame = read_metrics(args.run_dir)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = plot_run(
        frame,
        args.output or Path(args.run_dir) / "metrics.png",
        args.title or Path(args.run_dir).name,
    )
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare RL runs at equal CPU time: how much MSUN each gains per CPU-hour and per reward call.

``python benchmarks/rl_pilot_curves.py [--minutes M] [--png FILE] LABEL=RUN_DIR ...``
(``RUN_DIR`` is a ``logs/train_rl/NAME`` folder of ``train_rl``; its CSV log is read)

Runs that differ in one option (``kl_reference``, ``train_step_fraction``, …) do different
work per step, so they are compared on the clock, not on steps: a run's time is the sum of
its steps' rollout, decode, reward and update seconds (validation excluded, as it is the
same for every option), cut at ``--minutes``. For each run the table gives the steps done,
the training batches' MSUN (``train/avg_MSUN``) over its first and last 50 steps before the
cut, the gain per CPU-hour and per 1,000 structures scored, the last three
``val/avg_MSUN`` points before the cut, and the last 50 steps' signs of reward hacking
where the run logged them (credible MSUN, single-element cells, distinct formulas, ...).
``--png`` draws the curves: 50-step means of the training batches' MSUN and of the signs
of hacking, against CPU minutes. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

import crystalrl.metrics.definitions  # noqa: F401  (fills the registry)
from crystalrl.metrics.registry import REGISTRY
from crystalrl.rewards.reward import WATCH_METRICS

TIME_KEYS = ("time/rollout", "time/decode", "time/rewards", "time/update")
WINDOW = 50


def logged_name(metric: str) -> str:
    """The name a metric is logged under: per-structure metrics as their batch mean."""
    return f"avg_{metric}" if REGISTRY[metric].column else metric


#: Signs of reward hacking the reward logs beside MSUN (those it always watches, and those
#: that come with MSUN and the hull): their means over the last steps.
SIGNS = tuple(
    logged_name(m)
    for m in ("MSUN_credible", "MSUN_deep_below_hull", "is_supported", *WATCH_METRICS)
)


def read_log(run_dir: Path) -> pd.DataFrame:
    """The run's CSV metrics (the latest version folder), one row per logged step."""
    files = sorted(Path(run_dir).glob("csv/version_*/metrics.csv"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no csv/version_*/metrics.csv (is it a train_rl run?)")
    return pd.read_csv(files[-1])


def curves(log: pd.DataFrame, samples_per_step: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows with cumulative minutes and structures scored; validation rows likewise."""
    train = log.dropna(subset=["train/avg_MSUN"]).groupby("step", as_index=False).first()
    seconds = train[[k for k in TIME_KEYS if k in train]].fillna(0.0).sum(axis=1)
    train["minutes"] = seconds.cumsum() / 60.0
    train["scored"] = np.arange(1, len(train) + 1) * samples_per_step
    if "val/avg_MSUN" not in log:  # not validated yet
        log = log.assign(**{"val/avg_MSUN": np.nan})
    val = log.dropna(subset=["val/avg_MSUN"])[["step", "val/avg_MSUN"]]
    val = val.merge(train[["step", "minutes"]], on="step", how="left").dropna()
    return train, val


def summary(train: pd.DataFrame, val: pd.DataFrame, minutes: float | None) -> dict:
    if minutes is not None:
        train = train[train["minutes"] <= minutes]
        val = val[val["minutes"] <= minutes]
    first = train["train/avg_MSUN"].head(WINDOW).mean()
    last = train["train/avg_MSUN"].tail(WINDOW).mean()
    hours = float(train["minutes"].iloc[-1]) / 60.0
    scored = int(train["scored"].iloc[-1])
    return {
        "steps": int(train["step"].iloc[-1]) + 1,
        "minutes": round(hours * 60.0, 1),
        "seconds_per_step": round(hours * 3600.0 / len(train), 2),
        "train_MSUN_first": round(float(first), 4),
        "train_MSUN_last": round(float(last), 4),
        "MSUN_gain_per_cpu_hour": round(float(last - first) / hours, 4),
        "MSUN_gain_per_1000_scored": round(float(last - first) / scored * 1000.0, 5),
        "val_MSUN_last3": round(float(val["val/avg_MSUN"].tail(3).mean()), 4),
        **{
            f"last_{name}": round(float(train[f"train/{name}"].tail(WINDOW).mean()), 4)
            for name in SIGNS
            if f"train/{name}" in train
        },
    }


#: The panels of ``--png``: MSUN beside the signs that say whether its gain is earned.
PANELS = (
    ("avg_MSUN", "MSUN (%)", 100.0),
    ("avg_MSUN_credible", "credible MSUN (%)", 100.0),
    ("avg_is_single_element", "single-element cells (%)", 100.0),
    ("avg_is_supported", "in supported systems (%)", 100.0),
    ("density_vs_reference", "density / reference's", 1.0),
    ("avg_is_metastable", "metastable (%)", 100.0),
)


def plot(runs: dict[str, tuple[pd.DataFrame, pd.DataFrame]], minutes: float | None, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(runs.values()))[0]
    panels = [p for p in PANELS if f"train/{p[0]}" in first]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, label, scale) in zip(axes.flat, panels, strict=False):
        for run, (train, _) in runs.items():
            if f"train/{name}" not in train:
                continue
            smooth = train[f"train/{name}"].rolling(WINDOW, min_periods=10).mean() * scale
            ax.plot(train["minutes"], smooth, label=run)
        if minutes is not None:
            ax.axvline(minutes, color="grey", lw=0.8, ls="--")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("CPU minutes", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"training batches, {WINDOW}-step means", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--minutes", type=float, default=None, help="cut every run at this time")
    parser.add_argument("--samples-per-step", type=int, default=128, help="prompts × group size")
    parser.add_argument("--png", default=None)
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.runs:
        label, sep, run_dir = spec.partition("=")
        if not sep:
            parser.error(f"{spec!r}: expected LABEL=RUN_DIR")
        runs[label] = curves(read_log(Path(run_dir)), args.samples_per_step)
    report = {label: summary(*c, args.minutes) for label, c in runs.items()}
    print(pd.DataFrame(report).T.to_string())
    if args.png:
        plot(runs, args.minutes, args.png)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()

"""A run's logged metrics and the figure of its reward, KL and reward components.

``crystalrl.plot`` writes the figure as a PNG and ``crystalrl.report`` puts it in its page;
both read and draw the run here, so they show the same curves. Every CSV log version of a
run is read, so a run that was stopped and resumed plots as one curve.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pandas as pd


def _version_order(path: Path) -> tuple:
    """version_10 after version_9, so a resumed piece's rows win for a repeated step."""
    name = path.parent.name
    number = name.rsplit("_", 1)[-1]
    return (str(path.parent.parent), int(number) if number.isdigit() else -1, name)


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """All CSV-logged rows of a run, resumed pieces concatenated, one row per step."""
    files = sorted(Path(run_dir).glob("csv/**/metrics.csv"), key=_version_order) or sorted(
        Path(run_dir).glob("**/metrics.csv"), key=_version_order
    )
    if not files:
        raise FileNotFoundError(f"no metrics.csv under {run_dir} (was the CSV logger enabled?)")
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    return frame.groupby("step", as_index=False).last().sort_values("step")


def plot_run(frame: pd.DataFrame, output: str | Path, title: str = "") -> Path:
    """Reward, KL and the raw reward components side by side: a rising reward means little
    until the KL and the component that moved it are seen with it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skip = {
        "train/reward",
        "train/reward_std",
        "train/kl_div",
        "train/loss",
        "train/ratio",
        "train/entropy",
        "train/advantages",
        "train/clip_frac",
        "train/grad_norm",
    }
    components = [c for c in frame.columns if c.startswith("train/") and c not in skip]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for col, label in (("train/reward", "train"), ("val/reward", "val")):
        if col in frame:
            data = frame[["step", col]].dropna()
            ax.plot(
                data["step"],
                data[col],
                label=label,
                marker="o" if label == "val" else None,
                alpha=0.5 if label == "train" else 1.0,
            )
            if label == "train" and len(data) > 10:
                ax.plot(
                    data["step"],
                    data[col].rolling(10, min_periods=1).mean(),
                    label="train (10-step mean)",
                )
    ax.set(title="reward", xlabel="step")
    ax.legend()
    if "train/kl_div" in frame:
        data = frame[["step", "train/kl_div"]].dropna()
        axes[1].plot(data["step"], data["train/kl_div"])
    axes[1].set(title="KL (k3, per step)", xlabel="step", yscale="log")
    for col in components:
        data = frame[["step", col]].dropna()
        axes[2].plot(data["step"], data[col].rolling(10, min_periods=1).mean(), label=col[6:])
    axes[2].set(title="reward components (raw, 10-step mean)", xlabel="step")
    if components:
        axes[2].legend()
    fig.suptitle(title)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def curves(run_dir: Path) -> tuple[str, pd.DataFrame]:
    """The run's reward/KL/component figure as a data URI and the rows it was drawn from:
    the figure ``crystalrl.plot`` writes, so the page and the PNG agree."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    frame = read_metrics(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        png = plot_run(frame, Path(tmp) / "curves.png", run_dir.name)
        data = base64.b64encode(png.read_bytes()).decode("ascii")
    return "data:image/png;base64," + data, frame

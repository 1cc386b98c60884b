"""A sample set judged as a whole: per-structure metrics and their summary, reusing the
columns an evaluation already wrote next to the samples.

Metrics are computed by :func:`crystalrl.evaluation.structures.evaluate_structures`, the
path ``crystalrl.evaluate`` takes, so that a report and the command never disagree on a rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class SampleSet:
    """A sample set with one row per structure, so the table and the grid agree."""

    label: str
    path: Path
    structures: list
    table: pd.DataFrame
    summary: dict[str, float]
    percent: set[str] = field(default_factory=set)  # summary keys that are rates
    csv: Path | None = None  # the evaluate CSV whose columns were reused


def _formula(s) -> str:
    return "" if s is None else s.composition.reduced_formula


def find_evaluate_csv(path: Path, names: list[str], formulas: list[str]) -> pd.DataFrame | None:
    """An evaluate CSV of exactly these structures, next to them, or ``None``.

    Names and formulas must match row by row: a folder can hold the CSV of another sample
    set of the same size, and a CSV of the first N (``num_structures``) would bias the rates.
    """
    folder = path if path.is_dir() else path.parent
    for csv in sorted(folder.glob("*.csv")):
        try:
            frame = pd.read_csv(csv)
        except Exception:
            continue
        if "name" not in frame or "formula" not in frame or len(frame) != len(names):
            continue
        if frame["name"].astype(str).tolist() != names:
            continue
        if frame["formula"].fillna("").astype(str).tolist() != formulas:
            continue
        frame.attrs["path"] = csv
        return frame
    return None


def evaluate_samples(
    path: str | Path,
    label: str,
    metrics: list[str],
    reference: str | None = "mp-20",
    num_workers: int | None = None,
) -> SampleSet:
    """Per-structure metrics and their summary, reusing an evaluate CSV where there is one."""
    from crystalrl.evaluation.structures import evaluate_structures
    from crystalrl.metrics.registry import nan_mean, nan_median
    from crystalrl.metrics.structures_io import read_structures

    path = Path(path)
    structures, names = read_structures(path)
    formulas = [_formula(s) for s in structures]
    csv = find_evaluate_csv(path, names, formulas)
    reused = (
        [] if csv is None else [c for c in csv.columns if c not in ("name", "formula", "index")]
    )
    reused = [c for c in reused if pd.api.types.is_numeric_dtype(csv[c]) and c != "valid"]
    todo = [m for m in dict.fromkeys(metrics) if m not in reused]
    table = pd.DataFrame({"formula": formulas, "valid": [s is not None for s in structures]})
    summary: dict[str, float] = {}
    if todo:
        m = evaluate_structures(
            structures, reference, todo, num_workers=num_workers, progress=False
        )
        computed = m.to_dataframe().drop(columns=["formula", "valid"])
        table = pd.concat([table, computed.drop(columns=reused, errors="ignore")], axis=1)
        summary.update(m.summary())
    for col in reused:
        table[col] = csv[col].to_numpy()
        summary[f"avg_{col}"] = nan_mean(csv[col])
        if col in ("shortest_distance", "contact_ratio") and csv[col].notna().any():
            summary[f"median_{col}"] = nan_median(csv[col])
    summary["num_structures"] = len(structures)
    summary["num_valid_structures"] = int(table["valid"].sum())
    percent = {f"avg_{c}" for c in table.columns if table[c].dtype == bool}
    csv_path = None if csv is None else csv.attrs["path"]
    return SampleSet(label, path, structures, table, summary, percent, csv_path)

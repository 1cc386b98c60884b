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
import base64
import html
import io
import math
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: no reference and no energy model: seconds for a few hundred structures
CHEAP_METRICS = ("unique", "structure_validity", "composition_validity", "physical")
CHEAP_METRICS += ("atomic_density",)
#: ranked lowest first; every other column highest first
LOWER_IS_BETTER = {"e_above_hull", "energy"}
UNITS = {"e_above_hull": "eV/atom", "energy": "eV/atom", "atomic_density": "atoms/Å³"}
STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1150px;
color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px}
h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd}
.sub{color:#666;font-size:.9em}img{max-width:100%;display:block;margin:8px 0}
table{border-collapse:collapse;font-size:.92em;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 10px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3;text-align:left}tr:nth-child(even) td{background:#fafafa}
code{background:#f3f3f3;padding:1px 4px;border-radius:3px}
"""


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


def png_data_uri(fig) -> str:
    """A figure as a data URI: the page must not depend on files next to it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def curves(run_dir: Path) -> tuple[str, pd.DataFrame]:
    """The run's reward/KL/component figure, drawn by ``crystalrl.plot`` so both agree."""
    from crystalrl.plot import plot_run, read_metrics

    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    frame = read_metrics(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        png = plot_run(frame, Path(tmp) / "curves.png", run_dir.name)
        data = base64.b64encode(png.read_bytes()).decode("ascii")
    return "data:image/png;base64," + data, frame


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
    from crystalrl.metrics.metrics import Metrics
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
        m = Metrics(todo, reference=reference, num_workers=num_workers)
        m.compute(structures)
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


def resolve_rank_by(sets: list[SampleSet], rank_by: str) -> str:
    """``auto`` is E_hull when it is known (what a user wants first), else the density reward."""
    if rank_by == "auto":
        known = all(
            "e_above_hull" in s.table and s.table["e_above_hull"].notna().any() for s in sets
        )
        rank_by = "e_above_hull" if known else "atomic_density"
    for s in sets:
        if rank_by not in s.table:
            columns = ", ".join(c for c in s.table.columns if c not in ("formula", "valid"))
            raise ValueError(f"--rank-by {rank_by}: no such column for {s.path} ({columns})")
    return rank_by


def top_indices(table: pd.DataFrame, by: str, top: int = 12) -> list[int]:
    """The best ``top`` rows by ``by``; structurally invalid cells are left out because
    collapsed cells would otherwise win every density ranking."""
    values = pd.to_numeric(table[by], errors="coerce").astype(np.float64)
    keep = table["valid"].astype(bool) & values.notna()
    if "structure_validity" in table:
        keep &= table["structure_validity"].astype(bool)
    ranked = values[keep].sort_values(ascending=by in LOWER_IS_BETTER, kind="stable")
    return [int(i) for i in ranked.index[:top]]


def _value_text(name: str, value: float) -> str:
    unit = UNITS.get(name, "")
    label = "E_hull" if name == "e_above_hull" else name
    return f"{label} = {value:.3g} {unit}".rstrip()


def crystal_grid(sample_set: SampleSet, by: str, top: int = 12, columns: int = 6) -> str:
    """The top crystals drawn with their cell, formula and ranking value, as a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.visualize.plot import plot_atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    indices = top_indices(sample_set.table, by, top)
    rows = max(1, math.ceil(len(indices) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.75 * rows), dpi=80)
    axes = np.atleast_1d(axes).ravel()
    table = sample_set.table
    for ax, i in zip(axes, indices, strict=False):
        atoms = AseAtomsAdaptor.get_atoms(sample_set.structures[i])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plot_atoms(atoms, ax, radii=0.5, rotation="10x,-20y,0z", show_unit_cell=2)
        lines = [f"#{i}  {table.at[i, 'formula']}", _value_text(by, float(table.at[i, by]))]
        if by != "e_above_hull" and "e_above_hull" in table:
            e_hull = float(table.at[i, "e_above_hull"])
            if math.isfinite(e_hull):
                lines.append(_value_text("e_above_hull", e_hull))
        ax.text(0.5, -0.02, "\n".join(lines), transform=ax.transAxes, ha="center", va="top", size=9)
    for ax in axes:
        ax.set_axis_off()
    order = "lowest" if by in LOWER_IS_BETTER else "highest"
    fig.suptitle(f"{sample_set.label}: {len(indices)} structurally valid, {order} {by}")
    fig.tight_layout()
    return png_data_uri(fig)


def _format(value: float | None, percent: bool, delta: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if percent:
        return f"{100 * value:+.1f} pp" if delta else f"{100 * value:.1f} %"
    return f"{value:+.4g}" if delta else f"{value:.4g}"


def summary_table(sets: list[SampleSet]) -> str:
    """Sample sets side by side (with the change when there are two), labelled as evaluate
    prints them so the page reads like the command-line summary."""
    from crystalrl.evaluate import SUMMARY_ROWS

    labels = dict(SUMMARY_ROWS)
    keys = [k for k, _ in SUMMARY_ROWS if any(k in s.summary for s in sets)]
    extra = {k for s in sets for k in s.summary if k.startswith(("avg_", "median_"))}
    keys += sorted(extra - set(keys))
    head = "".join(f"<th>{html.escape(s.label)}</th>" for s in sets)
    head += "<th>change</th>" if len(sets) == 2 else ""
    rows = [f"<tr><th>metric</th>{head}</tr>"]
    for key in keys:
        label = labels.get(key, key.replace("avg_", "mean ", 1))
        percent = any(key in s.percent for s in sets)
        values = [s.summary.get(key) for s in sets]
        cells = [_format(v, percent) for v in values]
        if len(sets) == 2:
            both = all(v is not None for v in values)
            cells.append(_format(values[1] - values[0], percent, True) if both else "n/a")
        tds = "".join(f'<td class="num">{c}</td>' for c in cells)
        rows.append(f"<tr><td>{html.escape(label)} <code>{key}</code></td>{tds}</tr>")
    counts = "".join(
        f'<td class="num">{s.summary["num_structures"]} ({s.summary["num_valid_structures"]})</td>'
        for s in sets
    )
    rows.append(f"<tr><td>structures (decoded)</td>{counts}{'<td></td>' * (len(sets) == 2)}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def run_facts(run_dir: Path, frame: pd.DataFrame) -> str:
    """The few numbers people ask first: how long it ran and how far reward and KL moved."""
    facts = [("last step", f"{int(frame['step'].max())}")]
    for col in ("train/reward", "val/reward", "train/kl_div"):
        if col in frame:
            data = frame[col].dropna()
            if len(data):
                n = min(10, len(data)) if col.startswith("train") else 1
                first, last = data.iloc[:n].mean(), data.iloc[-n:].mean()
                what = f"first → last {n} mean" if n > 1 else "first → last"
                facts.append((f"{col} ({what})", f"{first:.4g} → {last:.4g}"))
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        import yaml

        args = yaml.safe_load(overrides.read_text()) or []
        facts.append(("overrides", " ".join(str(a) for a in args)))
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(v)}</code></td></tr>"
        for k, v in facts
    )
    return f"<table>{body}</table>"


def build_report(
    run_dir: str | Path,
    samples: list[str | Path] | None = None,
    output: str | Path | None = None,
    metrics: list[str] | None = None,
    rank_by: str = "auto",
    top: int = 12,
    labels: list[str] | None = None,
    reference: str | None = "mp-20",
    num_workers: int | None = None,
    title: str | None = None,
) -> Path:
    """Write the page and return its path (``RUN_DIR/report.html`` unless ``output``)."""
    run_dir = Path(run_dir)
    samples = list(samples or [])
    if len(samples) > 2:
        raise ValueError("give at most two sample sets (base and tuned)")
    curves_uri, frame = curves(run_dir)
    if labels is None:
        labels = ["base", "tuned"] if len(samples) == 2 else [Path(p).name for p in samples]
    if len(labels) != len(samples):
        raise ValueError(f"{len(labels)} labels for {len(samples)} sample sets")
    wanted = list(dict.fromkeys([*CHEAP_METRICS, *(metrics or [])]))
    sets = [
        evaluate_samples(p, lab, wanted, reference, num_workers)
        for p, lab in zip(samples, labels, strict=True)
    ]
    title = title or f"crystalrl report: {run_dir.name}"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<div class="sub">run <code>{html.escape(str(run_dir))}</code></div>',
        "<h2>Training</h2>",
        run_facts(run_dir, frame),
        f'<img alt="reward, KL and reward components" src="{curves_uri}">',
    ]
    if sets:
        by = resolve_rank_by(sets, rank_by)
        sources = "".join(
            f"<li>{html.escape(s.label)}: <code>{html.escape(str(s.path))}</code>"
            + (f" (columns reused from <code>{html.escape(s.csv.name)}</code>)" if s.csv else "")
            + "</li>"
            for s in sets
        )
        parts += [
            "<h2>Evaluation</h2>",
            f"<ul>{sources}</ul>",
            summary_table(sets),
            '<p class="sub">Rates count undecoded structures in the denominator.</p>',
            f"<h2>Top {top} crystals by {html.escape(by)}</h2>",
        ]
        for s in sets:
            uri = crystal_grid(s, by, top)
            parts.append(f'<img alt="{html.escape(s.label)} top crystals" src="{uri}">')
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
    out = Path(output) if output else run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


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

"""One offline HTML page for an RL run: its curves, a summary of each sample set and the
best crystals.

Everything (styles, figures as base64 PNG) is inside the one file so it can be mailed,
attached to an issue or opened without network.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from crystalrl.evaluation.sample_sets import SampleSet, evaluate_samples
from crystalrl.evaluation.summary import SUMMARY_ROWS
from crystalrl.reporting.crystals import crystal_grid, resolve_rank_by
from crystalrl.reporting.curves import curves

#: no reference and no energy model: seconds for a few hundred structures
CHEAP_METRICS = ("unique", "structure_validity", "composition_validity", "physical")
CHEAP_METRICS += ("atomic_density",)
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


def _format(value: float | None, percent: bool, delta: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if percent:
        return f"{100 * value:+.1f} pp" if delta else f"{100 * value:.1f} %"
    return f"{value:+.4g}" if delta else f"{value:.4g}"


def summary_table(sets: list[SampleSet]) -> str:
    """Sample sets side by side (with the change when there are two), labelled as evaluate
    prints them so the page reads like the command-line summary."""
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

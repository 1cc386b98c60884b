"""Put several ``evaluate --json`` summaries side by side, headline beside the signs of gaming.

``python benchmarks/eval_table.py [--relaxed] LABEL=SUMMARY.json[#KEY.KEY] ...``

A pilot is decided on the samples of its arms, not on their rewards: each ``SUMMARY.json``
is the JSON line of ``python -m crystalrl.evaluate structure_path=DIR --json`` (with
``relax=true`` it also carries the ``relaxed_*`` keys, which ``--relaxed`` selects). The
table prints MSUN and credible MSUN first and, beside them, every figure that shows a
reward being gamed (single-element cells, hits far below the hull, collapsing diversity,
inflated cells, samples outside the systems the reference knows), so that no headline
number travels without them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: (summary key, row label, percent?) in the order the table prints them.
ROWS: tuple[tuple[str, str, bool], ...] = (
    ("avg_MSUN", "MSUN", True),
    ("avg_MSUN_credible", "credible MSUN", True),
    ("avg_is_metastable", "metastable", True),
    ("avg_unique", "unique", True),
    ("avg_novel", "novel", True),
    ("avg_composition_validity", "SMACT-valid", True),
    ("avg_physical", "contact-physical", True),
    ("avg_is_single_element", "*single-element cells*", True),
    ("avg_MSUN_deep_below_hull", "*MSUN hits below -0.2 eV/atom*", True),
    ("composition_diversity", "*composition diversity*", False),
    ("num_distinct_formulas", "*distinct formulas*", False),
    ("num_distinct_systems", "*distinct chemical systems*", False),
    ("density_vs_reference", "*density / reference's*", False),
    ("avg_is_supported", "*samples in supported systems*", True),
    ("energy_failed", "energy failed (count)", False),
)
#: Rows that only a relaxed summary has.
RELAX_ROWS: tuple[tuple[str, str, bool], ...] = (
    ("relaxed_mean_displacement", "mean displacement (Å)", False),
    ("relaxed_mean_steps", "mean relaxation steps", False),
    ("relaxed_not_converged", "not converged (count)", False),
    ("relaxed_seconds_per_structure", "relaxation s / structure", False),
)


def load(arg: str) -> tuple[str, dict]:
    """``LABEL=PATH[#KEY.KEY]`` to the label and the summary.

    ``PATH`` is the output of ``evaluate --json`` (its last JSON line) or a whole JSON file
    such as ``docs/eval/NAME.json``, whose nested summaries ``#KEY.KEY`` picks
    (``#default_reference.seed_0``)."""
    label, sep, target = arg.partition("=")
    if not sep:
        raise SystemExit(f"expected LABEL=SUMMARY.json, got {arg!r}")
    path, _, keys = target.partition("#")
    text = Path(path).read_text()
    try:
        summary = json.loads(text)
    except json.JSONDecodeError:
        lines = [ln for ln in text.splitlines() if ln.strip().startswith("{")]
        if not lines:
            msg = f"{path}: no JSON line (is it the output of evaluate --json?)"
            raise SystemExit(msg) from None
        summary = json.loads(lines[-1])
    for key in filter(None, keys.split(".")):
        if key not in summary:
            raise SystemExit(f"{path}: no key {key!r} (has {sorted(summary)})")
        summary = summary[key]
    return label, summary


def cell(summary: dict, key: str, percent: bool) -> str:
    value = summary.get(key)
    if value is None:
        return "–"
    if percent:
        return f"{100 * value:.1f} %"
    return f"{value:.3f}" if isinstance(value, float) and not value.is_integer() else f"{value:g}"


def table(columns: list[tuple[str, dict]], relaxed: bool) -> str:
    prefix = "relaxed_" if relaxed else ""
    rows = [(prefix + k, label, pct) for k, label, pct in ROWS]
    if relaxed:
        rows += list(RELAX_ROWS)
    lines = ["| | " + " | ".join(label for label, _ in columns) + " |"]
    lines.append("|---" * (len(columns) + 1) + "|")
    for key, label, pct in rows:
        lines.append(f"| {label} | " + " | ".join(cell(s, key, pct) for _, s in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summaries", nargs="+", metavar="LABEL=SUMMARY.json")
    parser.add_argument("--relaxed", action="store_true", help="the relaxed_* figures")
    args = parser.parse_args(argv)
    out = table([load(a) for a in args.summaries], args.relaxed)
    print(out)
    return out


if __name__ == "__main__":
    main()

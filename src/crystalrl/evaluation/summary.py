"""The rates of an evaluation as people read them: which rows, in which order, how written.

``crystalrl.evaluate`` prints them and ``crystalrl.report`` lays them out in HTML from the
same rows, so the page and the command line read alike.
"""

from __future__ import annotations

import math
from typing import Any

#: Summary rows: (key, label) in the order they are printed.
SUMMARY_ROWS = (
    ("avg_unique", "unique"),
    ("avg_novel", "novel"),
    ("avg_is_metastable", "metastable (E_hull ≤ threshold)"),
    ("avg_is_stable", "stable (E_hull ≤ 0)"),
    ("avg_MSUN", "MSUN"),
    ("avg_MSUN_supported", "MSUN in supported systems (≥ min_hull_support compounds)"),
    ("avg_MSUN_credible", "credible MSUN (supported, ≥ 2 elements, E_hull ≥ -0.1)"),
    ("avg_SUN", "SUN"),
    ("avg_is_supported", "in supported chemical systems"),
    ("avg_physical", "contact-physical (contact ratio ≥ 0.7)"),
    ("median_shortest_distance", "median shortest distance (Å)"),
    ("median_contact_ratio", "median contact ratio"),
    ("avg_structure_validity", "valid structure (distances > 0.5 Å, volume > 0.1 Å³)"),
    ("avg_composition_validity", "valid composition (SMACT)"),
    ("structure_diversity", "structure diversity"),
    ("composition_diversity", "composition diversity"),
    ("avg_e_above_hull", "mean E_hull (eV/atom)"),
    ("avg_atomic_density", "mean atomic density (atoms/Å³)"),
    # signs of reward hacking
    ("avg_is_single_element", "single-element cells"),
    ("avg_MSUN_deep_below_hull", "MSUN hits below -0.2 eV/atom"),
    ("num_distinct_formulas", "distinct formulas"),
    ("num_distinct_systems", "distinct chemical systems"),
    ("density_vs_reference", "atomic density / reference's"),
)
#: What ``relax=true`` adds below the side-by-side rows: (key, label).
RELAX_ROWS = (
    ("relaxed_mean_displacement", "mean displacement in relaxation (Å)"),
    ("relaxed_mean_energy_change", "mean energy change in relaxation (eV/atom)"),
    ("relaxed_not_converged", "relaxations not converged"),
    ("relaxed_failed", "relaxations failed"),
    ("relaxed_seconds_per_structure", "relaxation seconds per structure"),
)


def finite_or_none(value: Any) -> Any:
    """NaN and infinities as ``None``: JSON has no value for them, and a reader should see a
    missing figure rather than a parse error."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_value(key: str, v: Any) -> str:
    """A summary value as printed: rates in percent, counts whole, the rest to 4 places."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if key.startswith("avg_") and key not in ("avg_e_above_hull", "avg_atomic_density"):
        return f"{100 * v:.1f} %"
    if key.startswith("num_"):
        return f"{v:.0f}"
    return f"{v:.4f}"


def print_summary(summary: dict, title: str) -> None:
    """The rates as a table for people; single-point and relaxed side by side when the
    summary holds both, so a relaxation's effect reads in one glance."""
    from rich.console import Console
    from rich.table import Table

    relaxed = any(k.startswith("relaxed_") for k in summary)
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("single point" if relaxed else "value", justify="right")
    if relaxed:
        table.add_column("relaxed", justify="right")
    for key, label in SUMMARY_ROWS:
        if key in summary:
            row = [label, format_value(key, summary[key])]
            if relaxed:
                row.append(format_value(key, summary.get(f"relaxed_{key}")))
            table.add_row(*row)
    for key, label in RELAX_ROWS:
        if key in summary:
            v = summary[key]
            text = str(v) if isinstance(v, int) else format_value(key, v)
            table.add_row(label, "", text)
    for key in sorted(summary):
        if key.startswith("avg_pred_") or key == "avg_in_window":
            table.add_row(key, f"{summary[key]:.4f}")
    counts = f"{summary['num_structures']} ({summary['num_valid_structures']})"
    table.add_row("structures (valid)", counts)
    if summary.get("energy_failed") is not None:
        table.add_row("energy failed (decoded, no energy)", str(summary["energy_failed"]))
    Console().print(table)

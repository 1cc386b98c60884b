"""The best crystals of a sample set, ranked by one column and drawn with their cells."""

from __future__ import annotations

import base64
import io
import math
import warnings

import numpy as np
import pandas as pd

from crystalrl.evaluation.sample_sets import SampleSet

#: ranked lowest first; every other column highest first
LOWER_IS_BETTER = {"e_above_hull", "energy"}
UNITS = {"e_above_hull": "eV/atom", "energy": "eV/atom", "atomic_density": "atoms/Å³"}


def png_data_uri(fig) -> str:
    """A figure as a data URI: the page must not depend on files next to it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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

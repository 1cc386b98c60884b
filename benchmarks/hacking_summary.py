"""Reward-hacking signs in an evaluation's per-structure table.

``python benchmarks/hacking_summary.py OUT_DIR [OUT_DIR ...]`` reads each
``OUT_DIR/results.csv`` (written by ``crystalrl.evaluate ... output_file=OUT_DIR/results.csv``)
and prints one JSON line per folder: MSUN, the MSUN hits CHGNet puts more than 0.2 eV/atom
below the hull (misjudged cells, not new stable phases), the hits that are single-element
cells, MSUN without both kinds, the E_hull distribution and how many distinct formulas and
single-element samples there are. A DNG policy that games its reward shows up here before it
shows up in the evaluator's averages.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from pymatgen.core import Composition

CREDIBLE_E_ABOVE_HULL = -0.2  # eV/atom: below this CHGNet is taken to misjudge the cell


def summary(results_csv: Path) -> dict:
    r = pd.read_csv(results_csv)
    n = len(r)
    elements = r["formula"].map(lambda f: len(Composition(f).elements) if isinstance(f, str) else 0)
    hit = r["MSUN"].astype(bool)
    below = hit & (r["e_above_hull"] < CREDIBLE_E_ABOVE_HULL)
    elemental = elements == 1
    e = r["e_above_hull"].dropna()
    return {
        "folder": str(results_csv.parent),
        "samples": n,
        "MSUN": round(hit.mean(), 4),
        "MSUN_e_above_hull_from_minus_0.2": round((hit & ~below).mean(), 4),
        "MSUN_not_elemental_from_minus_0.2": round((hit & ~below & ~elemental).mean(), 4),
        "hits_below_minus_0.2": int(below.sum()),
        "hits_single_element": int((hit & elemental).sum()),
        "single_element_samples": int(elemental.sum()),
        "median_e_above_hull": round(float(e.median()), 3),
        "e_above_hull_below_1": round(float((e <= 1).sum() / n), 4),
        "distinct_formulas": int(r["formula"].nunique()),
        "top_formulas": r["formula"].value_counts().head(5).to_dict(),
        "top_formulas_below_minus_0.2": r.loc[below, "formula"].value_counts().head(5).to_dict(),
    }


def main(folders: list[str]) -> None:
    if not folders:
        raise SystemExit(__doc__)
    for folder in folders:
        path = Path(folder) / "results.csv"
        if not path.is_file():
            raise SystemExit(f"{path}: no results.csv (run crystalrl.evaluate with output_file=)")
        print(json.dumps(summary(path)))


if __name__ == "__main__":
    main(sys.argv[1:])

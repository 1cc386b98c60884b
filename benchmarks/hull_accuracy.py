"""E_hull of left-out reference crystals, the project's against DFT's.

    python benchmarks/hull_accuracy.py [--reference mp-20+mp-bandgap] [--fraction 0.1]
        [--seed 0] [--candidates] [--potential chgnet|sevennet]

Leaves a random ``fraction`` of the labelled multi-element crystals of every dataset of the
reference out of the hull (of the band-gap set: only the compounds MP-20 lacks, since the
union keeps MP-20's copy of the rest), and scores them with the product's E_hull (the
potential's single point of the DFT-relaxed cell against a hull of the rest). The truth is
the DFT E_hull: the crystal's DFT formation energy against the hull of the rest's DFT
formation energies. Prints one JSON line: the default hull's ``n``, ``mae``,
``metastable_accuracy`` (E_hull ≤ 0.1 eV/atom agreement), ``false_below_0.2`` (fraction the
product puts below -0.2 eV/atom while DFT does not), the same by support bin (how many
reference compounds lie in a crystal's chemical system), and with ``--candidates`` every
candidate hull: the potential's self-consistent hull and the DFT-anchored one, each on
MP-20 alone and on the union, the hybrid (each reference compound at the lower of its DFT
and CHGNet formation energies) likewise.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from crystalrl.config_values import potential_file
from crystalrl.reference import Reference
from crystalrl.reference.datasets import DEFAULT_REFERENCE
from crystalrl.reference.hull import HULL_DEFAULTS, HULL_KINDS, ReferenceHull, build_hull

#: DFT labels outside this range (eV/atom) are data errors, not truths to score against.
PLAUSIBLE_FORMATION = (-5.0, 5.0)
SUPPORT_BINS = (0, 1, 3, 6, 12, 25, 50, 10**9)


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    ok = np.isfinite(pred) & np.isfinite(truth)
    p, t = pred[ok], truth[ok]
    return {
        "n": int(ok.sum()),
        "failed": int((~ok).sum()),
        "mae": round(float(np.mean(np.abs(p - t))), 4) if ok.any() else None,
        "metastable_accuracy": round(float(np.mean((p <= 0.1) == (t <= 0.1))), 4)
        if ok.any()
        else None,
        "false_below_0.2": round(float(np.mean((p < -0.2) & (t >= -0.2))), 4) if ok.any() else None,
        "below_-0.1": round(float(np.mean(p < -0.1)), 4) if ok.any() else None,
    }


def by_support(pred: np.ndarray, truth: np.ndarray, support: np.ndarray) -> dict:
    out = {}
    for lo, hi in zip(SUPPORT_BINS[:-1], SUPPORT_BINS[1:], strict=True):
        inside = (support >= lo) & (support < hi)
        if inside.any():
            label = f"{lo}+" if hi == SUPPORT_BINS[-1] else f"{lo}-{hi - 1}"
            out[label] = scores(pred[inside], truth[inside])
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", default=DEFAULT_REFERENCE)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", action="store_true", help="score every candidate hull")
    parser.add_argument(
        "--potential", default="chgnet", help="a file of configs/potential/ (chgnet, sevennet)"
    )
    parser.add_argument(
        "--kinds", nargs="+", default=list(HULL_KINDS), help="hull kinds of --candidates"
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    ref = Reference(
        args.reference, potential=potential_file(args.potential, "--potential"), progress=False
    )
    counts = ref.element_counts()
    energies = ref.energies
    labels = ref.dft_formation_energies
    datasets = ref.datasets
    multi = np.array([len(c) > 1 for c in counts])
    plausible = (labels > PLAUSIBLE_FORMATION[0]) & (labels < PLAUSIBLE_FORMATION[1])
    eligible = multi & np.isfinite(labels) & plausible & np.isfinite(energies)
    rng = np.random.default_rng(args.seed)
    out_mask = np.zeros(len(counts), dtype=bool)
    for name in np.unique(datasets):
        rows = np.flatnonzero(eligible & (datasets == name))
        out_mask[rng.choice(rows, int(round(args.fraction * len(rows))), replace=False)] = True
    rest = np.flatnonzero(~out_mask)
    left = np.flatnonzero(out_mask)
    comps = [counts[i] for i in left]

    def pick(rows: np.ndarray) -> list[dict]:
        return [counts[i] for i in rows]

    # the truth: DFT formation energies of the rest's labelled, plausible rows; elements at 0
    truth_rows = rest[np.isfinite(labels[rest]) & plausible[rest]]
    elements = sorted({el for c in counts for el in c})
    truth_hull = ReferenceHull.build(
        pick(truth_rows) + [{el: 1} for el in elements],
        np.concatenate([labels[truth_rows], np.zeros(len(elements))]),
    )
    truth = truth_hull.e_above_hull_many(comps, labels[left])

    default = HULL_DEFAULTS["kind"]
    candidates = [(default, "union")]
    if args.candidates:
        candidates += [
            (k, scope)
            for k in args.kinds
            for scope in ("mp_20", "union")
            if (k, scope) not in candidates
        ]
    results = {}
    for kind, scope in candidates:
        rows = rest if scope == "union" else rest[datasets[rest] == "mp_20"]
        start = time.perf_counter()
        hull = build_hull(
            kind,
            pick(rows),
            energies[rows],
            labels[rows],
            ref.energy_model,
            relax_steps=HULL_DEFAULTS["relax_steps"],
            fmax=HULL_DEFAULTS["fmax"],
        )
        pred = hull.e_above_hull_many(comps, energies[left])
        support = hull.support_many(comps)
        entry = scores(pred, truth)
        entry["build_seconds"] = round(time.perf_counter() - start, 1)
        entry["by_dataset"] = {
            name: scores(pred[datasets[left] == name], truth[datasets[left] == name])
            for name in np.unique(datasets[left])
        }
        entry["by_support"] = by_support(pred, truth, support)
        results[f"{kind}:{scope}"] = entry
    line = {
        "reference": args.reference,
        "potential": ref.energy_model.key,
        "hull": f"{default}:union",
        "fraction": args.fraction,
        "seed": args.seed,
        **{k: v for k, v in results[f"{default}:union"].items()},
    }
    if args.candidates:
        line["candidates"] = results
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()

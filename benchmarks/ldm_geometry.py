"""Has an LDM learned where atoms go? The table every stage-2 training decision is judged by.

``python benchmarks/ldm_geometry.py [LDM_CKPT] [--samples 300] [--structures 200] [--json]``
(default ``mp_20_ldm_base``; needs ``CRYSTALRL_DATA_DIR``)

Three probes of the product, each beside a baseline that knows no geometry:

* **samples**: DDIM-50 samples' median shortest interatomic distance, median contact ratio
  and fraction contact-physical, as ``crystalrl.evaluate`` reports them (metric
  ``physical``), beside MP-20 val and beside the samples' own cells and elements with the
  atoms placed at random (:func:`crystalrl.metrics.geometry.random_placement`).
* **moved atom** and **ε-gap**: :func:`crystalrl.ldm.probes.moved_atom_distances` and
  :func:`crystalrl.ldm.probes.eps_gap` on MP-20 val crystals.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from crystalrl.checkpoint_registry import resolve
from crystalrl.data.datamodule import CrystalDataModule, collate
from crystalrl.data.parse import default_data_dir
from crystalrl.ldm.module import LDMModule, load_ldm
from crystalrl.ldm.probes import DISPLACEMENT, eps_gap, moved_atom_distances
from crystalrl.metrics.geometry import random_placement
from crystalrl.metrics.metrics import Metrics

#: The geometry row: evaluate's summary keys of the ``physical`` metric.
GEOMETRY_KEYS = ("median_shortest_distance", "median_contact_ratio", "avg_physical")


def geometry_row(structures: list) -> dict[str, float]:
    results = Metrics(["physical"], reference=None).compute(structures)
    return {k: float(results[k]) for k in GEOMETRY_KEYS}


@torch.no_grad()
def sample_rows(ldm: LDMModule, n: int, val: list, seed: int = 0) -> dict[str, dict]:
    g = torch.Generator().manual_seed(seed)
    batch, _ = ldm.generate(ldm.sample_num_atoms(n, g), ldm.make_sampler("ddim", 50, 1.0), g)
    samples = batch.to_structures()
    return {
        "mp20_val": geometry_row(val[:n]),
        "samples": geometry_row(samples),
        "random_placement": geometry_row(random_placement(samples, np.random.default_rng(seed))),
    }


def print_table(result: dict) -> None:
    print(result["ldm"])
    print(f"{'':18s} {'shortest (Å)':>13s} {'contact ratio':>14s} {'physical':>9s}")
    for name, row in result["samples"].items():
        print(
            f"{name:18s} {row['median_shortest_distance']:13.2f} "
            f"{row['median_contact_ratio']:14.2f} {100 * row['avg_physical']:8.1f}%"
        )
    print(f"moved atom ({DISPLACEMENT} Å): distance from its site after x0-prediction")
    for t, row in result["moved_atom"].items():
        print(f"  {t:6s} denoised {row['denoised']:.2f} Å   undenoised {row['noisy']:.2f} Å")
    gaps = "  ".join(f"{t} {v:+.3f}" for t, v in result["eps_gap"].items())
    print(f"eps-gap (random - real positions): {gaps}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ldm", nargs="?", default="mp_20_ldm_base")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--structures", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the JSON line only")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    ldm = load_ldm(resolve(args.ldm))
    dm = CrystalDataModule(f"{default_data_dir()}/mp_20", limit_eval=max(args.samples, 200))
    ds = dm.dataset("val")
    val = collate([ds[i] for i in range(len(ds))]).to_structures()
    probe = val[: args.structures]
    result = {
        "ldm": args.ldm,
        "samples": sample_rows(ldm, args.samples, val, args.seed),
        "moved_atom": {
            f"t={t}": row for t, row in moved_atom_distances(ldm, probe, seed=args.seed).items()
        },
        "eps_gap": {f"t={t}": v for t, v in eps_gap(ldm, probe, seed=args.seed).items()},
    }
    if not args.json:
        print_table(result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

"""Time the DNG reward on a batch of generated-like crystals and print where the time goes.

``python benchmarks/dng_reward.py [NUM_STRUCTURES] [DISPLACEMENT_A] [--samples PATH]
[OVERRIDE ...]`` (defaults 320, 0.1; overrides of the train_rl config, e.g.
``'rl_module.reward_fn.components.energy.relax={max_steps: 20, fmax: 0.1}'``)

The batch stands in for one RL step of the paper's config (5 prompts × 64 samples): MP-20
val structures with every atom displaced by a random vector of the given length. They
have real energies above the hull and every one of them has reference structures of its
formula to be matched against, so matching costs the most it can (a worst case: of a
model's samples most formulas are new to MP-20). ``--samples`` scores a model's own
samples instead (what ``crystalrl.sample`` wrote; at least (1 + repeats) × NUM_STRUCTURES
of them): the first NUM for the one-off costs, the next ones timed.

The reward is the shipped ``rl_module.reward_fn`` (creativity, energy, structure and
composition diversity). The first call pays one-off costs (reference data, CHGNet, worker
pools) and is timed apart; then the reward and the energy model alone (CHGNet
single-points of the same structures) are timed in turn, on a fresh batch each of
``--repeats`` times, and the medians are reported with the reward's split.
``of_energy_model_throughput`` is their ratio: 1 would mean matching, the hull, AMD and
features cost nothing. Needs ``CRYSTALRL_DATA_DIR``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from crystalrl.config import CONFIG_DIR
from crystalrl.data.parse import default_data_dir, find_split_file, read_split
from crystalrl.metrics.structures_io import read_structure_input
from crystalrl.vae.module import load_vae

# Which timings belong to which part of the work (metric and component names).
PARTS = {
    "hull": ("e_above_hull",),
    "energies": ("energy",),
    "matching": ("unique", "novel"),
    "amd": ("creativity",),  # AMD distances for the partly new (unique xor novel)
    "features": ("diversity", "features"),
}


def displaced(structures: list, distance: float, seed: int) -> list:
    """Copies with every site moved exactly ``distance`` Å in a random direction."""
    return [
        s.copy().perturb(distance, min_distance=None, seed=seed + i)
        for i, s in enumerate(structures)
    ]


def part_of(key: str) -> str:
    name = key.split("/", 1)[-1].lower()
    for part, needles in PARTS.items():
        if any(n in name for n in needles):
            return part
    return "other"


def batches(num: int, distance: float, samples: str | None, count: int) -> list[list]:
    """``count`` batches of ``num`` different structures each: one to warm up, one per timing
    (a fresh batch each time, so memoised work counts as in training)."""
    if samples:
        structures = read_structure_input(samples, key="--samples").structures
        if len(structures) < count * num:
            raise SystemExit(
                f"--samples {samples}: {len(structures)} structures, need {count * num}"
            )
    else:
        split = read_split(find_split_file(f"{default_data_dir()}/mp_20", "val"))
        rng = np.random.default_rng(0)
        picks = rng.choice(len(split), size=count * num, replace=False).tolist()
        structures = displaced(split.to_structures(picks), distance, seed=1)
    return [structures[i * num : (i + 1) * num] for i in range(count)]


def time_reward(
    num: int = 320,
    distance: float = 0.1,
    overrides: tuple[str, ...] = (),
    samples: str | None = None,
    repeats: int = 3,
) -> dict:
    """The first call's seconds, then medians of the reward's and the energy model's."""
    torch.set_num_threads(2)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train_rl", overrides=["experiment=mp_20/rl_dng", *overrides])
    warm_up, *timed = batches(num, distance, samples, 1 + repeats)
    reward = instantiate(cfg.rl_module.reward_fn)
    start = time.perf_counter()
    reward.setup(vae=load_vae(cfg.rl_module.vae_ckpt_path), device="cpu")
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    reward(warm_up)
    first_s = time.perf_counter() - start
    # the reward and its bound (the energy model alone on the same structures, batched as
    # the reward does) in turn, medians: CHGNet's own time varies by a quarter between calls
    totals, bounds, splits = [], [], []
    for batch in timed:
        start = time.perf_counter()
        out = reward(batch)
        totals.append(time.perf_counter() - start)
        splits.append(out.timings)
        start = time.perf_counter()
        reward.metrics.reference.energy_model.energies(batch)
        bounds.append(time.perf_counter() - start)
    total_s, energy_model_s = float(np.median(totals)), float(np.median(bounds))
    timings = {k: float(np.median([t[k] for t in splits])) for k in splits[0]}
    split_s: dict[str, float] = {}
    for key, seconds in timings.items():
        part = part_of(key)
        split_s[part] = split_s.get(part, 0.0) + seconds
    report = {
        "structures": num,
        "batch": samples or f"MP-20 val displaced {distance} Å",
        "setup_seconds": round(setup_s, 1),
        "first_call_seconds": round(first_s, 2),
        "total_seconds": round(total_s, 2),
        "energy_model_seconds": round(energy_model_s, 2),
        # the reward's throughput as a fraction of the energy model's own
        "of_energy_model_throughput": round(energy_model_s / total_s, 3),
        **{f"{k}_seconds": round(v, 2) for k, v in sorted(split_s.items())},
        "repeats": repeats,
        "detail": {k: round(v, 2) for k, v in timings.items()},
        "raw_means": {k: round(float(v.mean()), 4) for k, v in out.components.items()},
    }
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("num", nargs="?", type=int, default=320)
    parser.add_argument("distance", nargs="?", type=float, default=0.1)
    parser.add_argument("--samples", help="a model's samples instead of displaced MP-20")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (medians)")
    args, overrides = parser.parse_known_args(argv)
    report = time_reward(args.num, args.distance, tuple(overrides), args.samples, args.repeats)
    for k, v in report.items():
        print(f"{k:>22}: {v}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()

"""Time the DNG reward on a batch of generated-like crystals and print where the time goes.

``python benchmarks/dng_reward.py [NUM_STRUCTURES] [DISPLACEMENT_A] [OVERRIDE ...]``
(defaults 320, 0.1; overrides of the train_rl config, e.g.
``'rl_module.reward_fn.components.energy.relax={max_steps: 20, fmax: 0.1}'``)

The batch stands in for one RL step of the paper's config (5 prompts × 64 samples): MP-20
val structures with every atom displaced by a random vector of the given length, so they
are mostly novel, have real energies above the hull and exercise every metric. The
reward is the shipped ``rl_module.reward_fn`` (creativity, energy, structure and
composition diversity). The first call pays one-off costs (reference data, CHGNet, worker
pools) and is timed apart; the split is that of the second call on a fresh batch, and
``of_energy_model_throughput`` compares it with the energy model alone (CHGNet
single-points of the same structures): 1 would mean matching, AMD and features cost nothing.
Needs ``CRYSTALRL_DATA_DIR``.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from crystalrl.config import CONFIG_DIR
from crystalrl.data.parse import default_data_dir, find_split_file, read_split
from crystalrl.vae.module import load_vae

# Which timings belong to which part of the work (metric and component names).
PARTS = {
    "energies": ("energy", "e_above_hull"),
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


def main(num: int = 320, distance: float = 0.1, overrides: tuple[str, ...] = ()) -> dict:
    torch.set_num_threads(2)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train_rl", overrides=["experiment=mp_20/rl_dng", *overrides])
    split = read_split(find_split_file(f"{default_data_dir()}/mp_20", "val"))
    rng = np.random.default_rng(0)
    picks = rng.choice(len(split), size=2 * num, replace=False).tolist()
    structures = split.to_structures(picks)
    reward = instantiate(cfg.rl_module.reward_fn)
    start = time.perf_counter()
    reward.setup(vae=load_vae(cfg.rl_module.vae_ckpt_path), device="cpu")
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    reward(displaced(structures[:num], distance, seed=1))
    first_s = time.perf_counter() - start
    batch = displaced(structures[num:], distance, seed=2)
    start = time.perf_counter()
    out = reward(batch)
    total_s = time.perf_counter() - start
    # the bound: the energy model alone on the same structures, batched as the reward does
    start = time.perf_counter()
    reward.metrics.reference.energy_model.energies(batch)
    energy_model_s = time.perf_counter() - start
    split_s: dict[str, float] = {}
    for key, seconds in out.timings.items():
        part = part_of(key)
        split_s[part] = split_s.get(part, 0.0) + seconds
    report = {
        "structures": num,
        "displacement_angstrom": distance,
        "setup_seconds": round(setup_s, 1),
        "first_call_seconds": round(first_s, 2),
        "total_seconds": round(total_s, 2),
        "energy_model_seconds": round(energy_model_s, 2),
        # the reward's throughput as a fraction of the energy model's own
        "of_energy_model_throughput": round(energy_model_s / total_s, 3),
        **{f"{k}_seconds": round(v, 2) for k, v in sorted(split_s.items())},
        "detail": {k: round(v, 2) for k, v in out.timings.items()},
        "raw_means": {k: round(float(v.mean()), 4) for k, v in out.components.items()},
    }
    for k, v in report.items():
        print(f"{k:>22}: {v}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]) if args else 320, float(args[1]) if len(args) > 1 else 0.1, tuple(args[2:]))

"""Time GRPO training steps at a given config, and the network work they cannot avoid.

``python benchmarks/rl_step.py experiment=mp_20/rl_dng_cpu [overrides ...]``

For each step: seconds in rollout (sampling with trajectory), decoding to structures,
rewards and the policy update, and the process's peak resident memory. Beside them the
*network floor*: the same denoiser calls the step made — the rollout's forwards on the
recorded latents, the update's forwards and backwards on the same stacked
(trajectory, step) batches, at the policy's precision — timed alone, with nothing else
around them. ``step_s`` is
rollout + decode + update (the step without its rewards); ``step_floor_s`` is the rollout
floor plus the update floor; their ratios say how much of a step is overhead rather than
network.

The first step also pays one-off costs (reference data, model loading), so it is run
apart; the figures are medians over the next ``BENCH_STEPS`` (default 3) steps, each on
its own batch of prompts (a step's cost grows with the atom counts it draws). The last
line is one JSON object.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from crystalrl.config import CONFIG_DIR
from crystalrl.rl.module import RLModule


def rollout_floor(module: RLModule, traj: dict[str, torch.Tensor]) -> float:
    """Seconds of the rollout's denoiser forwards alone, on the latents it visited."""
    net, mask = module.policy_fn(), traj["mask"]
    timesteps = module.sampler.schedule.timesteps[traj["chain_index"]]
    start = time.perf_counter()
    with torch.no_grad():
        for k, t in enumerate(timesteps):
            net(traj["latents"][:, k], t.expand(len(mask)), mask)
    return time.perf_counter() - start


def update_floor(module: RLModule, traj: dict[str, torch.Tensor]) -> float:
    """Seconds of the update's denoiser forwards and backwards alone: the same chunks and
    the same blocks of stacked denoising steps as :meth:`RLModule.policy_update`, with a
    fixed linear function of the output standing in for the loss."""
    net = module.policy_fn()
    frozen = module.reference_denoiser
    reference = None if frozen is None else module.policy_fn(frozen)
    blocks = module.update_blocks(traj["stds"])
    chunks = np.array_split(np.arange(len(traj["mask"])), int(module.rl["num_inner_batch"]))
    timesteps = module.sampler.schedule.timesteps
    start = time.perf_counter()
    for idx in chunks:
        for ks in blocks:
            x, _, m, chain = module.stacked_pairs(traj, torch.as_tensor(idx), ks)
            t = timesteps[chain]
            net(x, t, m).sum().backward()
            if reference is not None:  # kl_reference=initial: the frozen copy's forward
                with torch.no_grad():
                    reference(x, t, m)
    elapsed = time.perf_counter() - start
    module.ldm.denoiser.zero_grad(set_to_none=True)
    return elapsed


def build(overrides: list[str]) -> tuple[RLModule, object, object]:
    """The RL module outside a Trainer: optimiser, backward and logging stubbed to what
    Lightning's manual optimisation would do, so the step's own work is what is timed."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train_rl", overrides=overrides)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.rl_module, _convert_="all")
    module.setup("fit")
    opt = module.configure_optimizers()["optimizer"]
    module.optimizers = lambda: SimpleNamespace(
        zero_grad=opt.zero_grad, step=opt.step, optimizer=opt
    )
    module.manual_backward = lambda loss: loss.backward()
    module.lr_schedulers = lambda: None
    module.log_dict = module.log = lambda *a, **k: None
    return module, datamodule, cfg


def main(overrides: list[str]) -> dict:
    t0 = time.perf_counter()
    module, datamodule, _ = build(overrides)
    setup_s = time.perf_counter() - t0
    recorded: dict = {}
    rollout = module.rollout

    def recording_rollout(*args, **kwargs):
        recorded.update(rollout(*args, **kwargs))
        return recorded

    module.rollout = recording_rollout
    batches = iter(datamodule.train_dataloader())
    steps = 1 + int(os.environ.get("BENCH_STEPS", "3"))
    results = []
    for _ in range(steps):
        batch = next(batches)
        start = time.perf_counter()
        module.training_step(batch, 0)
        total = time.perf_counter() - start
        t = module.timings
        row = {
            "rollout_s": t["rollout"],
            "decode_s": t["decode"],
            "rewards_s": t["rewards"],
            "update_s": t["update"],
            "step_s": t["rollout"] + t["decode"] + t["update"],
            "total_s": total,
            "rollout_floor_s": rollout_floor(module, recorded["traj"]),
            "update_floor_s": update_floor(module, recorded["traj"]),
        }
        row["step_floor_s"] = row["rollout_floor_s"] + row["update_floor_s"]
        results.append(row)
    measured = results[1:]
    med = {k: statistics.median(r[k] for r in measured) for k in measured[0]}
    g = module.rl["num_group_samples"]
    report = {
        "config": overrides,
        "structures_per_step": len(batch) * g,
        "sampling_steps": module.sampler.num_steps,
        "update_step_batch": module.rl["update_step_batch"],
        "setup_s": round(setup_s, 2),
        "first_step_s": round(results[0]["total_s"], 2),
        "measured_steps": len(measured),
        **{k: round(v, 3) for k, v in med.items()},
        "rollout_over_floor": round(med["rollout_s"] / med["rollout_floor_s"], 3),
        "update_over_floor": round(med["update_s"] / med["update_floor_s"], 3),
        "step_over_floor": round(med["step_s"] / med["step_floor_s"], 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    }
    for k, v in report.items():
        print(f"{k:>22}: {v}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])

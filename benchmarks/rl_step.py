"""Time one GRPO training step at a given config and print where the time goes.

``python benchmarks/rl_step.py experiment=mp_20/rl_dng_cpu [overrides ...]``

Prints seconds in rollout (sampling with trajectory), decoding to structures, rewards and
the policy update, the structures per step, and the process's peak resident memory.
The first step also pays one-off costs (reference data, model loading), so it is run
apart and the figures are the mean of the next ``BENCH_STEPS`` (default 3) steps, each on
its own batch of prompts: a step's cost grows with the atom counts it draws.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from types import SimpleNamespace

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from crystalrl.config import CONFIG_DIR


def main(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train_rl", overrides=overrides)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
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
    setup_s = time.perf_counter() - t0
    batches = iter(datamodule.train_dataloader())
    steps = 1 + int(os.environ.get("BENCH_STEPS", "3"))
    results = []
    for _ in range(steps):
        batch = next(batches)
        start = time.perf_counter()
        module.training_step(batch, 0)
        results.append({**module.timings, "total": time.perf_counter() - start})
    measured = results[1:]
    mean = {k: sum(r[k] for r in measured) / len(measured) for k in measured[0]}
    g = module.rl["num_group_samples"]
    report = {
        "config": overrides,
        "structures_per_step": len(batch) * g,
        "sampling_steps": module.sampler.num_steps,
        "setup_seconds": round(setup_s, 2),
        "first_step_seconds": round(results[0]["total"], 2),
        "measured_steps": len(measured),
        **{f"{k}_seconds": round(v, 2) for k, v in mean.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    }
    for k, v in report.items():
        print(f"{k:>22}: {v}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])

"""Stage-2 training speed on this machine: seconds per optimizer step of a train_ldm config.

``python benchmarks/ldm_train_speed.py [--steps 300] [--skip 50] [OVERRIDES ...]``
(the overrides of ``python -m crystalrl.train_ldm``, e.g. ``experiment=mp_20/ldm_null``)

The cosine schedule anneals over ``trainer.max_steps``, so a run that must end in a given
wall time (a lent GPU, a night) needs its step count before it starts: measure it here
with the run's own config, then pass ``trainer.max_steps=`` ≈ budget / ``seconds_per_step``.
It runs the real Trainer loop (data loading, autocast, clipping, EMA) without validation,
checkpoints or loggers, and times the steps after the first ``--skip`` (start-up, warm-up).
Ends with one JSON line: ``seconds_per_step``, ``steps_per_s``, ``setup_s``, ``device``.
"""

from __future__ import annotations

import argparse
import json
import time

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from crystalrl.config import CONFIG_DIR
from crystalrl.training import instantiate_stage, setup_run


class StepClock(L.Callback):
    """Wall time at the start of every optimizer step after ``skip``."""

    def __init__(self, skip: int):
        self.skip, self.times = skip, []

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step >= self.skip:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps to run")
    parser.add_argument("--skip", type=int, default=50, help="first steps left untimed")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.steps <= args.skip + 1:
        parser.error("--steps must exceed --skip + 1")
    t0 = time.perf_counter()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train_ldm", overrides=args.overrides)
    setup_run(cfg)
    datamodule = instantiate(cfg.data)
    module = instantiate_stage(cfg.ldm_module, datamodule)
    clock = StepClock(args.skip)
    trainer_cfg = {**cfg.trainer, "max_steps": args.steps, "max_time": None}
    trainer_cfg.update(limit_val_batches=0, enable_checkpointing=False, enable_progress_bar=False)
    trainer = instantiate(trainer_cfg, callbacks=[clock], logger=False)
    trainer.fit(module, datamodule=datamodule)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    end = time.perf_counter()
    steps = len(clock.times)
    per_step = (end - clock.times[0]) / steps
    result = {
        "seconds_per_step": per_step,
        "steps_per_s": 1.0 / per_step,
        "timed_steps": steps,
        "setup_s": clock.times[0] - t0,
        "batch_size": int(cfg.data.batch_size),
        "device": str(trainer.strategy.root_device),
        "overrides": args.overrides,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

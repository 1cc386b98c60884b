"""What every training command shares: the Hydra-driven Lightning run, resuming, export.

Each ``train_*`` entry point builds its LightningModule and calls :func:`fit`. A run's
folder is fixed by its ``task_name`` and ``run_name``, so rerunning the same command finds
``checkpoints/last.ckpt`` there and resumes instead of starting over.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("crystalrl")


# ---------------------------------------------------------------------- optimisation
def build_optimizer(module: L.LightningModule, hparams: Any):
    """AdamW with linear warm-up, then constant or cosine decay (``scheduler.name``)."""
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hparams.lr, weight_decay=hparams.weight_decay)
    sched_cfg = dict(hparams.get("scheduler") or {}) if hasattr(hparams, "get") else {}
    name = sched_cfg.get("name", "constant")
    warmup = int(hparams.get("warmup_steps", 0) or 0)
    total = int(sched_cfg.get("total_steps", 0) or 0)
    min_ratio = float(sched_cfg.get("min_lr_ratio", 0.05))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if name == "cosine" and total > warmup:
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


# ---------------------------------------------------------------------- checkpoints
def load_module(cls: type[L.LightningModule], path: str, map_location: str = "cpu"):
    """Load a Lightning checkpoint or an exported one; weights come back in float32."""
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    hparams = ckpt.get("hyper_parameters", {})
    module = cls(**hparams)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    module.load_state_dict(state)
    module.eval()
    return module


def export_checkpoint(src: str, dst: str, half: bool = True, extra: dict | None = None) -> str:
    """Keep only weights and hyper-parameters (optionally fp16): a few MB to commit."""
    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    state = {
        k: (v.half() if half and v.is_floating_point() else v)
        for k, v in ckpt["state_dict"].items()
    }
    out = {"state_dict": state, "hyper_parameters": dict(ckpt.get("hyper_parameters", {}))}
    out.update(extra or {})
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, dst)
    return dst


# ---------------------------------------------------------------------- the run
def _instantiate_list(cfg: DictConfig | None) -> list:
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c and "_target_" in c]


def setup_run(cfg: DictConfig) -> None:
    """Seed, threads and float precision for a reproducible CPU run."""
    L.seed_everything(cfg.get("seed", 0), workers=True)
    threads = cfg.get("num_threads")
    if threads:
        torch.set_num_threads(int(threads))
    torch.set_float32_matmul_precision("medium")


def fit(cfg: DictConfig, module: L.LightningModule, datamodule: L.LightningDataModule) -> dict:
    """Train with the configured trainer, callbacks and loggers; resume from ``last.ckpt``."""
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=False)
    callbacks = _instantiate_list(cfg.get("callbacks"))
    loggers = _instantiate_list(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)

    ckpt_path = cfg.get("ckpt_path")
    last = out_dir / "checkpoints" / "last.ckpt"
    if ckpt_path is None and cfg.get("resume", True) and last.is_file():
        ckpt_path = str(last)
        log.info("resuming from %s", last)
        print(f"Resuming from {last}")
    start = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    elapsed = time.time() - start
    best = next((c.best_model_path for c in callbacks if hasattr(c, "best_model_path")), "")
    result = {
        "best_ckpt": best,
        "last_ckpt": str(last),
        "fit_seconds": elapsed,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    print(f"Best checkpoint: {best or last}")
    return result

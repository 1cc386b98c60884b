"""The optimizer and learning-rate schedule every stage trains with.

One schedule for all stages (warm-up, then constant or a cosine down to a floor), so a
config's ``scheduler`` means the same in each of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    scheduler: Mapping[str, Any] | None = None,
    warmup_steps: int = 0,
) -> torch.optim.lr_scheduler.SequentialLR:
    """The learning-rate schedule of every stage, stepped once per optimizer step.

    Linear warm-up over ``warmup_steps`` (the factor is (step + 1) / warmup_steps), then
    constant (``scheduler.name: constant``) or a cosine from the full rate down to
    ``min_lr_ratio`` of it at ``total_steps``, held there afterwards (``cosine``).
    """
    cfg = dict(scheduler or {})
    name = cfg.get("name", "constant")
    total = int(cfg.get("total_steps", 0) or 0)
    min_ratio = float(cfg.get("min_lr_ratio", 0.05))
    warmup = int(warmup_steps or 0)
    lr_sched = torch.optim.lr_scheduler
    phases: list[torch.optim.lr_scheduler.LRScheduler] = []
    milestones: list[int] = []
    if warmup > 1:
        phases.append(lr_sched.LinearLR(optimizer, 1.0 / warmup, 1.0, total_iters=warmup - 1))
    elif warmup == 1 or name != "cosine" or total <= warmup:
        phases.append(lr_sched.ConstantLR(optimizer, factor=1.0, total_iters=0))
    if name == "cosine" and total > warmup:
        base = {group.get("initial_lr", group["lr"]) for group in optimizer.param_groups}
        if len(base) != 1:
            raise ValueError("the cosine schedule needs one learning rate for all parameters")
        if phases:
            milestones.append(warmup)
        phases.append(
            lr_sched.CosineAnnealingLR(optimizer, total - warmup, eta_min=base.pop() * min_ratio)
        )
        # past total_steps the rate stays at the floor (a cosine alone would rise again)
        milestones.append(total)
        phases.append(lr_sched.ConstantLR(optimizer, factor=min_ratio, total_iters=2**62))
    return lr_sched.SequentialLR(optimizer, phases, milestones)


def build_optimizer(module: L.LightningModule, hparams: Any):
    """AdamW with the schedule of :func:`build_scheduler` (``hparams.scheduler``)."""
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hparams.lr, weight_decay=hparams.weight_decay)
    sched_cfg = hparams.get("scheduler") if hasattr(hparams, "get") else None
    sched = build_scheduler(opt, sched_cfg, hparams.get("warmup_steps", 0))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

"""The optimizer and learning-rate schedule every stage trains with.

One schedule for all stages (warm-up, then constant or a cosine down to a floor), so a
config's ``scheduler`` means the same in each of them.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch


class LRSchedule(torch.optim.lr_scheduler.SequentialLR):
    """The phases of :func:`build_scheduler`, able to resume a run saved before them.

    Checkpoints written before the schedule was assembled from torch's schedulers hold the
    state of a single ``LambdaLR`` (or, from RL runs, ``CosineAnnealingLR``); only their
    step count matters, so loading one puts the schedule at that step instead of failing
    on the missing per-phase states.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "_schedulers" in state_dict:
            super().load_state_dict(state_dict)
            return
        step = int(state_dict.get("last_epoch", 0))
        phase = bisect.bisect_right(self._milestones, step)
        start = self._milestones[phase - 1] if phase else 0
        self.last_epoch = step
        # the explicit-step form evaluates the phase in closed form, so the rate does not
        # depend on the optimizer's restored rate; torch deprecates it only for routine use
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._schedulers[phase].step(step - start)
        self._last_lr = self._schedulers[phase].get_last_lr()


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    scheduler: Mapping[str, Any] | None = None,
    warmup_steps: int = 0,
) -> LRSchedule:
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
    return LRSchedule(optimizer, phases, milestones)


def build_optimizer(module: L.LightningModule, hparams: Any):
    """AdamW with the schedule of :func:`build_scheduler` (``hparams.scheduler``)."""
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hparams.lr, weight_decay=hparams.weight_decay)
    sched_cfg = hparams.get("scheduler") if hasattr(hparams, "get") else None
    sched = build_scheduler(opt, sched_cfg, hparams.get("warmup_steps", 0))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

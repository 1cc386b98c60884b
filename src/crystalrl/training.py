"""What every training command shares: the Hydra-driven Lightning run, resuming, export.

Each ``train_*`` entry point builds its LightningModule and calls :func:`fit`. A run's
folder is fixed by its ``task_name`` and ``run_name``, so rerunning the same command finds
``checkpoints/last.ckpt`` there and resumes instead of starting over.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("crystalrl")


# ---------------------------------------------------------------------- optimisation
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


class SharedStepHooks:
    """Lightning hooks of a module whose one ``_step(batch, stage)`` serves training,
    validation and test, optimised by :func:`build_optimizer` (the VAE, the predictor)."""

    def log_stage(
        self, values: dict[str, Any], stage: str, batch_size: int, prog_bar: bool = False
    ) -> None:
        """Log one stage's values: per step while training, per epoch always; validation and
        test values are averaged over all DDP processes' batches (training's need not be)."""
        self.log_dict(
            values,
            prog_bar=prog_bar,
            batch_size=batch_size,
            on_epoch=True,
            on_step=stage == "train",
            sync_dist=stage != "train",
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> dict:
        return build_optimizer(self, self.hparams)


class RankAgreement(L.Callback):
    """Under DDP, check at the end of training that every process holds the same weights.

    Gradients are all-reduced, so the ranks' weights can only drift apart through a bug
    (a parameter outside the reduced set, a rank-dependent update); one all-gather of a
    checksum per tensor turns that silent divergence into an error naming the tensor.
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size < 2 or not torch.distributed.is_initialized():
            return
        names, sums = [], []
        for name, p in pl_module.named_parameters():
            names.append(name)
            sums.append(p.detach().double().sum() + p.detach().double().abs().sum())
        device = pl_module.device  # NCCL gathers device tensors only
        local = torch.stack(sums) if sums else torch.zeros(0, dtype=torch.float64, device=device)
        gathered = [torch.empty_like(local) for _ in range(trainer.world_size)]
        torch.distributed.all_gather(gathered, local)
        for rank, other in enumerate(gathered):
            differs = (other - gathered[0]).abs() > 1e-9 * (1 + gathered[0].abs())
            if bool(differs.any()):
                first = names[int(differs.nonzero()[0])]
                raise RuntimeError(f"rank {rank} ends with other weights than rank 0 ({first})")
        if trainer.is_global_zero:
            print(f"Weights agree across {trainer.world_size} processes")


# ---------------------------------------------------------------------- checkpoints
#: Stands for "any value" in a table of retired options.
ANY_VALUE = object()


def drop_retired(
    hparams: Mapping[str, Any], retired: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """``hparams`` without options that no longer exist, so older checkpoints still load.

    ``retired`` maps each removed option to the value that meant "off" (or
    :data:`ANY_VALUE`); a checkpoint that had one switched on was trained by code that is
    gone, and loading it as if it had not would silently change what it does.
    """
    out = dict(hparams)
    for name, off in retired.items():
        if name in out:
            value = out.pop(name)
            if off is not ANY_VALUE and value != off:
                raise ValueError(
                    f"this checkpoint was trained with {owner}.{name}={value!r}, an option "
                    "crystalrl no longer has; retrain it, or load it with an older version"
                )
    return out


def load_module(
    cls: type[L.LightningModule], path: str, map_location: str = "cpu", key: str | None = None
):
    """Load a Lightning checkpoint or an exported one; weights come back in float32.

    ``path`` may be a registry name; ``key`` is the config key it came from, which errors
    name (see :func:`crystalrl.hub.resolve_checkpoint`)."""
    from crystalrl.checkpoint_kind import KIND_OF_CLASS, check_kind
    from crystalrl.hub import load_checkpoint

    ckpt = load_checkpoint(path, key, map_location)
    if cls.__name__ in KIND_OF_CLASS:  # another stage's file fails here, not in cls(**hparams)
        check_kind(ckpt, (KIND_OF_CLASS[cls.__name__],), path, key)
    hparams = drop_retired(
        ckpt.get("hyper_parameters", {}), getattr(cls, "RETIRED_HPARAMS", {}), cls.__name__
    )
    module = cls(**hparams)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    module.load_state_dict(state)
    module.eval()
    return module


def export_checkpoint(src: str, dst: str, half: bool = True, extra: dict | None = None) -> str:
    """Keep only weights and hyper-parameters (optionally fp16): a few MB to commit."""
    from crystalrl.hub import load_checkpoint

    ckpt = load_checkpoint(src)
    state = {
        k: (v.half() if half and v.is_floating_point() else v)
        for k, v in ckpt["state_dict"].items()
    }
    out = {"state_dict": state, "hyper_parameters": dict(ckpt.get("hyper_parameters", {}))}
    if "global_step" in ckpt:  # which step of a run this is, to tell a stale export
        out["global_step"] = int(ckpt["global_step"])
    out.update(extra or {})
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, dst)
    return dst


# ---------------------------------------------------------------------- the run
#: ``ckpt_path`` values Lightning itself understands (not files).
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")


def _instantiate_list(cfg: DictConfig | None) -> list:
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c and "_target_" in c]


def setup_run(cfg: DictConfig) -> None:
    """Seed, threads and float precision for a reproducible CPU run; the training set is
    looked for first, so a missing one stops the command before any model is loaded."""
    from crystalrl.data.parse import find_split_file

    data_dir = OmegaConf.select(cfg, "data.data_dir")
    if data_dir is not None:
        find_split_file(data_dir, "train", key="data.data_dir")
    log_once()
    L.seed_everything(cfg.get("seed", 0), workers=True)
    threads = cfg.get("num_threads")
    if threads:
        torch.set_num_threads(int(threads))
    torch.set_float32_matmul_precision("medium")


def log_once() -> None:
    """Print Lightning's messages once. ``import lightning`` gives its package logger a
    console handler of its own and lets it propagate too, so under Hydra (whose root
    handler prints and writes the run's log file) every line appeared twice."""
    root = logging.getLogger()
    if not root.handlers:
        return
    package = logging.getLogger("lightning")
    for handler in list(package.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            package.removeHandler(handler)


def reward_trend(metrics_csv: Path, key: str = "train/reward") -> str:
    """``"0.0412 -> 0.0530 (steps 0-12)"`` from a run's CSV metrics; empty without them."""
    import pandas as pd

    try:
        frame = pd.read_csv(metrics_csv)
    except (OSError, ValueError):
        return ""
    if key not in frame or "step" not in frame:
        return ""
    rows = frame[["step", key]].dropna()
    if rows.empty:
        return ""
    first, last = rows.iloc[0], rows.iloc[-1]
    return f"{first[key]:.4g} -> {last[key]:.4g} (steps {int(first['step'])}-{int(last['step'])})"


def creatable_parent(path: str | Path, key: str) -> Path:
    """Create the folder ``path`` will be written to, or fail naming ``key``.

    Called before training, so that an export path that cannot be written stops the run at
    its start rather than after hours of training.
    """
    parent = Path(path).expanduser().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"{key}={str(path)!r}: its folder {parent} cannot be created "
            f"({exc.strerror or exc}); give a path whose folder exists or can be created"
        ) from exc
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"{key}={str(path)!r}: its folder {parent} is not writable")
    return parent


def instantiate_stage(module_cfg: DictConfig, datamodule: Any) -> L.LightningModule:
    """A VAE or LDM module from its config, given the training set's atom-count histogram
    (what generation draws the number of atoms from)."""
    return hydra.utils.instantiate(
        module_cfg, num_atoms_distribution=datamodule.num_atoms_distribution(), _convert_="all"
    )


def fit(
    cfg: DictConfig,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    export: Callable[[str, str], object] | None = None,
) -> dict:
    """Train with the configured trainer, callbacks and loggers; resume from ``last.ckpt``.

    The final step is always saved to ``last.ckpt``, whatever the checkpoint interval: a
    run of 13 steps checkpointed every 10 keeps steps 11-13. A first Ctrl-C (or SIGTERM)
    stops after the current step and saves it too (:mod:`crystalrl.interrupt`); the
    command then exits with 130 (143) and does not export.

    With ``export``, the best checkpoint (else the last) is then written to
    ``cfg.export_path`` by ``export(src, dst)``, when that key is set."""
    from crystalrl.interrupt import EXIT_STATUS, StopOnSignal

    if export is not None and cfg.get("export_path"):
        creatable_parent(cfg.export_path, "export_path")
    out_dir = Path(cfg.paths.output_dir)
    last = out_dir / "checkpoints" / "last.ckpt"
    ckpt_path = resume_path(cfg, last)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / "config.yaml", resolve=False)
    stopper = StopOnSignal(last)
    callbacks = _instantiate_list(cfg.get("callbacks"))
    loggers = _instantiate_list(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=[*callbacks, stopper], logger=loggers
    )
    start = time.time()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:
        if stopper.stopped_by == "SIGTERM":  # saved by the callback at a step boundary
            raise SystemExit(EXIT_STATUS["SIGTERM"]) from None
        raise
    finally:
        stopper.restore()
    elapsed = time.time() - start
    best = next((c.best_model_path for c in callbacks if hasattr(c, "best_model_path")), "")
    # the last step is saved whatever the checkpoint interval (the interval's own last.ckpt
    # may be up to an interval behind, and a run shorter than it has written none)
    trainer.save_checkpoint(last)
    result = {
        "best_ckpt": best,
        "last_ckpt": str(last),
        "fit_seconds": elapsed,
        "global_step": int(trainer.global_step),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    if stopper.stopped_by:
        if trainer.is_global_zero:
            print(
                f"Stopped by {stopper.stopped_by} at step {trainer.global_step}: saved {last}; "
                "rerun the same command to resume"
                + (" (nothing exported)" if export is not None and cfg.get("export_path") else "")
            )
        raise SystemExit(EXIT_STATUS[stopper.stopped_by])
    if not trainer.is_global_zero:  # under DDP one process reports and exports
        return result
    print(f"Last checkpoint: {last} (step {trainer.global_step})")
    if best:
        print(f"Best checkpoint: {best}")
    if export is not None and cfg.get("export_path"):
        src = best or str(last)
        export(src, cfg.export_path)
        result["export_path"] = str(cfg.export_path)
        print(f"Exported {src} -> {cfg.export_path}")
    for lg in trainer.loggers:
        if isinstance(lg, L.pytorch.loggers.CSVLogger):
            lg.save()  # written every flush_logs_every_n_steps; the tail of the run too
            csv = Path(lg.log_dir) / "metrics.csv"
            print(f"Metrics: {csv}")
            if trend := reward_trend(csv):
                print(f"train/reward: {trend}")
    return result


def resume_path(cfg: DictConfig, last: Path) -> str | None:
    """The checkpoint to start from: ``ckpt_path`` when given, else the run's own
    ``last.ckpt`` (unless ``resume=false``), checked to have been trained under this
    command's settings (:func:`crystalrl.resume_check.check_resume`)."""
    from crystalrl.resume_check import check_resume

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None and str(ckpt_path) not in LIGHTNING_CKPT_NAMES:
        from crystalrl.hub import resolve_checkpoint

        return resolve_checkpoint(ckpt_path, "ckpt_path")
    resume = cfg.get("resume", True)
    if ckpt_path is None and resume and str(resume).lower() != "false" and last.is_file():
        check_resume(cfg, last.parent.parent, last)
        log.info("resuming from %s", last)
        print(f"Resuming from {last}")
        return str(last)
    return ckpt_path

"""The training run every ``train_*`` command shares: setup, fit, resume and export.

Each ``train_*`` entry point builds its LightningModule and calls :func:`fit`. A run's
folder is fixed by its ``task_name`` and ``run_name``, so rerunning the same command finds
``checkpoints/last.ckpt`` there and resumes instead of starting over.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("crystalrl")


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
        from crystalrl.checkpoint_registry import resolve_checkpoint

        return resolve_checkpoint(ckpt_path, "ckpt_path")
    resume = cfg.get("resume", True)
    if ckpt_path is None and resume and str(resume).lower() != "false" and last.is_file():
        check_resume(cfg, last.parent.parent, last)
        log.info("resuming from %s", last)
        print(f"Resuming from {last}")
        return str(last)
    return ckpt_path

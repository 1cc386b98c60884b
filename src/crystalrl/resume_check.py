"""Refuse to resume a run under settings that change what it trains.

A run's folder is fixed by ``task_name`` and ``run_name``, so rerunning a command resumes
the run found there. Rerun with another reward, group size or learning rate, it would
continue the old weights, optimizer and step count under the new settings and write
both into one log; nothing in the result would show the mix. The settings a run last
ran with are in its ``config.yaml``; those that shape training are compared with the new
ones before anything is loaded, and a difference stops the command, naming each key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

import crystalrl.config  # noqa: F401  (registers ${hub:...}, which saved configs use)

#: Config subtrees whose values shape the trained weights (the module's settings
#: include the reward, GRPO's coefficients, the optimizer and the base checkpoints).
TRAINING_KEYS = (
    "rl_module",
    "vae_module",
    "ldm_module",
    "predictor_module",
    "data.dataset_type",
    "data.batch_size",
    "data.max_atoms",
    "data.target_names",
    "scheduler",
)
#: Keys under those that change speed, memory or what is reported, not what is learned.
NEUTRAL_KEYS = frozenset(
    {
        "rl_module.rl_configs.val_num_group_samples",
        "rl_module.rl_configs.update_step_batch",
    }
)
#: Leaf names that never change what is learned, wherever they appear.
NEUTRAL_LEAVES = frozenset({"num_workers", "cache_dir", "progress"})
#: The value of ``resume`` that continues a run whatever changed.
FORCE = "force"


class ResumeSettingsError(RuntimeError):
    """A run would resume under settings other than those it was trained with."""


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}", out)
    else:
        out[prefix] = value


def training_settings(cfg: DictConfig) -> dict[str, Any]:
    """The training-relevant leaves of ``cfg`` as ``dotted.key -> value``, resolved where
    they resolve (``${hub:...}`` to the file, ``${scheduler}`` to its settings)."""
    out: dict[str, Any] = {}
    for key in TRAINING_KEYS:
        node = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if node is None:
            continue
        if isinstance(node, DictConfig | ListConfig):
            try:
                node = OmegaConf.to_container(node, resolve=True)
            except Exception:  # an interpolation only Hydra's runtime resolves: as written
                node = OmegaConf.to_container(node, resolve=False)
        _flatten(node, key, out)
    return {
        k: v
        for k, v in out.items()
        if k not in NEUTRAL_KEYS and k.rsplit(".", 1)[-1] not in NEUTRAL_LEAVES
    }


def changed_settings(old: DictConfig, new: DictConfig) -> dict[str, tuple[Any, Any]]:
    """``key -> (old, new)`` for each training-relevant value that differs; a key one side
    lacks shows as ``None`` there."""
    a, b = training_settings(old), training_settings(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _show(value: Any, width: int = 70) -> str:
    text = "(unset)" if value is None else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def check_resume(cfg: DictConfig, run_dir: Path, checkpoint: Path) -> None:
    """Raise :class:`ResumeSettingsError` when resuming ``checkpoint`` would train under
    other settings than the run in ``run_dir`` last used (its ``config.yaml``), unless
    ``resume=force``. Runs without a ``config.yaml`` are not checked."""
    saved = run_dir / "config.yaml"
    if str(cfg.get("resume", True)).lower() == FORCE or not saved.is_file():
        return
    old = OmegaConf.load(saved)
    changed = changed_settings(old, cfg)
    if not changed:
        return
    lines = "\n".join(
        f"  {k}: {_show(a)} -> {_show(b)}" for k, a, b in ((k, *v) for k, v in changed.items())
    )
    run_name = cfg.get("run_name", "NAME")
    raise ResumeSettingsError(
        f"{checkpoint} was trained with other settings than this command's; resuming would "
        f"continue its weights, optimizer and step count under the new ones "
        f"({len(changed)} changed):\n{lines}\n"
        f"To start a fresh run, give it a new name (run_name={run_name}_2, say); to continue "
        f"this run under the new settings anyway, add resume={FORCE}."
    )

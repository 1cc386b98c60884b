"""Lightning modules from checkpoint files, and checkpoints trimmed for shipping.

Both read through :func:`crystalrl.checkpoint_registry.load_checkpoint`, so a registry
name works wherever a file does and every file is checked and loaded as data only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from crystalrl.checkpoint_kind import KIND_OF_CLASS, check_kind
from crystalrl.checkpoint_registry import load_checkpoint, resolve_checkpoint

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
) -> L.LightningModule:
    """Load a Lightning checkpoint or an exported one; weights come back in float32.

    ``path`` may be a registry name; ``key`` is the config key it came from, which errors
    name (see :func:`crystalrl.checkpoint_registry.resolve_checkpoint`)."""
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


def reexport_checkpoint(
    path: str, load: Callable[[str], L.LightningModule], dst: str | None = None
) -> str:
    """Write ``path`` again (to ``dst``, else in place) as today's code stores it.

    ``load`` is the stage's loader (:func:`crystalrl.ldm.module.load_ldm`, ...); the file
    gets the hyper-parameters of the module it builds, and its own tensors, in their own
    dtypes, each checked bit for bit against the loaded module's: only the record of the
    options changes, never a weight. Other entries (``global_step``) are kept.
    """
    path = resolve_checkpoint(path)
    ckpt = load_checkpoint(path)
    module = load(path)
    today = module.state_dict()
    state = {}
    for name, stored in ckpt["state_dict"].items():
        state[name] = today[name].to(stored.dtype)
        if not torch.equal(state[name], stored):
            raise ValueError(f"{path}: {name} does not survive loading unchanged")
    target = Path(dst or path)
    part = target.with_suffix(".part")  # never half a shipped file; same archive name
    torch.save({**ckpt, "state_dict": state, "hyper_parameters": dict(module.hparams)}, part)
    part.replace(target)
    return str(target)

"""Lightning modules from checkpoint files, and checkpoints trimmed for shipping.

Both read through :func:`crystalrl.checkpoint_registry.load_checkpoint`, so a registry
name works wherever a file does and every file is checked and loaded as data only.

The loaders take only the options today's modules have. When a module loses one, the
shipped files that store it are re-exported once (:func:`reexport_checkpoint`, before the
code that still reads the option goes), rather than every loader filtering old files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from crystalrl.checkpoint_kind import KIND_OF_CLASS, check_kind
from crystalrl.checkpoint_registry import load_checkpoint, resolve_checkpoint


def load_module(
    cls: type[L.LightningModule], path: str, map_location: str = "cpu", key: str | None = None
) -> L.LightningModule:
    """Load a Lightning checkpoint or an exported one; weights come back in float32.

    ``path`` may be a registry name; ``key`` is the config key it came from, which errors
    name (see :func:`crystalrl.checkpoint_registry.resolve_checkpoint`)."""
    ckpt = load_checkpoint(path, key, map_location)
    if cls.__name__ in KIND_OF_CLASS:  # another stage's file fails here, not in cls(**hparams)
        check_kind(ckpt, (KIND_OF_CLASS[cls.__name__],), path, key)
    module = cls(**ckpt.get("hyper_parameters", {}))
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

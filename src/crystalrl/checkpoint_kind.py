"""What stage a checkpoint comes from, so a checkpoint given to the wrong key is named.

Every stage saves a ``state_dict`` and its hyper-parameters, so an LDM checkpoint given as
``vae_ckpt_path`` loaded without complaint until the VAE class was built from the LDM's
hyper-parameters and failed with ``unexpected keyword argument 'vae_ckpt_path'``, which
names neither the key, the file, nor what it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Hyper-parameters only one stage has, in the order they are tried (an RL checkpoint also
#: has the LDM's, under their own key).
MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("RL", ("ldm_ckpt_path", "rl_configs")),
    ("LDM", ("denoiser", "diffusion")),
    ("predictor", ("target_names",)),
    ("VAE", ("loss_weights", "model")),
)
#: What each stage's checkpoint is, in errors.
DESCRIPTIONS = {
    "RL": "an RL-tuned LDM checkpoint (crystalrl.train_rl)",
    "LDM": "an LDM checkpoint (crystalrl.train_ldm)",
    "predictor": "a property predictor checkpoint (crystalrl.train_predictor)",
    "VAE": "a VAE checkpoint (crystalrl.train_vae)",
}
#: The stage of each loadable module class.
KIND_OF_CLASS = {"VAEModule": "VAE", "LDMModule": "LDM", "PredictorModule": "predictor"}


def checkpoint_kind(ckpt: Mapping[str, Any]) -> str | None:
    """``"VAE"``, ``"LDM"``, ``"RL"`` or ``"predictor"``; ``None`` when it cannot tell."""
    if "ldm_hyper_parameters" in ckpt:
        return "RL"
    hparams = ckpt.get("hyper_parameters") or {}
    for kind, keys in MARKERS:
        if any(k in hparams for k in keys):
            return kind
    return None


def check_kind(
    ckpt: Mapping[str, Any], expected: tuple[str, ...], value: object, key: str | None
) -> None:
    """Refuse a checkpoint of another stage than ``expected``, naming the key, the file
    and what the file is. A checkpoint whose stage cannot be told is let through."""
    from crystalrl.checkpoint_registry import UnreadableCheckpointError, resolve_checkpoint

    kind = checkpoint_kind(ckpt)
    if kind is None or kind in expected:
        return
    file = resolve_checkpoint(value, key)
    label = f"{key}={str(value)!r}" if key else repr(str(value))
    wanted = " or ".join(DESCRIPTIONS[k].split(" (")[0] for k in expected)
    raise UnreadableCheckpointError(
        f"{label}: {file} is {DESCRIPTIONS[kind]}, but {key or 'this'} takes {wanted}; "
        f"give the file (or registered name) of {DESCRIPTIONS[expected[0]]}"
    )

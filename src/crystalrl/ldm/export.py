"""Shippable LDM checkpoints: EMA weights as the denoiser, half precision, no optimizer."""

from __future__ import annotations

from pathlib import Path

import torch


def export_ldm(src: str, dst: str, half: bool = True, use_ema: bool = True) -> str:
    """Write the weights generation uses (EMA if present) and the hyper-parameters.

    The training copy of the denoiser and the optimizer state are dropped: they are only
    needed to resume training, which uses the Lightning checkpoint itself.
    """
    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    state = ckpt["state_dict"]
    hparams = ckpt["hyper_parameters"]
    if "ldm_hyper_parameters" in ckpt:  # an RL run: keep only the LDM it trained
        state = {k[4:]: v for k, v in state.items() if k.startswith("ldm.")}
        hparams = ckpt["ldm_hyper_parameters"]
    ema = {k[len("ema.module.") :]: v for k, v in state.items() if k.startswith("ema.module.")}
    out = {}
    for k, v in state.items():
        if k.startswith("ema."):
            continue
        if use_ema and ema and k.startswith("denoiser."):
            v = ema[k[len("denoiser.") :]]
        out[k] = v.half() if half and v.is_floating_point() and v.dim() > 0 else v
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": out, "hyper_parameters": dict(hparams)}, dst)
    return dst

"""Shippable LDM checkpoints: EMA weights as the denoiser, half precision, no optimizer.

``vae`` pairs the denoiser with another VAE's decoder. Only the decoder may differ: the
denoiser was trained on the encoder's latents, so a VAE with a different encoder is
refused (a decoder fine-tuned with its encoder frozen keeps it).
"""

from __future__ import annotations

from pathlib import Path

import torch

from crystalrl.checkpoint_registry import load_checkpoint
from crystalrl.vae.module import encoder_mismatch


def export_ldm(
    src: str, dst: str, half: bool = True, use_ema: bool = True, vae: str | None = None
) -> str:
    """Write the weights generation uses (EMA if present) and the hyper-parameters.

    The training copy of the denoiser and the optimizer state are dropped: they are only
    needed to resume training, which uses the Lightning checkpoint itself.
    """
    ckpt = load_checkpoint(src)
    state = ckpt["state_dict"]
    hparams = dict(ckpt["hyper_parameters"])
    if "ldm_hyper_parameters" in ckpt:  # an RL run: keep only the LDM it trained
        state = _under(state, "ldm.")
        hparams = dict(ckpt["ldm_hyper_parameters"])
    if vae is not None:
        state, hparams = _swap_decoder(state, hparams, vae, src)
    # the VAE travels inside the file; where it was read from is this machine's business
    hparams["vae_ckpt_path"] = None
    ema = _under(state, "ema.module.")
    out = {}
    for k, v in state.items():
        if k.startswith("ema."):
            continue
        if use_ema and ema and k.startswith("denoiser."):
            v = ema[k[len("denoiser.") :]]
        out[k] = v.half() if half and v.is_floating_point() and v.dim() > 0 else v
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    record = {"state_dict": out, "hyper_parameters": hparams}
    if "global_step" in ckpt:  # which step of a run this is, to tell a stale export
        record["global_step"] = int(ckpt["global_step"])
    torch.save(record, dst)
    return dst


def _swap_decoder(state: dict, hparams: dict, vae_path: str, src: str) -> tuple[dict, dict]:
    new = load_checkpoint(vae_path, "--vae")
    new_state = {"vae." + k: v for k, v in new["state_dict"].items()}
    differs = encoder_mismatch(_under(state, "vae.vae."), _under(new["state_dict"], "vae."))
    if differs:
        raise ValueError(
            f"{vae_path}: its encoder differs from the one {src} was trained on "
            f"(first difference: vae.vae.{differs}); only a decoder fine-tuned with a frozen "
            "encoder can be paired with this denoiser"
        )
    state = {k: v for k, v in state.items() if not k.startswith("vae.")}
    state.update(new_state)
    vae_hparams = dict(new["hyper_parameters"])
    vae_hparams.pop("num_atoms_distribution", None)
    hparams["vae_hparams"] = {**hparams.get("vae_hparams", {}), **vae_hparams}
    return state, hparams


def _under(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

"""Lightning wrapper of :class:`CrystalVAE`: augmentation, losses, optimisation, loading."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import lightning as L
import torch

from crystalrl.checkpoint_io import load_module
from crystalrl.data.batch import CrystalBatch
from crystalrl.shared_step import SharedStepHooks
from crystalrl.vae.model import CrystalVAE, vae_loss

#: Submodules of :class:`CrystalVAE` that map a crystal to its latent.
ENCODER_PARTS = (
    "element_embedding",
    "coord_proj",
    "lattice_proj",
    "encoder",
    "encoder_norm",
    "to_posterior",
)
DEFAULT_LOSS_WEIGHTS = {"types": 1.0, "coords": 10.0, "lengths": 1.0, "angles": 10.0, "kl": 1e-5}


def augment(
    batch: CrystalBatch, translate: bool, permute_axes: bool, coord_noise: float
) -> CrystalBatch:
    """Random symmetry-preserving views of each crystal.

    A rigid rotation leaves (lengths, angles, fractional coordinates) unchanged, so the
    rotations that act on this representation are relabellings of the cell axes
    (``permute_axes``); a translation shifts every fractional coordinate modulo 1.
    ``coord_noise`` perturbs the encoder's input only (the target stays clean).
    """
    coords, lengths, angles = batch.frac_coords, batch.lengths, batch.angles
    b = len(batch)
    if translate:
        shift = torch.rand(b, 1, 3, dtype=coords.dtype, device=coords.device)
        coords = torch.remainder(coords + shift, 1.0) * batch.mask.unsqueeze(-1)
    if permute_axes:
        perm = torch.stack([torch.randperm(3, device=coords.device) for _ in range(b)])
        coords = torch.gather(coords, 2, perm.unsqueeze(1).expand_as(coords))
        lengths = torch.gather(lengths, 1, perm)
        angles = torch.gather(angles, 1, perm)  # alpha is opposite a, so it follows a
    target = replace(batch, frac_coords=coords, lengths=lengths, angles=angles)
    if coord_noise > 0:
        noisy = coords + coord_noise * torch.randn_like(coords) * batch.mask.unsqueeze(-1)
        return replace(target, frac_coords=noisy), target
    return target, target


def init_args(local_vars: dict[str, Any]) -> dict[str, Any]:
    """The arguments of an ``__init__`` from its ``locals()`` taken on entry."""
    return {k: v for k, v in local_vars.items() if k not in ("self", "__class__")}


class VAEModule(SharedStepHooks, L.LightningModule):
    """Trains :class:`CrystalVAE`; the checkpoint is what ``${hub:mp_20_vae}`` points at."""

    def __init__(
        self,
        model: dict[str, Any] | None = None,
        loss_weights: dict[str, float] | None = None,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 500,
        translate: bool = True,
        permute_axes: bool = False,
        coord_noise: float = 0.0,
        scheduler: dict[str, Any] | None = None,
        num_atoms_distribution: list[float] | None = None,
    ):
        super().__init__()
        # explicit dict: Lightning's frame inspection would mix in the arguments of an
        # enclosing module's __init__ (an LDM builds its VAE inside its own __init__)
        self.save_hyperparameters(init_args(locals()))
        self.vae = CrystalVAE(**(model or {}))
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}

    def _step(self, batch: CrystalBatch, stage: str) -> torch.Tensor:
        if stage == "train":
            inp, target = augment(
                batch, self.hparams.translate, self.hparams.permute_axes, self.hparams.coord_noise
            )
        else:
            inp = target = batch
        out = self.vae(inp, sample=stage == "train")
        losses = vae_loss(out, target, self.loss_weights)
        with torch.no_grad():
            mask = batch.mask
            acc = (out["type_logits"][..., 1:].argmax(-1) + 1)[mask].eq(target.atom_types[mask])
        log = {f"{stage}/{k}": v.detach() for k, v in losses.items()}
        log[f"{stage}/type_acc"] = acc.float().mean()
        self.log_stage(log, stage, len(batch))
        total = {f"{stage}/total_loss": losses["loss"].detach()}
        self.log_stage(total, stage, len(batch), prog_bar=True)
        return losses["loss"]


def encoder_mismatch(
    reference: Mapping[str, torch.Tensor], candidate: Mapping[str, torch.Tensor], atol: float = 1e-3
) -> str | None:
    """The first encoder weight in which two :class:`CrystalVAE` state dicts differ, or None.

    A diffusion model is only meaningful with a decoder of the latent space it was trained
    in, which the encoder defines; a decoder fine-tuned with its encoder frozen qualifies.
    ``atol`` absorbs half-precision storage.
    """
    keys = sorted({k for k in (*reference, *candidate) if k.split(".")[0] in ENCODER_PARTS})
    for k in keys:
        a, b = reference.get(k), candidate.get(k)
        if a is None or b is None or a.shape != b.shape:
            return k
        if not torch.allclose(a.float(), b.float(), atol=atol):
            return k
    return None


def load_vae(path: str, map_location: str = "cpu", key: str | None = None) -> VAEModule:
    """A trained VAE in eval mode from a Lightning or exported (half-precision) checkpoint;
    ``key`` names the config key ``path`` came from in errors."""
    return load_module(VAEModule, path, map_location, key)

"""Lightning wrapper of :class:`CrystalVAE`: augmentation, losses, optimisation, loading."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import lightning as L
import torch

from crystalrl.data.batch import CrystalBatch
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


class VAEModule(L.LightningModule):
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
        latent_noise: float = 0.0,
        freeze_encoder: bool = False,
    ):
        """``latent_noise`` > 0 adds Gaussian noise to the decoder's input latent, with a
        standard deviation drawn per crystal from U(0, latent_noise) times the latents'
        std. A diffusion model's samples land near, not on, the latents of real crystals,
        and a decoder trained only on exact latents places atoms badly there (at 0.05 std
        of noise the shipped mp_20_vae's CHGNet-metastable fraction falls from 64 % to 9 %).
        ``freeze_encoder`` keeps the latent space, so an LDM trained on it stays valid
        when the decoder is fine-tuned this way."""
        super().__init__()
        # explicit dict: Lightning's frame inspection would mix in the arguments of an
        # enclosing module's __init__ (an LDM builds its VAE inside its own __init__)
        self.save_hyperparameters(init_args(locals()))
        self.vae = CrystalVAE(**(model or {}))
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}
        if freeze_encoder:
            for name, p in self.vae.named_parameters():
                if name.split(".")[0] in ENCODER_PARTS:
                    p.requires_grad_(False)

    def _step(self, batch: CrystalBatch, stage: str) -> torch.Tensor:
        if stage == "train":
            inp, target = augment(
                batch, self.hparams.translate, self.hparams.permute_axes, self.hparams.coord_noise
            )
        else:
            inp = target = batch
        if stage == "train" and self.hparams.latent_noise > 0:
            out = self._noisy_latent_forward(inp)
        else:
            out = self.vae(inp, sample=stage == "train")
        losses = vae_loss(out, target, self.loss_weights)
        with torch.no_grad():
            mask = batch.mask
            acc = (out["type_logits"][..., 1:].argmax(-1) + 1)[mask].eq(target.atom_types[mask])
        log = {f"{stage}/{k}": v.detach() for k, v in losses.items()}
        log[f"{stage}/type_acc"] = acc.float().mean()
        self.log_dict(
            log, prog_bar=False, batch_size=len(batch), on_epoch=True, on_step=stage == "train"
        )
        self.log(
            f"{stage}/total_loss",
            losses["loss"].detach(),
            prog_bar=True,
            batch_size=len(batch),
            on_epoch=True,
            on_step=stage == "train",
        )
        if stage == "val" and self.hparams.latent_noise > 0:
            # what a fine-tuned decoder is for: crystals from latents off by half the noise
            noisy = vae_loss(
                self._noisy_latent_forward(batch, 0.5 * self.hparams.latent_noise),
                target,
                self.loss_weights,
            )
            self.log("val/noisy_loss", noisy["loss"].detach(), batch_size=len(batch))
        return losses["loss"]

    def _noisy_latent_forward(
        self, batch: CrystalBatch, sigma: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Decode from a noised latent: std ``sigma`` (in units of the latents' std), or
        one drawn per crystal from U(0, latent_noise)."""
        vae = self.vae
        with torch.set_grad_enabled(not self.hparams.freeze_encoder):
            mu, logvar = vae.encode(batch)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        mask = batch.mask
        scale = mu.detach()[mask].std()
        if sigma is None:
            sigma = torch.rand(len(batch), 1, 1, device=mu.device) * self.hparams.latent_noise
        z = (z + sigma * scale * torch.randn_like(z)) * mask.unsqueeze(-1)
        out = vae.decode(z, mask)
        out.update(mu=mu, logvar=logvar, z=z)
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.get("freeze_encoder"):  # no dropout in the frozen half
            for name in ENCODER_PARTS:
                getattr(self.vae, name).eval()
        return self

    def training_step(self, batch: CrystalBatch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: CrystalBatch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: CrystalBatch, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        from crystalrl.training import build_optimizer

        return build_optimizer(self, self.hparams)


def encoder_mismatch(
    reference: Mapping[str, torch.Tensor], candidate: Mapping[str, torch.Tensor], atol: float = 1e-3
) -> str | None:
    """The first encoder weight in which two :class:`CrystalVAE` state dicts differ, or None.

    A diffusion model is only meaningful with a decoder of the latent space it was trained
    in, which the encoder defines; a decoder fine-tuned with a frozen encoder qualifies.
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


def load_vae(path: str, map_location: str = "cpu") -> VAEModule:
    """A trained VAE in eval mode from a Lightning or exported (half-precision) checkpoint."""
    from crystalrl.training import load_module

    return load_module(VAEModule, path, map_location)

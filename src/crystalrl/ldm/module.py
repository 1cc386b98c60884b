"""Lightning module of the latent diffusion model: training on VAE latents, and generation.

The VAE is frozen and travels with the LDM (its checkpoint path is a hyper-parameter and
its weights are saved inside the LDM checkpoint), so an LDM checkpoint alone is enough to
generate crystals.

Explicit channels (``position_scale`` > 0, ``lattice_scale`` > 0): each atom's token is
its normalised VAE latent followed by six position channels (sin and cos of 2π times its
fractional coordinates) and six lattice channels (:mod:`crystalrl.ldm.tokens`); the
generated crystal takes its positions and lattice from them and only its elements from
the VAE decoder. In the VAE latent an atom's position is a small loop, a few per cent of
the variance, beside its element's cluster, and a denoiser over such latents never
learned where atoms go relative to each other; with position and lattice at unit scale
in the token, and the DiT's pair bias over their distances, it does. Every channel is
diffused with the same Gaussian process, so samplers, trajectories and GRPO
log-probabilities cover the whole token unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from crystalrl.data.batch import CrystalBatch
from crystalrl.ldm.diffusion import GaussianDiffusion, Sampler, sampling_noise
from crystalrl.ldm.dit import DIT_CONFIGS, DiT
from crystalrl.ldm.tokens import channels_to_lattice, lattice_channels, position_channels
from crystalrl.vae.model import circle_to_frac
from crystalrl.vae.module import VAEModule, augment, init_args, load_vae


class LDMModule(L.LightningModule):
    """DiT + Gaussian diffusion over the per-atom latents of a frozen VAE."""

    def __init__(
        self,
        vae_ckpt_path: str | None = None,
        denoiser: dict[str, Any] | None = None,
        diffusion: dict[str, Any] | None = None,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 500,
        ema_decay: float = 0.999,
        translate: bool = True,
        scheduler: dict[str, Any] | None = None,
        num_atoms_distribution: list[float] | None = None,
        vae_hparams: dict[str, Any] | None = None,
        latent_std: float | None = None,
        position_scale: float = 0.0,
        lattice_scale: float = 0.0,
        precompute_latents: bool = False,
    ):
        """``position_scale`` > 0 appends position channels and ``lattice_scale`` > 0 lattice
        channels to every token (see the module docstring and :mod:`crystalrl.ldm.tokens`).
        ``precompute_latents`` encodes the training split once when fitting starts instead
        of every batch (the encoder is then ~60 % of a step's time); the translation
        augmentation then moves the position channels only, so it needs them."""
        super().__init__()
        self.save_hyperparameters(init_args(locals()))
        denoiser = dict(denoiser or {})
        preset = denoiser.pop("preset", None)
        if preset:
            denoiser = {**denoiser, **DIT_CONFIGS[preset]}
        diffusion = dict(diffusion or {})
        # the VAE's architecture is stored so a checkpoint rebuilds it without the VAE file
        vae = (
            load_vae(vae_ckpt_path, key="ldm_module.vae_ckpt_path")
            if vae_ckpt_path
            else VAEModule(**(vae_hparams or {}))
        )
        self.hparams.update(denoiser=denoiser, diffusion=diffusion, vae_hparams=dict(vae.hparams))
        self.vae = vae
        self.vae.requires_grad_(False)
        self.vae.eval()
        if precompute_latents and translate and not position_scale:
            raise ValueError(
                "ldm_module.precompute_latents with translate=true needs position channels "
                "(position_scale > 0): a translated crystal's VAE latent needs the encoder"
            )
        if (denoiser.get("pair_freqs") or lattice_scale) and not position_scale:
            raise ValueError(
                "ldm_module.denoiser.pair_freqs and ldm_module.lattice_scale need position "
                "channels (ldm_module.position_scale > 0)"
            )
        self.denoiser = DiT(
            latent_dim=self.token_dim,
            learn_sigma=diffusion.get("learn_sigma", False),
            lattice_scale=lattice_scale,
            **denoiser,
        )
        self.ema = (
            torch.optim.swa_utils.AveragedModel(
                self.denoiser, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(ema_decay)
            )
            if ema_decay
            else None
        )
        if self.ema is not None:  # averaged, never trained (DDP would wait for its grads)
            self.ema.requires_grad_(False)
        self.diffusion = GaussianDiffusion(**diffusion)
        # latents are divided by their std, measured on the first training batch
        self.register_buffer("latent_std", torch.tensor(float(latent_std or 0.0)))
        self._train_latents: torch.Tensor | None = None  # (num_train, max_atoms, latent_dim)

    @property
    def content_dim(self) -> int:
        """Channels of a token that the VAE decoder reads."""
        return self.vae.vae.latent_dim

    @property
    def token_dim(self) -> int:
        """Channels of a token: the latent, then 6 position and 6 lattice channels if used."""
        hp = self.hparams
        return self.content_dim + (6 if hp.position_scale else 0) + (6 if hp.lattice_scale else 0)

    # ------------------------------------------------------------------ latents
    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()  # frozen: never in training mode
        return self

    def _set_latent_std(self, z: torch.Tensor) -> None:
        if float(self.latent_std) == 0.0:
            std = z.std().clamp(min=1e-6)
            self.latent_std.fill_(std)
            self.hparams.latent_std = float(std)

    @torch.no_grad()
    def encode(self, batch: CrystalBatch, sample: bool = True) -> torch.Tensor:
        """Tokens of a batch: normalised latents (posterior sample or mean), then the
        position channels when the model has them."""
        with torch.autocast(self.device.type, enabled=False):  # full precision under bf16
            mu, logvar = self.vae.vae.encode(batch)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        self._set_latent_std(z[batch.mask])
        return self.tokens(z / self.latent_std, batch)

    def tokens(self, latents: torch.Tensor, batch: CrystalBatch) -> torch.Tensor:
        """Normalised latents (B, N, latent_dim) and the batch's positions -> tokens."""
        m = batch.mask.unsqueeze(-1)
        hp = self.hparams
        parts = [latents]
        if hp.position_scale:
            parts.append(position_channels(batch.frac_coords.to(latents.dtype), hp.position_scale))
        if hp.lattice_scale:
            lattice = lattice_channels(
                batch.scaled_lengths().to(latents.dtype),
                batch.angles_rad().to(latents.dtype),
                hp.lattice_scale,
            )
            parts.append(lattice.unsqueeze(1).expand(-1, latents.shape[1], -1))
        return torch.cat(parts, dim=-1) * m

    @torch.no_grad()
    def decode(self, z: torch.Tensor, mask: torch.Tensor) -> CrystalBatch:
        d, hp = self.content_dim, self.hparams
        out = self.vae.vae.decode(z[..., :d] * self.latent_std, mask)
        if hp.position_scale:
            out["frac_coords"] = circle_to_frac(z[..., d : d + 6])
        if hp.lattice_scale:
            lengths, angles = channels_to_lattice(z[..., d + 6 : d + 12], mask, hp.lattice_scale)
            out["scaled_lengths"], out["angles"] = lengths.to(z.dtype), angles.to(z.dtype)
        return self.vae.vae.to_batch(out, mask)

    # ------------------------------------------------------------------ precomputed latents
    def on_fit_start(self) -> None:
        if self.hparams.precompute_latents and self._train_latents is None:
            self._train_latents = self.encode_split(self.trainer.datamodule.dataset("train"))

    @torch.no_grad()
    def encode_split(self, dataset, batch_size: int = 1024) -> torch.Tensor:
        """Normalised posterior-mean latents of a whole dataset split, padded to its
        largest crystal: the encoder runs once per crystal instead of once per step."""
        from crystalrl.data.datamodule import collate

        parts, real = [], []
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = collate(items).to(self.device)
            with torch.autocast(self.device.type, enabled=False):
                mu, _ = self.vae.vae.encode(batch)
            parts.append(mu * batch.mask.unsqueeze(-1))
            real.append(mu[batch.mask])
        n = max(p.shape[1] for p in parts)
        z = torch.cat([torch.nn.functional.pad(p, (0, 0, 0, n - p.shape[1])) for p in parts])
        self._set_latent_std(torch.cat(real))
        return z / self.latent_std

    def model_fn(self, use_ema: bool = False) -> Callable:
        net = self.ema.module if use_ema and self.ema is not None else self.denoiser
        return lambda x, t, mask: net(x, t, mask)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: CrystalBatch, batch_idx: int) -> torch.Tensor:
        if self.hparams.translate:
            batch, _ = augment(batch, translate=True, permute_axes=False, coord_noise=0.0)
        if self._train_latents is not None and batch.index is not None:
            cached = self._train_latents[batch.index.to(self._train_latents.device)]
            z0 = self.tokens(cached[:, : batch.mask.shape[1]].to(self.device), batch)
        else:
            z0 = self.encode(batch)
        t = torch.randint(0, self.diffusion.num_timesteps, (len(batch),), device=z0.device)
        losses = self.diffusion.training_losses(self.model_fn(), z0, batch.mask, t)
        loss = losses["loss"].mean()
        self.log_dict({f"train/{k}": v.mean() for k, v in losses.items()}, batch_size=len(batch))
        self.log("train/total_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def on_train_batch_end(self, *args) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.denoiser)

    @torch.no_grad()
    def validation_step(self, batch: CrystalBatch, batch_idx: int) -> None:
        # a fixed grid of timesteps and noise makes the validation loss comparable over time
        g = torch.Generator().manual_seed(batch_idx)
        z0 = self.encode(batch, sample=False)
        t = torch.randint(0, self.diffusion.num_timesteps, (len(batch),), generator=g)
        torch.manual_seed(batch_idx)
        net = self.model_fn(use_ema=True)
        loss = self.diffusion.training_losses(net, z0, batch.mask, t.to(z0.device))["loss"].mean()
        self.log("val/total_loss", loss, prog_bar=True, batch_size=len(batch), sync_dist=True)

    def configure_optimizers(self):
        from crystalrl.optimization import build_optimizer

        return build_optimizer(self.denoiser, self.hparams)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["hyper_parameters"]["latent_std"] = float(self.latent_std)

    # ------------------------------------------------------------------ generation
    def sample_num_atoms(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Atom counts drawn from the training distribution stored with the model."""
        dist = self.hparams.num_atoms_distribution or self.vae.hparams.num_atoms_distribution
        if not dist:
            raise ValueError("this checkpoint stores no atom-count distribution; pass num_atoms")
        probs = torch.tensor(dist, dtype=torch.float64)
        return torch.multinomial(probs, n, replacement=True, generator=generator)

    def make_sampler(self, sampler: str = "ddim", sampling_steps: int = 50, eta: float = 1.0):
        return Sampler(self.diffusion, sampler, sampling_steps, eta)

    @torch.no_grad()
    def generate(
        self,
        num_atoms: torch.Tensor,
        sampler: Sampler,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        use_ema: bool = True,
        progress: Callable[[int], None] | None = None,
        model_fn: Callable | None = None,
    ) -> tuple[CrystalBatch, dict | None]:
        """Sample latents for the given atom counts and decode them into crystals;
        ``model_fn`` replaces the denoiser call (the RL policy's, at its own precision)."""
        n = int(num_atoms.max())
        device = next(self.denoiser.parameters()).device
        num_atoms = num_atoms.to(device)
        mask = torch.arange(n, device=device)[None, :] < num_atoms[:, None]
        noise = sampling_noise((len(num_atoms), n, self.token_dim), generator, device)
        z, traj = sampler.sample(
            model_fn or self.model_fn(use_ema), noise, mask, generator, return_trajectory, progress
        )
        batch = self.decode(z, mask)
        if traj is not None:
            traj["mask"] = mask
        return batch, traj


def load_ldm(path: str, map_location: str = "cpu", key: str | None = None) -> LDMModule:
    """An LDM (or RL-tuned LDM) in eval mode from a Lightning or exported checkpoint;
    ``key`` names the config key ``path`` came from in errors."""
    from crystalrl.checkpoint_kind import check_kind
    from crystalrl.checkpoint_registry import load_checkpoint

    ckpt = load_checkpoint(path, key, map_location)
    check_kind(ckpt, ("LDM", "RL"), path, key)
    hp = dict(ckpt.get("hyper_parameters", {}))
    state = ckpt["state_dict"]
    if "ldm_hyper_parameters" in ckpt:  # an RL checkpoint: the LDM lives under "ldm."
        hp = dict(ckpt["ldm_hyper_parameters"])
        state = {k[4:]: v for k, v in state.items() if k.startswith("ldm.")}
    hp["vae_ckpt_path"] = None  # the VAE's weights are inside this checkpoint
    module = LDMModule(**hp)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith("ema.")] + list(unexpected)
    if bad:
        raise KeyError(f"{path}: checkpoint does not fit the LDM ({bad[:5]} …)")
    if any(k.startswith("ema.") for k in missing) and module.ema is not None:
        module.ema.module.load_state_dict(module.denoiser.state_dict())
    module.eval()
    return module

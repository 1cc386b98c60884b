"""The crystal VAE in one file: per-atom Gaussian latents from a transformer over atoms.

A crystal is a set of atoms (element, fractional coordinates) plus a lattice. The
encoder sees every atom together with the lattice and writes one small latent vector
per atom; the decoder reads the set of latents back into elements, coordinates and the
lattice. Per-atom latents keep the latent space a set, so the diffusion model of stage
2 is a transformer over the same atoms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from crystalrl.data.batch import CrystalBatch

#: Atomic numbers 1..MAX_Z are classes; class 0 is padding and never predicted.
MAX_Z = 100


def fourier_features(frac_coords: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """sin/cos of 2πk·x for k = 1..num_freqs: periodic, so x and x+1 look the same."""
    k = torch.arange(1, num_freqs + 1, device=frac_coords.device, dtype=frac_coords.dtype)
    angles = 2 * math.pi * frac_coords.unsqueeze(-1) * k  # (B, N, 3, F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (B, N, 6F)


def lattice_features(batch: CrystalBatch) -> torch.Tensor:
    """Scaled lengths and angles in radians: the network-facing lattice, (B, 6)."""
    return torch.cat([batch.scaled_lengths(), batch.angles_rad()], dim=-1).float()


def wrapped_diff(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Minimum-image difference of fractional coordinates, in [-0.5, 0.5)."""
    d = pred - target
    return d - torch.round(d)


def circle_to_frac(sc: torch.Tensor) -> torch.Tensor:
    """(…, 6) sines and cosines of 2πx per axis -> fractional coordinates in (-0.5, 0.5]."""
    sin, cos = sc[..., :3], sc[..., 3:]
    return torch.atan2(sin, cos) / (2 * math.pi)


def _transformer(
    d_model: int, num_layers: int, nhead: int, dropout: float
) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model,
        nhead,
        dim_feedforward=4 * d_model,
        dropout=dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)


class CrystalVAE(nn.Module):
    """Transformer encoder/decoder over atoms with a diagonal-Gaussian per-atom latent."""

    def __init__(
        self,
        d_model: int = 256,
        encoder_layers: int = 4,
        decoder_layers: int = 4,
        nhead: int = 8,
        latent_dim: int = 8,
        num_freqs: int = 8,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.latent_dim = latent_dim
        self.num_freqs = num_freqs
        self.d_model = d_model
        self.element_embedding = nn.Embedding(MAX_Z + 1, d_model, padding_idx=0)
        self.coord_proj = nn.Sequential(
            nn.Linear(6 * num_freqs, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )
        self.lattice_proj = nn.Sequential(
            nn.Linear(6, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )
        self.encoder = _transformer(d_model, encoder_layers, nhead, dropout)
        self.encoder_norm = nn.LayerNorm(d_model)
        self.to_posterior = nn.Linear(d_model, 2 * latent_dim)
        # start with a narrow posterior: with a KL weight of 1e-5 it ends narrow anyway,
        # and a wide one early on only buries the reconstruction signal in noise
        nn.init.constant_(self.to_posterior.bias[latent_dim:], -6.0)

        self.latent_proj = nn.Linear(latent_dim, d_model)
        self.decoder = _transformer(d_model, decoder_layers, nhead, dropout)
        self.decoder_norm = nn.LayerNorm(d_model)
        self.type_head = nn.Linear(d_model, MAX_Z + 1)
        # coordinates are decoded as a point on a circle per axis (sin, cos of 2πx): a map
        # onto the circle has no cut, where a real-valued head must jump from 1 back to 0
        self.coord_head = nn.Linear(d_model, 6)
        self.lattice_head = nn.Sequential(
            nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, 6)
        )

    # ------------------------------------------------------------------ encoder
    def encode_hidden(self, batch: CrystalBatch) -> torch.Tensor:
        """The encoder's last hidden states, (B, N, d_model): richer than the latent, for
        property heads."""
        h = (
            self.element_embedding(batch.atom_types)
            + self.coord_proj(fourier_features(batch.frac_coords.float(), self.num_freqs))
            + self.lattice_proj(lattice_features(batch)).unsqueeze(1)
        )
        return self.encoder_norm(self.encoder(h, src_key_padding_mask=~batch.mask))

    def encode(self, batch: CrystalBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance per atom, (B, N, latent_dim) each."""
        mu, logvar = self.to_posterior(self.encode_hidden(batch)).chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    # ------------------------------------------------------------------ decoder
    def decode(self, z: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Element logits, fractional coordinates (mod 1), scaled lengths, angles (radians)."""
        h = self.decoder(self.latent_proj(z), src_key_padding_mask=~mask)
        h = self.decoder_norm(h)
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        lattice = self.lattice_head(pooled)
        return {
            "type_logits": self.type_head(h),
            "frac_coords": circle_to_frac(self.coord_head(h)),
            "scaled_lengths": lattice[:, :3],
            "angles": lattice[:, 3:],
        }

    def forward(self, batch: CrystalBatch, sample: bool = True) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(batch)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        out = self.decode(z, batch.mask)
        out.update(mu=mu, logvar=logvar, z=z)
        return out

    # ------------------------------------------------------------------ conversion
    @staticmethod
    def to_batch(out: dict[str, torch.Tensor], mask: torch.Tensor) -> CrystalBatch:
        """Decoder outputs -> a :class:`CrystalBatch` of concrete crystals."""
        logits = out["type_logits"].clone()
        logits[..., 0] = -torch.inf  # never predict padding at a real atom
        types = logits.argmax(-1) * mask
        num_atoms = mask.sum(1)
        lengths = out["scaled_lengths"].double() * num_atoms.double().unsqueeze(-1) ** (1 / 3)
        return CrystalBatch(
            atom_types=types,
            frac_coords=torch.remainder(out["frac_coords"].double(), 1.0) * mask.unsqueeze(-1),
            mask=mask.clone(),
            num_atoms=num_atoms,
            lengths=lengths.abs(),
            angles=torch.rad2deg(out["angles"].double()),
        )

    @torch.no_grad()
    def reconstruct(self, batch: CrystalBatch) -> CrystalBatch:
        """Encode with the posterior mean and decode: the deterministic round trip."""
        return self.to_batch(self.forward(batch, sample=False), batch.mask)


def vae_loss(
    out: dict[str, torch.Tensor],
    batch: CrystalBatch,
    weights: dict[str, float],
) -> dict[str, torch.Tensor]:
    """Weighted types CE + coords/lengths/angles MSE + KL, each averaged over real atoms."""
    mask = batch.mask
    m = mask.float()
    n_atoms = m.sum().clamp(min=1)
    ce = F.cross_entropy(out["type_logits"][mask], batch.atom_types[mask])
    coords = (wrapped_diff(out["frac_coords"], batch.frac_coords.float()) ** 2).sum(-1)
    coords = (coords * m).sum() / n_atoms
    lengths = F.mse_loss(out["scaled_lengths"], batch.scaled_lengths().float())
    angles = F.mse_loss(out["angles"], batch.angles_rad().float())
    kl = -0.5 * (1 + out["logvar"] - out["mu"] ** 2 - out["logvar"].exp()).sum(-1)
    kl = (kl * m).sum() / n_atoms
    total = (
        weights.get("types", 1.0) * ce
        + weights.get("coords", 10.0) * coords
        + weights.get("lengths", 1.0) * lengths
        + weights.get("angles", 10.0) * angles
        + weights.get("kl", 1e-5) * kl
    )
    return {
        "loss": total,
        "types": ce,
        "coords": coords,
        "lengths": lengths,
        "angles": angles,
        "kl": kl,
    }

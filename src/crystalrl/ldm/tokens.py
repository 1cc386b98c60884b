"""The explicit channels of an LDM token: an atom's position and its crystal's lattice.

A token is the atom's normalised VAE latent, optionally followed by six position channels
(``scale`` × sin and cos of 2π times each fractional coordinate) and six lattice channels
(``scale`` × the standardised log scaled lengths and angles, the same in every atom of a
crystal). Both live at unit scale, where the denoiser can compare them across atoms; the
VAE latent keeps what it encodes best, the element. This module is the one place that
maps between those channels and crystals.
"""

from __future__ import annotations

import math

import torch

#: Standardisation of the lattice channels: log of the lengths divided by num_atoms^(1/3)
#: (Å) and the angles (radians). MP-20 train: log scaled lengths 0.84-1.2 ± ~0.3, angles
#: ~1.5 ± 0.3; fixed constants, so a checkpoint needs no statistics of its data.
LOG_LENGTH_MEAN, LOG_LENGTH_STD = 1.0, 0.3
ANGLE_MEAN, ANGLE_STD = math.pi / 2, 0.3
#: Angles decoded from noisy channels are clamped here (radians) so every cell exists.
ANGLE_RANGE = (0.5, 2.6)


def position_channels(frac_coords: torch.Tensor, scale: float) -> torch.Tensor:
    """(…, 3) fractional coordinates -> (…, 6) ``scale`` × (sin 2πx, cos 2πx), the layout
    :func:`~crystalrl.vae.model.circle_to_frac` reads back."""
    angles = 2 * math.pi * frac_coords
    return scale * torch.cat([angles.sin(), angles.cos()], dim=-1)


def lattice_channels(
    scaled_lengths: torch.Tensor, angles_rad: torch.Tensor, scale: float
) -> torch.Tensor:
    """(B, 3) lengths / num_atoms^(1/3) and (B, 3) angles -> (B, 6) lattice channels."""
    log_len = (scaled_lengths.clamp(min=1e-3).log() - LOG_LENGTH_MEAN) / LOG_LENGTH_STD
    ang = (angles_rad - ANGLE_MEAN) / ANGLE_STD
    return scale * torch.cat([log_len, ang], dim=-1)


def channels_to_lattice(
    channels: torch.Tensor, mask: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, 6) per-atom lattice channels -> scaled lengths (B, 3) and angles (B, 3), rad.

    The crystal's lattice is the mean over its atoms: during sampling each atom carries its
    own noisy copy, which the denoiser pulls together.
    """
    m = mask.unsqueeze(-1).to(channels.dtype)
    mean = (channels * m).sum(1) / m.sum(1).clamp(min=1) / scale
    lengths = (mean[:, :3].clamp(-10, 10) * LOG_LENGTH_STD + LOG_LENGTH_MEAN).exp()
    angles = (mean[:, 3:] * ANGLE_STD + ANGLE_MEAN).clamp(*ANGLE_RANGE)
    return lengths, angles


def lattice_matrix(lengths: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) lengths (Å) and angles (radians) -> (B, 3, 3) row vectors a, b, c (pymatgen's
    convention up to a rotation, which distances do not see)."""
    ca, cb, cg = angles.cos().unbind(-1)
    sg = angles[:, 2].sin()
    cy = (ca - cb * cg) / sg
    cz = (1 - cb**2 - cy**2).clamp(min=1e-6).sqrt()
    zero = torch.zeros_like(ca)
    a, b, c = lengths.unbind(-1)
    return torch.stack(
        [
            torch.stack([a, zero, zero], -1),
            torch.stack([b * cg, b * sg, zero], -1),
            torch.stack([c * cb, c * cy, c * cz], -1),
        ],
        1,
    )

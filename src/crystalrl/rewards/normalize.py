"""Batch normalisations of reward vectors, shared by components and the RL advantages.

Rewards of different components live on different scales (E_hull in eV/atom, MMD
contributions around 1e-4); each component can be rescaled within the batch before the
weighted sum, and the RL stage normalises the total within each group of samples.
"""

from __future__ import annotations

import torch

#: Accepted names; ``None`` and ``"null"``/``"none"`` leave the values unchanged.
NORMALIZATIONS = ("std", "norm", "subtract_mean", "clip", None)


class NormalizationError(ValueError):
    """An unknown normalisation name in a reward config."""


def check_normalize_fn(name: str | None) -> str | None:
    """The canonical name, or an error listing the accepted ones."""
    if name is None or (isinstance(name, str) and name.lower() in ("null", "none", "")):
        return None
    if name in NORMALIZATIONS:
        return name
    raise NormalizationError(
        f"unknown normalize_fn {name!r}; use one of std, norm, subtract_mean, clip or null"
    )


def normalize(x: torch.Tensor, name: str | None, eps: float = 1e-4) -> torch.Tensor:
    """Normalise a 1-D reward vector within the batch.

    ``std``: zero mean, unit standard deviation (all zeros when std < eps);
    ``norm``: min-max to [0, 1] (all zeros when max − min < eps);
    ``subtract_mean``: minus the mean; ``clip``: clamp to [-1, 1]; ``None``: unchanged.
    """
    name = check_normalize_fn(name)
    x = torch.as_tensor(x, dtype=torch.float32)
    if name is None or x.numel() == 0:
        return x
    if name == "std":
        std = x.std() if x.numel() > 1 else x.new_tensor(0.0)
        if std < eps:  # a NaN std falls through and stays visible
            return torch.zeros_like(x)
        return (x - x.mean()) / (std + eps)
    if name == "norm":
        span = x.max() - x.min()
        if span < eps:
            return torch.zeros_like(x)
        return ((x - x.min()) / (span + eps)).clamp(0.0, 1.0)
    if name == "subtract_mean":
        return x - x.mean()
    return x.clamp(-1.0, 1.0)  # clip

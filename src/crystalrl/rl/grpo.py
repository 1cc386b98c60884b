"""The GRPO loss for diffusion trajectories, written to be checked against the algorithm.

Notation (one denoising step of one trajectory):
    old   = log π_old(z_{t-1} | z_t)    recorded at rollout
    new   = log π_θ(z_{t-1} | z_t)      recomputed with gradients
    ratio = exp(new − old)
    surrogate = min(ratio·A, clip(ratio, 1 − ε, 1 + ε)·A)
    KL (k3 estimator) = exp(old − new) − 1 − (old − new)     ≥ 0, unbiased for KL(π_old‖π_θ)
    KL to a frozen reference π_ref (kl_reference=initial) = KL(π_θ‖π_ref) exactly, for two
        Gaussian steps ‖μ_θ − μ_ref‖² / (2σ_t²) when they share σ_t (as Flow-GRPO): the k3
        form with ref in place of old is evaluated at samples of π_old, and once π_θ leaves
        π_ref its exp(ref − new) explodes (measured: KL 0 -> 119 in 130 steps, MSUN -> 0)
    entropy term = −new
    loss = mean(−surrogate + β_KL·KL − β_H·entropy) / T
Advantages A are rewards normalised within each group of G samples of the same prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crystalrl.rewards.normalize import normalize


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    normalize_fn: str | None = "std",
    eps: float = 1e-4,
    group_reward_norm: bool = True,
) -> torch.Tensor:
    """Rewards (B·G,), laid out group after group, -> advantages of the same shape.

    With ``group_reward_norm`` each group of ``group_size`` consecutive rewards is
    normalised on its own (GRPO); otherwise the whole batch is normalised at once.
    """
    if not group_reward_norm or group_size <= 1:
        return normalize(rewards, normalize_fn, eps)
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.view(-1, group_size)
    return torch.stack([normalize(g, normalize_fn, eps) for g in groups]).view(-1)


@dataclass
class StepLoss:
    loss: torch.Tensor  # scalar, already divided by the number of steps T
    ratio: torch.Tensor  # (b,)
    kl: torch.Tensor  # (b,)
    entropy: torch.Tensor  # (b,)
    clipped: torch.Tensor  # (b,) bool: the clipped branch was the minimum


def grpo_step_loss(
    new_logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_ratio: float,
    kl_weight: float,
    entropy_weight: float,
    num_steps: int,
    ref_kl: torch.Tensor | None = None,
) -> StepLoss:
    """The loss of one denoising step for a chunk of trajectories (all tensors (b,)).

    ``ref_kl``, the exact KL to a frozen reference policy
    (:func:`crystalrl.ldm.diffusion.gaussian_kl`), replaces the k3 estimate against the
    rollout policy.
    """
    log_ratio = new_logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio) * advantages
    surrogate = torch.minimum(unclipped, clipped)
    if ref_kl is None:
        d = old_logp - new_logp
        kl = torch.exp(d) - 1.0 - d
    else:
        kl = ref_kl
    entropy = -new_logp
    loss = (-surrogate + kl_weight * kl - entropy_weight * entropy).mean() / num_steps
    return StepLoss(
        loss, ratio.detach(), kl.detach(), entropy.detach(), (clipped < unclipped).detach()
    )

"""The RL stage's defaults, written once.

:class:`~crystalrl.rl.module.RLModule` fills the keys a config leaves out from these, and
``configs/rl_module/rl_module.yaml`` lists every one of them at the same value (a test
holds the two together), so a run behaves the same from Python and from the command line.
The GRPO coefficients are the paper's; the options after them go beyond the seed and are
off by default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GRPOConfig:
    """``rl_module.rl_configs``: the loss of :mod:`crystalrl.rl.grpo` and its update loop."""

    clip_ratio: float = 0.001  # ε of the clipped surrogate
    kl_weight: float = 1.0  # β_KL
    entropy_weight: float = 1e-5  # β_H
    num_group_samples: int = 64  # G: samples per prompt, whose rewards are compared
    group_reward_norm: bool = True  # advantages normalised per group (else per batch)
    num_inner_batch: int = 2  # chunks of the B·G trajectories, one optimizer step each
    max_grad_norm: float = 1.0
    # "initial": KL against the frozen starting denoiser instead of the rollout policy
    kl_reference: str = "rollout"
    # < 1: update on a random subset of the denoising steps
    train_step_fraction: float = 1.0
    # denoising steps evaluated in one forward/backward of the update (1: one at a time,
    # as the seed; 0: all of a chunk's steps at once); the gradient is the same
    update_step_batch: int = 1
    # group size of validation rollouts (None: training's)
    val_num_group_samples: int | None = None
    # the denoiser's calls in rollout and update: "32" or "bf16-mixed" (autocast; twice as
    # fast on CPUs with AVX512-BF16/AMX, GPUs not measured); decoding, log-probs and loss fp32
    policy_precision: str = "32"


@dataclass(frozen=True)
class RolloutConfig:
    """``rl_module.sampling_configs``: how rollouts sample trajectories."""

    sampler: str = "ddim"
    sampling_steps: int = 50
    eta: float = 1.0  # ddim only: 1 draws DDPM-like noise, 0 is deterministic


@dataclass(frozen=True)
class OptimizerConfig:
    """``rl_module.optimizer``: AdamW's settings, also used when no optimizer is given."""

    lr: float = 1e-5
    weight_decay: float = 0.0


def with_defaults(
    name: str, given: dict[str, Any] | None, defaults: GRPOConfig | RolloutConfig
) -> dict[str, Any]:
    """``given`` over the fields of the dataclass ``defaults``; a key with no default is a
    typo or a seed option that nothing here reads, and is refused rather than ignored."""
    known = asdict(defaults)
    unknown = set(given or {}) - set(known)
    if unknown:
        raise KeyError(f"unknown {name} keys {sorted(unknown)}; known: {sorted(known)}")
    return {**known, **(given or {})}

"""Gaussian diffusion over per-atom latents, and DDPM/DDIM samplers that expose each step.

Every reverse step is written as one Gaussian, N(mean, std²), over the next latent. The
samplers return those means and stds next to the latents they produced, because the RL
stage needs exactly them: the log-probability of each recorded transition under the
policy that took it, and under the policy being trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

#: model_fn(x_t, t_original (B,), mask) -> raw network output (B, N, D or 2D)
ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def linear_betas(num_timesteps: int) -> np.ndarray:
    """The DDPM linear schedule, rescaled so any number of steps spans the same noise."""
    scale = 1000 / num_timesteps
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)


def cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    def f(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array(
        [
            min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), max_beta)
            for i in range(num_timesteps)
        ]
    )


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real atoms and latent dims, per structure: (B, N, D) -> (B,)."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum((1, 2)) / (m.sum((1, 2)) * x.shape[-1]).clamp(min=1)


def gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """log N(x; mean, std²) per element, averaged over real atoms and latent dims -> (B,)."""
    std = std.expand_as(mean)
    logp = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return masked_mean(logp, mask)


def normal_kl(
    mean: torch.Tensor, log_var: torch.Tensor, ref_mean: torch.Tensor, ref_log_var: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean, e^log_var) ‖ N(ref_mean, e^ref_log_var)) per element (Improved DDPM's form)."""
    gap = log_var - ref_log_var  # summed so that equal Gaussians give exactly 0
    return 0.5 * ((gap.exp() - 1.0 - gap) + (mean - ref_mean) ** 2 * (-ref_log_var).exp())


def gaussian_kl(
    mean: torch.Tensor,
    std: torch.Tensor,
    ref_mean: torch.Tensor,
    ref_std: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """KL(N(mean, std²) ‖ N(ref_mean, ref_std²)) per element, averaged as
    :func:`gaussian_log_prob` averages -> (B,). Exact, so no sample-based estimate (and
    none of its variance) is needed; with a shared std it is (mean − ref_mean)² / (2 std²)."""
    log_var = 2 * torch.log(std).expand_as(mean)
    ref_log_var = 2 * torch.log(ref_std).expand_as(mean)
    return masked_mean(normal_kl(mean, log_var, ref_mean, ref_log_var), mask)


def sampling_noise(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise for the sampler, on ``device``.

    Drawn from the given generator's stream (or the CPU's, never a GPU's) and then moved:
    the same seed draws the same noise whichever device the model is on.
    """
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, dtype=dtype, device=where).to(device)


def _take(arr: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    out = arr.to(t.device)[t]
    return out.view(-1, *([1] * (ndim - 1)))


class GaussianDiffusion:
    """Forward process q(x_t | x_0) and the ε-prediction training loss.

    With ``learn_sigma`` the network also outputs v ∈ [-1, 1] interpolating the log
    variance between β_t and the posterior variance (Improved DDPM); the variance is then
    trained with the variational bound while ε is trained with the MSE.
    """

    def __init__(
        self, num_timesteps: int = 1000, beta_schedule: str = "linear", learn_sigma: bool = False
    ):
        self.num_timesteps = num_timesteps
        self.learn_sigma = learn_sigma
        if beta_schedule == "linear":
            betas = linear_betas(num_timesteps)
        elif beta_schedule == "cosine":
            betas = cosine_betas(num_timesteps)
        else:
            raise ValueError(f"unknown beta_schedule '{beta_schedule}' (linear, cosine)")
        self.betas_np = betas
        self.alphas_cumprod_np = np.cumprod(1.0 - betas)
        ac = torch.tensor(self.alphas_cumprod_np)
        self.sqrt_ac = ac.sqrt()
        self.sqrt_one_minus_ac = (1 - ac).sqrt()
        self._schedule = Schedule.from_alphas_cumprod(
            self.alphas_cumprod_np, np.arange(num_timesteps)
        )

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return (
            _take(self.sqrt_ac, t, x0.ndim).to(x0.dtype) * x0
            + _take(self.sqrt_one_minus_ac, t, x0.ndim).to(x0.dtype) * noise
        )

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The clean sample that x_t at (original) timesteps t and noise eps imply."""
        return self._schedule.predict_x0(x_t, t, eps)

    def training_losses(
        self, model_fn: ModelFn, x0: torch.Tensor, mask: torch.Tensor, t: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-structure losses (B,): ``mse`` on ε, ``vb`` (learned variance only), ``loss``."""
        noise = torch.randn_like(x0) * mask.unsqueeze(-1)
        x_t = self.q_sample(x0, t, noise)
        out = model_fn(x_t, t, mask)
        d = x0.shape[-1]
        mse = masked_mean((out[..., :d] - noise) ** 2, mask)
        losses = {"mse": mse, "loss": mse}
        if self.learn_sigma:
            # the variance is trained through the bound with ε frozen, as in Improved DDPM
            frozen = torch.cat([out[..., :d].detach(), out[..., d:]], dim=-1)
            mean, log_var = self._schedule.p_mean_logvar(frozen, x_t, t, d)
            true_mean, true_log_var = self._schedule.q_posterior(x0, x_t, t)
            kl = normal_kl(true_mean, true_log_var, mean, log_var)
            vb = masked_mean(kl, mask) / math.log(2.0)
            nll = -masked_mean(
                -0.5 * (x0 - mean) ** 2 * (-log_var).exp()
                - 0.5 * log_var
                - 0.5 * math.log(2 * math.pi),
                mask,
            ) / math.log(2.0)
            vb = torch.where(t == 0, nll, vb) * self.num_timesteps / 1000.0
            losses["vb"] = vb
            losses["loss"] = mse + vb
        return losses


@dataclass
class Schedule:
    """Per-step constants of a (possibly respaced) chain of K steps."""

    timesteps: torch.Tensor  # (K,) original timestep of each chain index, for the network
    alphas_cumprod: torch.Tensor  # (K,)
    alphas_cumprod_prev: torch.Tensor  # (K,), 1 before the first step
    betas: torch.Tensor  # (K,)
    posterior_variance: torch.Tensor
    posterior_log_variance: torch.Tensor  # clipped at index 0
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    @classmethod
    def from_alphas_cumprod(cls, base_ac: np.ndarray, use: np.ndarray) -> Schedule:
        ac = base_ac[use]
        ac_prev = np.append(1.0, ac[:-1])
        betas = 1 - ac / ac_prev
        post_var = betas * (1 - ac_prev) / (1 - ac)
        post_log_var = (
            np.log(np.append(post_var[1], post_var[1:]))
            if len(ac) > 1
            else np.log(np.maximum(post_var, 1e-20))
        )
        t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
        return cls(
            timesteps=torch.tensor(use, dtype=torch.long),
            alphas_cumprod=t(ac),
            alphas_cumprod_prev=t(ac_prev),
            betas=t(betas),
            posterior_variance=t(post_var),
            posterior_log_variance=t(post_log_var),
            posterior_mean_coef1=t(betas * np.sqrt(ac_prev) / (1 - ac)),
            posterior_mean_coef2=t((1 - ac_prev) * np.sqrt(1 - betas) / (1 - ac)),
        )

    def __len__(self) -> int:
        return len(self.timesteps)

    def predict_x0(self, x_t: torch.Tensor, i: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        ac = _take(self.alphas_cumprod, i, x_t.ndim).to(x_t.dtype)
        return (x_t - (1 - ac).sqrt() * eps) / ac.sqrt()

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, i: torch.Tensor):
        c1 = _take(self.posterior_mean_coef1, i, x_t.ndim).to(x_t.dtype)
        c2 = _take(self.posterior_mean_coef2, i, x_t.ndim).to(x_t.dtype)
        log_var = _take(self.posterior_log_variance, i, x_t.ndim).to(x_t.dtype)
        return c1 * x0 + c2 * x_t, log_var.expand_as(x_t)

    def p_mean_logvar(self, out: torch.Tensor, x_t: torch.Tensor, i: torch.Tensor, d: int):
        """DDPM reverse Gaussian from the network output: mean and log variance."""
        eps = out[..., :d]
        x0 = self.predict_x0(x_t, i, eps)
        mean, post_log_var = self.q_posterior(x0, x_t, i)
        if out.shape[-1] > d:  # learned interpolation between β and the posterior variance
            frac = (out[..., d:] + 1) / 2
            max_log = torch.log(_take(self.betas, i, x_t.ndim)).to(x_t.dtype)
            log_var = frac * max_log + (1 - frac) * post_log_var
        else:
            log_var = post_log_var
        return mean, log_var


class Sampler:
    """DDPM or DDIM(η) on a respaced chain of ``sampling_steps`` steps.

    ``step_distribution`` gives the Gaussian of one reverse step and is differentiable,
    which is what the RL update recomputes; ``sample`` rolls the chain out and can return
    the trajectory (latents z_K..z_0, and each step's mean and std).
    """

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        sampler: str = "ddim",
        sampling_steps: int = 50,
        eta: float = 1.0,
    ):
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"unknown sampler '{sampler}' (ddim, ddpm)")
        if not 1 <= sampling_steps <= diffusion.num_timesteps:
            raise ValueError(f"sampling_steps must be in 1..{diffusion.num_timesteps}")
        self.diffusion = diffusion
        self.sampler = sampler
        self.eta = float(eta)
        # evenly spaced original timesteps, always including the last one (pure noise)
        use = np.unique(np.round(np.linspace(0, diffusion.num_timesteps - 1, sampling_steps)))
        self.schedule = Schedule.from_alphas_cumprod(diffusion.alphas_cumprod_np, use.astype(int))

    @property
    def num_steps(self) -> int:
        return len(self.schedule)

    def step_distribution(
        self, model_fn: ModelFn, x: torch.Tensor, i: int | torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of p(x_{i-1} | x_i) at chain index ``i`` (K-1 … 0).

        ``i`` is one index for the whole batch, or one per row (B,): the RL update stacks
        several denoising steps into one network call. The std is zero at the final step
        (i = 0), where the chain returns its mean.
        """
        b, _, d = x.shape
        if isinstance(i, torch.Tensor):
            idx = i.to(device=x.device, dtype=torch.long).reshape(b)
        else:
            idx = torch.full((b,), i, dtype=torch.long, device=x.device)
        out = model_fn(x, self.schedule.timesteps.to(x.device)[idx], mask)
        s = self.schedule
        last = (idx == 0).view(b, 1, 1)
        if self.sampler == "ddpm":
            mean, log_var = s.p_mean_logvar(out, x, idx, d)
            std = torch.where(last, 0.0, (0.5 * log_var).exp())
            if out.shape[-1] == d:  # fixed variance: one value per structure
                std = std[:, :1, :1]
            return mean, std
        eps = out[..., :d]
        x0 = s.predict_x0(x, idx, eps)
        ac = _take(s.alphas_cumprod, idx, 3)  # float64, as the constants were computed
        ac_prev = _take(s.alphas_cumprod_prev, idx, 3)
        sigma = self.eta * ((1 - ac_prev) / (1 - ac)).sqrt() * (1 - ac / ac_prev).sqrt()
        dir_coef = (1 - ac_prev - sigma**2).clamp(min=0.0).sqrt()
        mean = ac_prev.sqrt().to(x.dtype) * x0 + dir_coef.to(x.dtype) * eps
        return mean, sigma.to(x.dtype)

    @torch.no_grad()
    def sample(
        self,
        model_fn: ModelFn,
        noise: torch.Tensor,
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Run the chain from ``noise``; the trajectory holds K+1 latents and K means/stds."""
        m = mask.unsqueeze(-1).to(noise.dtype)
        x = noise * m
        latents, means, stds = [x], [], []
        for i in reversed(range(self.num_steps)):
            mean, std = self.step_distribution(model_fn, x, i, mask)
            z = sampling_noise(x.shape, generator, x.device, x.dtype)
            x = (mean + std * z) * m
            if return_trajectory:
                latents.append(x)
                means.append(mean)
                stds.append(std.expand_as(mean))
            if progress:
                progress(1)
        if not return_trajectory:
            return x, None
        return x, {
            "latents": torch.stack(latents, 1),  # (B, K+1, N, D)
            "means": torch.stack(means, 1),  # (B, K, N, D)
            "stds": torch.stack(stds, 1),  # (B, K, N, D)
            "chain_index": torch.arange(self.num_steps - 1, -1, -1),  # (K,)
        }

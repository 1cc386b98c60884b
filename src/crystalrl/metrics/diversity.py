"""Distances between sets of VAE features: Fréchet distance (metric) and MMD (reward).

The diversity metrics compare the distribution of generated features with the reference
distribution (1/(1 + Fréchet distance), higher = closer to the reference's spread). The
diversity rewards need a per-structure signal instead: how much each structure lowers
the MMD between the batch and the reference (Tang et al.-style individual MMD).
"""

from __future__ import annotations

import numpy as np
import torch


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3) -> torch.Tensor:
    """(x·y/d + 1)^degree for every pair of rows."""
    return (x @ y.T / x.shape[-1] + 1.0) ** degree


def mmd_individual(
    gen: torch.Tensor, ref: torch.Tensor, degree: int = 3, chunk: int = 8192
) -> torch.Tensor:
    """Per-structure reward MMD(batch without m) − MMD(batch), unbiased MMD², vectorised.

    With G = Σ_{i≠j} k(g_i, g_j), S_m = Σ_{j≠m} k(g_m, g_j), C = Σ_{i,r} k(g_i, r) and
    T_m = Σ_r k(g_m, r), removing structure m leaves G − 2 S_m and C − T_m. The reference
    self-term Σ k(r, r') is the same in both MMDs and cancels, so it is never computed —
    which is what makes this affordable against tens of thousands of reference vectors.
    Fewer than three structures give zeros (MMD without one of them is undefined).
    """
    m = gen.shape[0]
    if m < 3 or ref.shape[0] == 0:
        return torch.zeros(m, dtype=gen.dtype, device=gen.device)
    gen = gen.double()
    ref = ref.to(gen.device).double()
    n = ref.shape[0]
    k_gg = polynomial_kernel(gen, gen, degree)
    s = k_gg.sum(1) - k_gg.diagonal()
    g = s.sum()
    t = torch.zeros(m, dtype=gen.dtype, device=gen.device)
    for start in range(0, n, chunk):  # the (M, N) kernel in slices: bounded memory
        t += polynomial_kernel(gen, ref[start : start + chunk], degree).sum(1)
    c = t.sum()
    full = g / (m * (m - 1)) - 2 * c / (m * n)
    dropped = (g - 2 * s) / ((m - 1) * (m - 2)) - 2 * (c - t) / ((m - 1) * n)
    return (dropped - full).float()


def gaussian_stats(x: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of feature rows, float64."""
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    x = x.astype(np.float64)
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(
    stats_a: tuple[np.ndarray, np.ndarray], stats_b: tuple[np.ndarray, np.ndarray]
) -> float:
    """‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½) between two Gaussians."""
    from scipy.linalg import sqrtm

    mu_a, cov_a = stats_a
    mu_b, cov_b = stats_b
    covmean = sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(covmean):  # tiny imaginary parts from round-off
        covmean = covmean.real
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * covmean))
    return max(value, 0.0)


def diversity_score(gen: torch.Tensor, ref_stats: tuple[np.ndarray, np.ndarray]) -> float:
    """1 / (1 + Fréchet distance) of generated features to the reference; NaN below 2 rows."""
    if gen.shape[0] < 2:
        return float("nan")
    return 1.0 / (1.0 + frechet_distance(gaussian_stats(gen), ref_stats))

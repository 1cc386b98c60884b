"""The denoiser probes, judged with denoisers whose answers are known: an oracle that knows
the real crystals' latents, and one that predicts no noise at all."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystalrl.data.batch import CrystalBatch
from crystalrl.ldm.module import LDMModule
from crystalrl.ldm.probes import (
    eps_gap,
    first_site_distances,
    moved_atom_distances,
    renoise_and_denoise,
)


@pytest.fixture(scope="module")
def ldm(tiny_vae_ckpt) -> LDMModule:
    """An untrained LDM with position and lattice channels, which decode exactly."""
    torch.manual_seed(0)
    return LDMModule(
        vae_ckpt_path=tiny_vae_ckpt,
        denoiser=dict(hidden_size=32, depth=1, num_heads=2),
        position_scale=1.5,
        lattice_scale=1.0,
    ).eval()


@pytest.fixture(scope="module")
def crystals(perov_batch) -> list:
    return perov_batch.to_structures()[:8]


def oracle(ldm: LDMModule, structures: list):
    """A denoiser that knows the clean latents of ``structures``: its ε turns any noisy
    latent of them back into exactly those latents."""
    z0 = ldm.encode(CrystalBatch.from_structures(structures, dtype=torch.float32), sample=False)
    diffusion = ldm.diffusion

    def call(x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = diffusion.sqrt_ac[t].to(x.dtype).view(-1, 1, 1)
        b = diffusion.sqrt_one_minus_ac[t].to(x.dtype).view(-1, 1, 1)
        return (x - a * z0) / b * mask.unsqueeze(-1)

    return call


def no_noise(x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


def test_first_site_distance_takes_the_nearest_image(crystals):
    s = crystals[0]
    frac = s.frac_coords[0] + np.array([0.98, 0.0, 0.0])  # 0.02 of a cell length away
    d = first_site_distances([s], frac[None])
    assert d[0] == pytest.approx(0.02 * s.lattice.a, rel=1e-6)


def test_moved_atom_is_where_it_was_moved_without_denoising(ldm, crystals):
    out = moved_atom_distances(ldm, crystals, steps=(0,), displacement=0.5)
    assert out[0]["noisy"] == pytest.approx(0.5, abs=0.05)


def test_a_denoiser_that_knows_the_crystals_pulls_the_atom_back(ldm, crystals):
    out = moved_atom_distances(ldm, crystals, steps=(5, 50), model_fn=oracle(ldm, crystals))
    for row in out.values():
        assert row["denoised"] < 0.02
        assert row["noisy"] > 0.3


def test_eps_gap_is_positive_for_a_denoiser_that_knows_real_crystals(ldm, crystals):
    gap = eps_gap(ldm, crystals, steps=(50, 200), model_fn=oracle(ldm, crystals))
    assert set(gap) == {50, 200}
    assert all(v > 0.01 for v in gap.values())


def test_eps_gap_compares_at_equal_noise(ldm, crystals):
    """A denoiser that ignores its input errs equally on both: the noise is the same."""
    gap = eps_gap(ldm, crystals, steps=(50, 200), model_fn=no_noise)
    assert gap == {50: pytest.approx(0.0, abs=1e-7), 200: pytest.approx(0.0, abs=1e-7)}


def test_renoised_latents_come_back_exactly_under_an_oracle(ldm, crystals):
    batch = CrystalBatch.from_structures(crystals, dtype=torch.float32)
    exact = renoise_and_denoise(ldm, batch, starts=(100, 400), model_fn=oracle(ldm, crystals))
    blind = renoise_and_denoise(ldm, batch, starts=(100, 400), model_fn=no_noise)
    assert [r.t0 for r in exact] == [r.t0 for r in blind]
    assert all(abs(r.t0 - s) <= 10 for r, s in zip(exact, (100, 400), strict=True))
    assert all(r.latent_error < 1e-3 for r in exact)
    assert all(r.latent_error > 0.05 for r in blind)
    assert len(exact[0].structures) == len(crystals)

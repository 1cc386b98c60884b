"""How precisely an LDM denoises real crystals' latents, step by step of the noise schedule.

``python benchmarks/ldm_denoise.py [LDM_CKPT] [NUM_STRUCTURES]`` (defaults mp_20_ldm_base, 200)

Generated crystals can only be as physical as the last denoising steps are precise: the
decoder turns a latent that is off by ~0.1 of the latents' std into atoms that sit too
close. This separates the denoiser from the decoder. It encodes MP-20 val crystals, noises
their latents to step t0 and denoises them again (DDIM, eta 0, a step every ~10), then prints
the error to the clean latent and the decoded crystals' median shortest interatomic
distance (a physical MP-20 crystal: ~2.5 A), and the model's epsilon-MSE at a few single
steps. An ideal denoiser keeps the distance near that of plain VAE reconstructions for
small t0. Needs ``CRYSTALRL_DATA_DIR``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from crystalrl.data.datamodule import CrystalDataModule, collate
from crystalrl.data.parse import default_data_dir
from crystalrl.hub import resolve
from crystalrl.ldm.diffusion import Sampler
from crystalrl.ldm.module import load_ldm

START_STEPS = (50, 100, 200, 400, 800)
EPS_STEPS = (5, 20, 50, 100, 200, 500)
CHAIN_STEPS = 100  # a DDIM chain with a step every ~10 timesteps


def median_shortest_distance(batch) -> float:
    shortest = [
        np.min(s.distance_matrix + np.eye(len(s)) * 1e3)
        for s in batch.to_structures()
        if s is not None and len(s) > 1
    ]
    return float(np.median(shortest))


@torch.no_grad()
def main(path: str = "mp_20_ldm_base", n: int = 200) -> None:
    torch.set_num_threads(2)
    ldm = load_ldm(resolve(path))
    dm = CrystalDataModule(f"{default_data_dir()}/mp_20", limit_eval=n)
    ds = dm.dataset("val")
    batch = collate([ds[i] for i in range(len(ds))])
    z0, mask = ldm.encode(batch, sample=False), batch.mask
    m = mask.unsqueeze(-1)
    net = ldm.model_fn(use_ema=True)
    sampler = Sampler(ldm.diffusion, "ddim", CHAIN_STEPS, eta=0.0)
    chain_t = sampler.schedule.timesteps
    g = torch.Generator().manual_seed(0)
    print(f"{path}: {len(batch)} MP-20 val crystals")
    print(f"  originals            shortest distance {median_shortest_distance(batch):.2f} A")
    recon = median_shortest_distance(ldm.decode(z0, mask))
    print(f"  VAE reconstructions  shortest distance {recon:.2f} A")
    for start in START_STEPS:
        i0 = int((chain_t - start).abs().argmin())  # the chain step nearest to ``start``
        t0 = torch.full((len(z0),), int(chain_t[i0]))
        x = ldm.diffusion.q_sample(z0, t0, torch.randn(z0.shape, generator=g)) * m
        for i in reversed(range(i0 + 1)):
            x, _ = sampler.step_distribution(net, x, i, mask)  # eta 0: the mean is the step
            x = x * m
        rmse = ((x - z0)[mask] ** 2).mean().sqrt().item()
        dist = median_shortest_distance(ldm.decode(x, mask))
        noise_std = float(ldm.diffusion.sqrt_one_minus_ac[t0[0]])
        print(
            f"  from t0={int(t0[0]):4d} (noise std {noise_std:.2f}): error {rmse:.3f} latent std,"
            f" shortest distance {dist:.2f} A"
        )
    torch.manual_seed(0)
    for t in EPS_STEPS:
        tt = torch.full((len(z0),), t)
        mse = ldm.diffusion.training_losses(net, z0, mask, tt)["mse"].mean()
        print(f"  eps-MSE at t={t:3d}: {mse:.3f}")


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["mp_20_ldm_base"]), *(int(a) for a in sys.argv[2:3]))

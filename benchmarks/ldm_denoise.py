"""How precisely an LDM denoises real crystals' latents, step by step of the noise schedule.

``python benchmarks/ldm_denoise.py [LDM_CKPT] [NUM_STRUCTURES]`` (defaults mp_20_ldm_base, 200)

Generated crystals can only be as physical as the last denoising steps are precise: the
decoder turns a latent that is off by ~0.1 of the latents' std into atoms that sit too
close. This separates the denoiser from the decoder. It encodes MP-20 val crystals, noises
their latents to step t0 and denoises them again (DDIM, eta 0, every 10th step), then prints
the error to the clean latent and the decoded crystals' median shortest interatomic
distance (a physical MP-20 crystal: ~2.5 A), and the model's epsilon-MSE at a few single
steps. An ideal denoiser keeps the distance near that of plain VAE reconstructions for
small t0. Needs ``CRYSTALRL_DATA_DIR``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from crystalrl.data.datamodule import CrystalDataModule, collate, default_data_dir
from crystalrl.hub import resolve
from crystalrl.ldm.module import load_ldm

START_STEPS = (50, 100, 200, 400, 800)
EPS_STEPS = (5, 20, 50, 100, 200, 500)
STRIDE = 10


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
    ac = torch.tensor(ldm.diffusion.alphas_cumprod_np, dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    d = z0.shape[-1]
    print(f"{path}: {len(batch)} MP-20 val crystals")
    print(f"  originals            shortest distance {median_shortest_distance(batch):.2f} A")
    recon = median_shortest_distance(ldm.decode(z0, mask))
    print(f"  VAE reconstructions  shortest distance {recon:.2f} A")
    for t0 in START_STEPS:
        x = (ac[t0].sqrt() * z0 + (1 - ac[t0]).sqrt() * torch.randn(z0.shape, generator=g)) * m
        for t in range(t0, -1, -STRIDE):
            eps = net(x, torch.full((len(x),), t), mask)[..., :d]
            x0 = (x - (1 - ac[t]).sqrt() * eps) / ac[t].sqrt()
            if t < STRIDE:
                x = x0 * m
                break
            ap = ac[t - STRIDE]
            x = (ap.sqrt() * x0 + (1 - ap).sqrt() * eps) * m
        rmse = ((x - z0)[mask] ** 2).mean().sqrt().item()
        dist = median_shortest_distance(ldm.decode(x, mask))
        print(
            f"  from t0={t0:4d} (noise std {(1 - ac[t0]).sqrt():.2f}): error {rmse:.3f} latent std,"
            f" shortest distance {dist:.2f} A"
        )
    for t in EPS_STEPS:
        noise = torch.randn(z0.shape, generator=g) * m
        xt = ac[t].sqrt() * z0 + (1 - ac[t]).sqrt() * noise
        eps = net(xt, torch.full((len(xt),), t), mask)[..., :d]
        print(f"  eps-MSE at t={t:3d}: {((eps - noise)[mask] ** 2).mean():.3f}")


if __name__ == "__main__":
    main(*(sys.argv[1:2] or ["mp_20_ldm_base"]), *(int(a) for a in sys.argv[2:3]))

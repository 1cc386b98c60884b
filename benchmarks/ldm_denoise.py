"""How precisely an LDM denoises real crystals' latents, step by step of the noise schedule.

``python benchmarks/ldm_denoise.py [LDM_CKPT] [NUM_STRUCTURES] [--json]`` (defaults
``mp_20_ldm_base``, 200; needs ``CRYSTALRL_DATA_DIR``)

Generated crystals can only be as physical as the last denoising steps are precise: the
decoder turns a latent that is off by ~0.1 of the latents' std into atoms that sit too
close. :func:`crystalrl.ldm.probes.renoise_and_denoise` separates the denoiser from the
decoder: MP-20 val latents noised to t0 and denoised again. Printed per t0: the error to
the clean latent and the decoded crystals' median shortest interatomic distance (as
``crystalrl.evaluate`` reports it; a physical MP-20 crystal: ~2.5 Å), beside the originals
and plain VAE reconstructions; then the denoiser's ε-MSE at single steps
(:func:`crystalrl.ldm.probes.eps_mse`). An ideal denoiser keeps the distance near that of
the reconstructions for small t0.
"""

from __future__ import annotations

import argparse
import json

import torch

from crystalrl.checkpoint_registry import resolve
from crystalrl.data.datamodule import CrystalDataModule, collate
from crystalrl.data.parse import default_data_dir
from crystalrl.ldm.module import load_ldm
from crystalrl.ldm.probes import START_STEPS, eps_mse, renoise_and_denoise
from crystalrl.metrics.metrics import Metrics

EPS_STEPS = (5, 20, 50, 100, 200, 500)


def median_shortest_distance(structures: list) -> float:
    """As ``crystalrl.evaluate`` reports it (periodic images included)."""
    name = "median_shortest_distance"
    return float(Metrics([name], reference=None).compute(structures)[name])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ldm", nargs="?", default="mp_20_ldm_base")
    parser.add_argument("num", nargs="?", type=int, default=200, help="MP-20 val crystals")
    parser.add_argument("--json", action="store_true", help="print the JSON line only")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    ldm = load_ldm(resolve(args.ldm))
    ds = CrystalDataModule(f"{default_data_dir()}/mp_20", limit_eval=args.num).dataset("val")
    batch = collate([ds[i] for i in range(len(ds))])
    with torch.no_grad():
        recon = ldm.decode(ldm.encode(batch, sample=False), batch.mask).to_structures()
    result = {
        "ldm": args.ldm,
        "structures": len(batch),
        "originals_shortest_distance": median_shortest_distance(batch.to_structures()),
        "reconstructions_shortest_distance": median_shortest_distance(recon),
        "from_t0": [
            {
                "t0": r.t0,
                "noise_std": r.noise_std,
                "latent_error": r.latent_error,
                "shortest_distance": median_shortest_distance(r.structures),
            }
            for r in renoise_and_denoise(ldm, batch, START_STEPS)
        ],
        "eps_mse": {f"t={t}": v for t, v in eps_mse(ldm, batch, EPS_STEPS).items()},
    }
    if not args.json:
        print(f"{args.ldm}: {len(batch)} MP-20 val crystals")
        for name, label in (("originals", "originals"), ("reconstructions", "VAE reconstructions")):
            distance = result[f"{name}_shortest_distance"]
            print(f"  {label:20s} shortest distance {distance:.2f} Å")
        for row in result["from_t0"]:
            print(
                f"  from t0={row['t0']:4d} (noise std {row['noise_std']:.2f}): error "
                f"{row['latent_error']:.3f} latent std, shortest distance "
                f"{row['shortest_distance']:.2f} Å"
            )
        for t, mse in result["eps_mse"].items():
            print(f"  eps-MSE at {t:6s}: {mse:.3f}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

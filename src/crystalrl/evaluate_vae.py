"""Reconstruction quality of a VAE: StructureMatcher match rate and per-field errors.

``python -m crystalrl.evaluate_vae vae_ckpt_path=... split=test num_structures=1000 [--json]``
"""

from __future__ import annotations

import time

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from crystalrl.cli import report, run_command
from crystalrl.config import CONFIG_DIR


def evaluate_reconstruction(
    vae,
    split,
    num_structures: int,
    batch_size: int = 500,
    match_timeout: float = 30.0,
    num_workers: int | None = None,
) -> dict:
    """Encode (posterior mean) and decode the first ``num_structures`` of a parsed split."""
    from crystalrl.data.datamodule import CrystalDataset, collate
    from crystalrl.metrics.matching import structures_match
    from crystalrl.metrics.parallel import map_with_timeout
    from crystalrl.vae.model import wrapped_diff

    n = min(num_structures, len(split))
    ds = CrystalDataset(split.subset(np.arange(n)))
    originals, recons = [], []
    type_acc, all_types, coord_sq, len_err, ang_err = [], [], [], [], []
    start = time.perf_counter()
    for i in range(0, n, batch_size):
        batch = collate([ds[j] for j in range(i, min(n, i + batch_size))])
        rec = vae.vae.reconstruct(batch)
        mask = batch.mask
        same = rec.atom_types.eq(batch.atom_types) | ~mask
        type_acc.append(same[mask].float().numpy())
        all_types.append(same.all(1).float().numpy())
        d = wrapped_diff(rec.frac_coords.float(), batch.frac_coords)
        coord_sq.append((d**2).sum(-1)[mask].numpy())
        len_err.append((rec.lengths.float() - batch.lengths).abs().numpy())
        ang_err.append((rec.angles.float() - batch.angles).abs().numpy())
        originals += collate(
            [ds[j] for j in range(i, min(n, i + batch_size))], dtype=torch.float64
        ).to_structures()
        recons += rec.to_structures()
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    matches = map_with_timeout(
        structures_match,
        list(zip(originals, recons, strict=True)),
        timeout=match_timeout,
        num_workers=num_workers,
        default=False,
    )
    return {
        "num_structures": n,
        "match_rate": float(np.mean(matches)) if n else 0.0,
        "type_accuracy": float(np.concatenate(type_acc).mean()),
        "all_types_correct": float(np.concatenate(all_types).mean()),
        "frac_coord_rmse": float(np.sqrt(np.concatenate(coord_sq).mean())),
        "lengths_mae_angstrom": float(np.concatenate(len_err).mean()),
        "angles_mae_degrees": float(np.concatenate(ang_err).mean()),
        "reconstruct_seconds": round(decode_s, 2),
        "match_seconds": round(time.perf_counter() - start, 2),
    }


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate_vae")
def main(cfg: DictConfig) -> dict:
    from crystalrl.data.parse import find_split_file, read_split
    from crystalrl.vae.module import load_vae

    torch.manual_seed(cfg.seed)
    vae = load_vae(cfg.vae_ckpt_path, key="vae_ckpt_path")
    split = read_split(
        find_split_file(cfg.data.data_dir, cfg.split, key="data.data_dir"),
        max_atoms=cfg.data.max_atoms,
        niggli=cfg.data.niggli,
        cache_dir=cfg.data.cache_dir,
    )
    result = evaluate_reconstruction(
        vae, split, cfg.num_structures, cfg.batch_size, cfg.match_timeout, cfg.num_workers
    )
    result.update(checkpoint=str(cfg.vae_ckpt_path), split=cfg.split)
    report(
        result,
        f"VAE reconstruction on {cfg.split} ({result['num_structures']} structures)",
        lambda v: f"{v:.4f}" if isinstance(v, float) else str(v),
    )
    return result


def cli() -> None:
    """Console script ``crystalrl-evaluate-vae``; ``python -m crystalrl.evaluate_vae``
    runs it too, so the two never differ."""
    run_command(main)


if __name__ == "__main__":
    cli()

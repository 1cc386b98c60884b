"""Build (or check) the cached reference data: energies, convex hull, VAE features.

``python -m crystalrl.build_reference [reference_dataset=mp-20+mp-bandgap] [--json]``. Every part is
cached under ``$CRYSTALRL_CACHE_DIR/reference`` keyed by the content of its inputs;
running the command again only reports what is there. Energies are reused from the
tables shipped in ``reference/`` when they match, so a fresh checkout skips the potential.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from crystalrl.cli import json_output, report, run_command
from crystalrl.config import CONFIG_DIR

log = logging.getLogger("crystalrl")


def build(
    reference_dataset: str,
    potential: Any = None,
    hull: dict | None = None,
    vae: Any = None,
    export_energies: str | None = None,
    data_dir: str | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build every part of a reference; returns counts and the seconds each part took."""
    from crystalrl.metrics.matcher_cells import MatcherCells
    from crystalrl.reference import Reference
    from crystalrl.reference.hull import HULL_DEFAULTS

    ref = Reference(
        reference_dataset,
        data_dir=data_dir,
        potential=potential,
        cache_dir=cache_dir,
        hull=hull,
        progress=progress,
    )
    out: dict[str, Any] = {
        "reference_dataset": reference_dataset,
        "folders": [str(f) for f in ref.dataset_dirs],
    }
    t = time.perf_counter()
    out["num_structures"] = len(ref)
    out["num_formulas"] = len(ref.by_formula)
    out["num_duplicates_dropped"] = ref.num_duplicates
    out["structures_seconds"] = round(time.perf_counter() - t, 2)  # parsing and de-duplication
    t = time.perf_counter()
    MatcherCells(ref)
    out["matcher_cells_seconds"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    energies = ref.energies
    out["potential"] = ref.energy_model.key
    out["energies_seconds"] = round(time.perf_counter() - t, 2)
    out["num_failed_energies"] = int(np.isnan(energies).sum())
    if export_energies:
        out["energy_table"] = str(ref.energy_table.save(export_energies))

    t = time.perf_counter()
    h = ref.hull
    out["hull_seconds"] = round(time.perf_counter() - t, 2)
    out["hull_kind"] = {**HULL_DEFAULTS, **(hull or {})}["kind"]
    out["num_stable_entries"] = len(h.stable_entries)
    out["num_dft_labels"] = int(np.isfinite(ref.dft_formation_energies).sum())
    out["elemental_prototypes"] = {
        el: name
        for el, (_, name) in sorted(h.elemental.items())
        if name not in ("reference", "dft")
    }

    if vae is not None:
        t = time.perf_counter()
        feats = ref.features(vae)
        out["features_seconds"] = round(time.perf_counter() - t, 2)
        out["feature_dims"] = {k: int(v.shape[1]) for k, v in feats.items()}
    out["cache_dir"] = str(ref.cache_dir)
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="build_reference")
def main(cfg: DictConfig) -> dict:
    import torch

    from crystalrl.config_values import load_vae_or_none, optional, potential_spec

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    vae = load_vae_or_none(optional(cfg, "vae_ckpt_path"))
    if vae is None:
        log.warning("no VAE: reference features are not built")
    potential = potential_spec(cfg)
    result = build(
        str(cfg.reference_dataset),
        potential=potential,
        hull=OmegaConf.to_container(cfg.hull, resolve=True),
        vae=vae,
        export_energies=cfg.export_energies,
        data_dir=cfg.paths.data_dir,
        cache_dir=cfg.paths.cache_dir,
        progress=not json_output(),
    )
    report(result, f"reference {cfg.reference_dataset}")
    return result


def cli() -> None:
    """Console script ``crystalrl-build-reference``; ``python -m crystalrl.build_reference``
    runs it too, so the two never differ."""
    run_command(main)


if __name__ == "__main__":
    cli()

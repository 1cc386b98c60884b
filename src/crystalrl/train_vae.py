"""Stage 1: train the crystal VAE.

``python -m crystalrl.train_vae experiment=mp_20/vae_dng [key=value ...]``
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from crystalrl.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train_vae")
def main(cfg: DictConfig) -> dict:
    from crystalrl.training import export_checkpoint, fit, setup_run

    setup_run(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(
        cfg.vae_module, num_atoms_distribution=datamodule.num_atoms_distribution(), _convert_="all"
    )
    if cfg.get("init_weights"):  # a resumed run then overwrites these with its own
        from crystalrl.vae.module import load_vae

        module.load_state_dict(load_vae(cfg.init_weights).state_dict())
        print(f"Initialised from {cfg.init_weights}")
    result = fit(cfg, module, datamodule)
    if cfg.get("export_path"):
        src = result["best_ckpt"] or result["last_ckpt"]
        export_checkpoint(src, cfg.export_path)
        print(f"Exported {src} -> {cfg.export_path}")
    return result


if __name__ == "__main__":
    main()

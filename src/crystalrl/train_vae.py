"""Stage 1: train the crystal VAE.

``python -m crystalrl.train_vae experiment=mp_20/vae_dng [key=value ...]``
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from crystalrl.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train_vae")
def main(cfg: DictConfig) -> dict:
    from crystalrl.early_stop import stops_cleanly

    with stops_cleanly(cfg.paths.output_dir):
        return run(cfg)


def run(cfg: DictConfig) -> dict:
    """The run; a user error before training leaves no empty run folder."""
    from crystalrl.checkpoint_io import export_checkpoint
    from crystalrl.training import fit, instantiate_stage, setup_run

    setup_run(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    module = instantiate_stage(cfg.vae_module, datamodule)
    if cfg.get("init_weights"):  # a resumed run then overwrites these with its own
        from crystalrl.vae.module import load_vae

        module.load_state_dict(load_vae(cfg.init_weights, key="init_weights").state_dict())
        print(f"Initialised from {cfg.init_weights}")
    result = fit(cfg, module, datamodule, export=export_checkpoint)
    return result


def cli() -> None:
    """Console script ``crystalrl-train-vae``; ``python -m crystalrl.train_vae``
    runs it too, so the two never differ."""
    main()


if __name__ == "__main__":
    cli()

"""Stage 2: train the latent diffusion model on the latents of a frozen VAE.

``python -m crystalrl.train_ldm experiment=mp_20/ldm_null [key=value ...]``
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from crystalrl.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train_ldm")
def main(cfg: DictConfig) -> dict:
    from crystalrl.early_stop import stops_cleanly

    with stops_cleanly(cfg.paths.output_dir):
        return run(cfg)


def run(cfg: DictConfig) -> dict:
    """The run; a user error before training leaves no empty run folder."""
    from crystalrl.ldm.exporting import export_ldm
    from crystalrl.training import fit, instantiate_stage, setup_run

    setup_run(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    module = instantiate_stage(cfg.ldm_module, datamodule)
    if cfg.get("init_weights"):  # a resumed run then overwrites these with its own
        from crystalrl.ldm.module import load_ldm

        src = load_ldm(cfg.init_weights, key="init_weights")
        weights = (src.ema.module if src.ema is not None else src.denoiser).state_dict()
        module.denoiser.load_state_dict(weights)
        if module.ema is not None:
            module.ema.module.load_state_dict(weights)
        module.latent_std.fill_(float(src.latent_std))
        print(f"Initialised from {cfg.init_weights}")
    result = fit(cfg, module, datamodule, export=export_ldm)
    return result


def cli() -> None:
    """Console script ``crystalrl-train-ldm``; ``python -m crystalrl.train_ldm``
    runs it too, so the two never differ."""
    main()


if __name__ == "__main__":
    cli()

"""Train a property predictor on frozen VAE features.

``python -m crystalrl.train_predictor experiment=mp_bandgap/predictor_band_gap``
"""

from __future__ import annotations

import json

import hydra
import numpy as np
from omegaconf import DictConfig

from crystalrl.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train_predictor")
def main(cfg: DictConfig) -> dict:
    from crystalrl.early_stop import stops_cleanly

    with stops_cleanly(cfg.paths.output_dir):
        return run(cfg)


def run(cfg: DictConfig) -> dict:
    """The run; a user error before training leaves no empty run folder."""
    import lightning as L

    from crystalrl.checkpoint_io import export_checkpoint
    from crystalrl.predictor.module import load_predictor
    from crystalrl.training import fit, setup_run

    setup_run(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    names = list(cfg.data.target_names)
    if not names:
        raise ValueError("set data.target_names, e.g. data.target_names=[band_gap]")
    train = datamodule.split("train")
    stats = {}
    if cfg.predictor_module.target_mean is None:
        stats["target_mean"] = [float(np.mean(train.properties[n])) for n in names]
    if cfg.predictor_module.target_std is None:
        stats["target_std"] = [float(np.std(train.properties[n]) or 1.0) for n in names]
    module = hydra.utils.instantiate(cfg.predictor_module, **stats, _convert_="all")
    result = fit(cfg, module, datamodule, export=export_checkpoint)
    best = result["best_ckpt"] or result["last_ckpt"]
    if cfg.get("test", True):
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
        metrics = trainer.test(load_predictor(best), datamodule=datamodule, verbose=False)[0]
        result["test"] = metrics
        print("Test:", json.dumps({k: round(float(v), 4) for k, v in metrics.items()}))
    return result


def cli() -> None:
    """Console script ``crystalrl-train-predictor``; ``python -m crystalrl.train_predictor``
    runs it too, so the two never differ."""
    main()


if __name__ == "__main__":
    cli()

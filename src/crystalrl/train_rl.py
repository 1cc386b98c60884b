"""Stage 3: fine-tune the LDM with GRPO toward a reward.

``python -m crystalrl.train_rl experiment=mp_20/rl_dng [key=value ...]``, for example
``rl_module.rl_configs.num_group_samples=128 data.batch_size=8``.
"""

from __future__ import annotations

import warnings

import hydra
from omegaconf import DictConfig

from crystalrl.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train_rl")
def main(cfg: DictConfig) -> dict:
    from crystalrl.ldm.export import export_ldm
    from crystalrl.training import fit, setup_run

    setup_run(cfg)
    # RLModule.train keeps the LDM in eval mode on purpose (see there)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.rl_module, _convert_="all")
    result = fit(cfg, module, datamodule)
    if cfg.get("export_path"):
        src = result["best_ckpt"] or result["last_ckpt"]
        export_ldm(src, cfg.export_path)
        print(f"Exported {src} -> {cfg.export_path}")
    return result


if __name__ == "__main__":
    main()

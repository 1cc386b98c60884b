from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from crystalrl.config import CONFIG_DIR


@pytest.fixture(autouse=True)
def _clear_hydra():
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=True)


def test_train_vae_composes_with_experiment_and_override(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    cfg = _compose(
        "train_vae",
        ["experiment=mp_20/vae_dng", "data.batch_size=8", "vae_module.model.d_model=64"],
    )
    assert cfg.data.batch_size == 8
    assert cfg.vae_module.model.d_model == 64
    assert cfg.vae_module.model.latent_dim == 8
    assert Path(cfg.data.data_dir) == tmp_path / "mp_20"
    assert cfg.scheduler.name == "cosine"
    assert set(cfg.logger) == {"csv", "tensorboard"}
    assert cfg.paths.output_dir.endswith("train_vae/vae_dng")


def test_data_dir_falls_back_to_data(monkeypatch):
    monkeypatch.delenv("CRYSTALRL_DATA_DIR", raising=False)
    cfg = _compose("train_vae", [])
    assert cfg.data.data_dir == "data/mp_20"


def test_paper_config_and_wandb_logger_compose():
    cfg = _compose("train_vae", ["experiment=mp_20/vae_dng_paper", "logger=wandb"])
    assert cfg.vae_module.model.d_model == 512 and cfg.vae_module.model.encoder_layers == 8
    assert cfg.logger.wandb.offline is True


def test_hub_resolver_in_a_config_names_the_known_checkpoints():
    from omegaconf.errors import InterpolationResolutionError

    cfg = OmegaConf.create({"ckpt": "${hub:no_such_model}"})
    with pytest.raises(InterpolationResolutionError, match="no_such_model.*Known checkpoints"):
        _ = cfg.ckpt


def test_band_gap_experiment_builds_its_three_reward_components(monkeypatch, tmp_path):
    from hydra.utils import instantiate

    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    cfg = _compose("train_rl", ["experiment=mp_bandgap/rl_bandgap_cpu"])
    reward = instantiate(cfg.rl_module.reward_fn)
    assert reward.names == ["band_gap", "energy", "composition_diversity"]
    band_gap = reward.components[0]
    assert (band_gap.target_value, band_gap.clip_min) == (3.0, 0.0)
    assert Path(band_gap.predictor).name == "mp_bandgap_predictor.ckpt"
    assert [c.weight for c in reward.components] == [1.0, 1.0, 0.5]
    assert cfg.rl_module.rl_configs.num_group_samples == 32
    assert cfg.export_path.endswith("mp_bandgap_ldm_rl.ckpt")


def test_cpu_dng_experiment_keeps_the_paper_reward_but_caps_energy_at_10(monkeypatch, tmp_path):
    from hydra.utils import instantiate

    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    paper = instantiate(_compose("train_rl", ["experiment=mp_20/rl_dng"]).rl_module.reward_fn)
    cfg = _compose("train_rl", ["experiment=mp_20/rl_dng_cpu"])
    cpu = instantiate(cfg.rl_module.reward_fn)
    assert cpu.names == paper.names
    assert [c.weight for c in cpu.components] == [c.weight for c in paper.components]
    caps = [getattr(c, "cap", None) for c in (paper.components[1], cpu.components[1])]
    assert caps == [1.0, 10.0]
    assert cfg.rl_module.rl_configs.num_group_samples == 32

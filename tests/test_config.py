from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from crystalrl.config import CONFIG_DIR
from crystalrl.reference.datasets import DEFAULT_REFERENCE


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


def test_cpu_dng_experiment_keeps_the_paper_reward(monkeypatch, tmp_path):
    from hydra.utils import instantiate

    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    paper = instantiate(_compose("train_rl", ["experiment=mp_20/rl_dng"]).rl_module.reward_fn)
    cfg = _compose("train_rl", ["experiment=mp_20/rl_dng_cpu"])
    cpu = instantiate(cfg.rl_module.reward_fn)
    assert cpu.names == paper.names
    assert [c.weight for c in cpu.components] == [c.weight for c in paper.components]
    caps = [getattr(c, "cap", None) for c in (paper.components[1], cpu.components[1])]
    assert caps == [1.0, 1.0]
    assert cfg.rl_module.rl_configs.num_group_samples == 32


def test_the_rl_config_lists_every_rl_option_at_its_default(monkeypatch, tmp_path):
    """The config is where users read and override the options: one missing there cannot
    be set from the command line without a '+', and a default that differs from the
    dataclass's would make the same run behave differently from Python and from the CLI."""
    from dataclasses import asdict

    from crystalrl.rl.config import GRPOConfig, OptimizerConfig, RolloutConfig

    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    rl = OmegaConf.to_container(_compose("train_rl", []).rl_module)
    assert rl["rl_configs"] == asdict(GRPOConfig())
    assert rl["sampling_configs"] == asdict(RolloutConfig())
    optimizer = {k: v for k, v in rl["optimizer"].items() if not k.startswith("_")}
    assert optimizer == asdict(OptimizerConfig())


# ---------------------------------------------------------------------- the reward configs
REWARD = "rl_module.reward_fn.components"
LIST_FORM = (
    f"{REWARD}=[{{_target_: crystalrl.rewards.components.EnergyReward, weight: 2.0,"
    " max_e_above_hull: 3.0}, {_target_: crystalrl.rewards.components.CustomReward,"
    " fn: crystalrl.rewards.functions.atomic_density}]"
)


GUARDS = "rl_module.reward_fn.guards"


def _reward(overrides: list[str]):
    from hydra.utils import instantiate

    return instantiate(_compose("train_rl", overrides).rl_module.reward_fn, _convert_="all")


def test_the_dng_component_list_is_written_once_in_the_configs():
    configs = Path(CONFIG_DIR)
    writers = [p for p in configs.rglob("*.yaml") if "CreativityReward" in p.read_text()]
    assert writers == [configs / "reward_fn" / "dng.yaml"]


def test_paper_and_cpu_dng_compose_the_same_reward(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    names = ["creativity", "energy", "structure_diversity", "composition_diversity"]
    paper = _compose("train_rl", ["experiment=mp_20/rl_dng"]).rl_module.reward_fn
    cpu = _compose("train_rl", ["experiment=mp_20/rl_dng_cpu"]).rl_module.reward_fn
    assert list(paper.components) == names
    assert paper.components.energy.max_e_above_hull == 1
    assert OmegaConf.to_container(cpu) == OmegaConf.to_container(paper)


def test_guards_are_switched_as_a_group_and_one_by_one(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    assert _reward(["experiment=mp_20/rl_dng"]).guards == {}
    guarded = _reward(["experiment=mp_20/rl_dng_guarded_cpu"])
    assert list(guarded.guards) == [
        "single_element", "deep_below_hull", "hull_support", "cell_sanity",
        "composition_occurrence",
    ]  # fmt: skip
    # the same reward as rl_dng_cpu, only guarded
    plain = _compose("train_rl", ["experiment=mp_20/rl_dng_cpu"]).rl_module.reward_fn
    assert guarded.names == list(plain.components)
    group = "reward_guards@rl_module.reward_fn.guards=all"
    fewer = _reward(["experiment=mp_20/rl_dng", group, f"{GUARDS}.cell_sanity=null"])
    assert "cell_sanity" not in fewer.guards and len(fewer.guards) == 4
    looser = _reward(["experiment=mp_20/rl_dng", group, f"{GUARDS}.hull_support.min_support=3"])
    assert looser.guards["hull_support"].min_support == 3


def test_one_component_is_changed_or_dropped_by_name_on_the_command_line(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    capped = _reward(["experiment=mp_20/rl_dng", f"{REWARD}.energy.max_e_above_hull=5"])
    assert [getattr(c, "cap", None) for c in capped.components] == [None, 5.0, None, None]
    fewer = _reward(["experiment=mp_20/rl_dng", f"{REWARD}.structure_diversity=null"])
    assert fewer.names == ["creativity", "energy", "composition_diversity"]


def test_the_seeds_list_form_on_the_command_line_replaces_the_components(monkeypatch, tmp_path):
    from hydra.errors import ConfigCompositionException

    from crystalrl.cli import replace_list_overrides
    from crystalrl.rewards import CustomReward, EnergyReward, ReinforceReward

    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigCompositionException):  # what Hydra does with it unaided
        _compose("train_rl", ["experiment=mp_20/rl_dng", LIST_FORM])
    argv = replace_list_overrides(["experiment=mp_20/rl_dng", LIST_FORM], [REWARD])
    assert argv[1:] == [f"~{REWARD}", f"+{LIST_FORM}"]
    # anything else passes through untouched
    assert replace_list_overrides(["a=[1]", f"{REWARD}.energy.weight=2"], [REWARD]) == [
        "a=[1]",
        f"{REWARD}.energy.weight=2",
    ]
    reward = _reward(argv)
    assert isinstance(reward, ReinforceReward) and reward.names == ["energy", "custom"]
    energy, custom = reward.components
    assert isinstance(energy, EnergyReward) and isinstance(custom, CustomReward)
    assert (energy.weight, energy.cap) == (2.0, 3.0)
    assert reward.normalize_fn == "std" and reward.reference_dataset == DEFAULT_REFERENCE


def test_a_reward_chosen_over_the_custom_example_keeps_its_reference(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    example = _compose("train_rl", ["experiment=rl_custom_reward"]).rl_module.reward_fn
    assert example.reference_dataset is None  # the density reward needs none
    chosen = ["experiment=rl_custom_reward", "reward_fn@rl_module.reward_fn=dng"]
    dng = _compose("train_rl", chosen).rl_module.reward_fn
    assert dng.reference_dataset == DEFAULT_REFERENCE and "custom" not in dng.components


def test_every_config_defaults_to_the_one_default_reference():
    """The default reference is written in the configs too; they must agree with the code."""
    for name in (
        "evaluate.yaml",
        "build_reference.yaml",
        "reward_fn/dng.yaml",
        "reward_fn/band_gap.yaml",
    ):
        assert OmegaConf.load(Path(CONFIG_DIR) / name).reference_dataset == DEFAULT_REFERENCE, name


def test_a_yaml_list_over_the_composed_mapping_is_explained(monkeypatch, tmp_path):
    from hydra.errors import ConfigCompositionException

    from crystalrl.cli import fails_on_list_onto_mapping
    from crystalrl.train_rl import LIST_FORM_HINT, WITHOUT_COMPOSED_REWARD

    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    user = tmp_path / "user_configs" / "experiment"
    user.mkdir(parents=True)
    seed_style = """# @package _global_
defaults:
  - /experiment/mp_20/rl_dng{extra}
rl_module:
  reward_fn:
    _target_: crystalrl.rewards.reward.ReinforceReward
    reference_dataset: null
    components:
      - _target_: crystalrl.rewards.components.CustomReward
        weight: 2.0
"""
    (user / "mine.yaml").write_text(seed_style.format(extra=""))
    (user / "fixed.yaml").write_text(
        seed_style.format(extra="\n  - override /reward_fn@rl_module.reward_fn: null")
    )
    search = f"hydra.searchpath=[file://{user.parent}]"
    with pytest.raises(ConfigCompositionException):
        _compose("train_rl", [search, "experiment=mine"])
    assert fails_on_list_onto_mapping(
        "train_rl", [search, "experiment=mine"], WITHOUT_COMPOSED_REWARD
    )
    assert not fails_on_list_onto_mapping(
        "train_rl", [search, "experiment=fixed"], WITHOUT_COMPOSED_REWARD
    )
    assert not fails_on_list_onto_mapping("train_rl", ["data.nosuch=1"], WITHOUT_COMPOSED_REWARD)
    assert "override /reward_fn@rl_module.reward_fn: null" in LIST_FORM_HINT
    # the remedy the hint names composes the user's reward as written
    reward = _reward([search, "experiment=fixed"])
    assert reward.names == ["custom"] and reward.components[0].weight == 2.0
    assert reward.reference_dataset is None


def test_reward_configs_are_selected_by_name(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    density = _reward(["experiment=mp_20/rl_dng", "reward_fn@rl_module.reward_fn=atomic_density"])
    assert density.names == ["custom"]
    custom = _reward(["experiment=rl_custom_reward"])
    assert custom.names == ["custom"] and custom.reference_dataset is None
    assert custom.components[0].normalize_fn is None
    assert custom.components[0].fn.__name__ == "valid_atomic_density"
    guarded = _reward(["experiment=mp_bandgap/rl_bandgap_guarded_cpu"])
    assert guarded.names == ["band_gap", "energy", "composition_diversity", "density", "smact"]
    assert guarded.components[1].floor == -0.2 and guarded.components[2].weight == 1.0


# ---------------------------------------------------------------------- the LR schedule
def _closed_form_factor(step: int, name: str, warmup: int, total: int, min_ratio: float) -> float:
    """The schedule in closed form: linear warm-up, a cosine down to the floor, then the floor."""
    import math

    if warmup and step < warmup:
        return (step + 1) / warmup
    if name == "cosine" and total > warmup:
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


@pytest.mark.parametrize(
    ("name", "warmup", "total"),
    [("cosine", 500, 4000), ("cosine", 0, 300), ("cosine", 1, 50), ("constant", 300, 0)],
)
def test_lr_schedule_is_warm_up_then_cosine_to_min_lr_ratio(name, warmup, total):
    import torch

    from crystalrl.optimization import build_scheduler

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = build_scheduler(opt, {"name": name, "total_steps": total, "min_lr_ratio": 0.05}, warmup)
    checks = {0, 1, warmup // 2, warmup - 1, warmup, warmup + 1, (warmup + total) // 2, total}
    checks |= {total + 10, total + 500}
    for step in range(max(checks) + 1):
        if step in checks:
            expected = 2e-4 * _closed_form_factor(step, name, warmup, total, 0.05)
            assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9), step
        opt.step()
        sched.step()


def test_rl_cosine_uses_the_same_schedule():
    from types import SimpleNamespace

    import torch

    from crystalrl.rl.module import RLModule

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-5)
    module = SimpleNamespace(
        ldm=SimpleNamespace(denoiser=torch.nn.Linear(1, 1)),
        optimizer_factory=lambda params: opt,
        hparams=SimpleNamespace(
            scheduler={"name": "cosine", "total_steps": 10, "min_lr_ratio": 0.1}
        ),
    )
    sched = RLModule.configure_optimizers(module)["lr_scheduler"]["scheduler"]
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6)  # min_lr_ratio, not 0


@pytest.mark.slow
def test_train_rl_command_prints_the_caps_and_takes_the_list_form(monkeypatch, tmp_path):
    """The list form as a user types it is a documented contract of the command line, so it
    is checked through the command itself, not a composed config."""
    import os
    import subprocess
    import sys

    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))

    def job(*overrides: str) -> dict:
        cmd = [sys.executable, "-m", "crystalrl.train_rl", *overrides, "--cfg", "job"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        assert done.returncode == 0, done.stderr[-2000:]
        return OmegaConf.to_container(OmegaConf.create(done.stdout))["rl_module"]["reward_fn"]

    wide = f"{REWARD}.energy.max_e_above_hull=10"
    cpu = job("experiment=mp_20/rl_dng_cpu", wide)["components"]["energy"]
    paper = job("experiment=mp_20/rl_dng")["components"]["energy"]
    assert (cpu["max_e_above_hull"], paper["max_e_above_hull"]) == (10, 1.0)
    listed = job("experiment=mp_20/rl_dng", LIST_FORM)["components"]
    assert [c["_target_"].rsplit(".", 1)[1] for c in listed] == ["EnergyReward", "CustomReward"]

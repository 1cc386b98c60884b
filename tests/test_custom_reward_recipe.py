"""The README's custom-reward recipe, as written, on experiment=rl_custom_reward: the
experiment's own reward must not leak into the one the user selects."""

from __future__ import annotations

import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from pymatgen.core import Lattice, Structure

from crystalrl.config import CONFIG_DIR

MY_REWARDS = """
def small_cells(structures):
    return [-s.volume / len(s) for s in structures]


class DensityAbove:
    def __init__(self, threshold=0.05):
        self.threshold = threshold

    def __call__(self, structures):
        return [float(len(s) / s.volume > self.threshold) for s in structures]
"""
#: configs/reward_fn/small_cells.yaml of the README
SMALL_CELLS = """\
_target_: crystalrl.rewards.reward.ReinforceReward
normalize_fn: std
reference_dataset: null
components:
  small_cells:
    _target_: crystalrl.rewards.components.CustomReward
    fn: my_rewards.small_cells   # a dotted path or any callable
    weight: 1.0
"""
NACL = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
DENSE = Structure(Lattice.cubic(2.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def user_reward(tmp_path, monkeypatch):
    """The user's module on the path and their reward file in a config folder of theirs."""
    (tmp_path / "my_rewards.py").write_text(MY_REWARDS)
    (tmp_path / "configs" / "reward_fn").mkdir(parents=True)
    (tmp_path / "configs" / "reward_fn" / "small_cells.yaml").write_text(SMALL_CELLS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    GlobalHydra.instance().clear()
    yield tmp_path / "configs"
    GlobalHydra.instance().clear()
    sys.modules.pop("my_rewards", None)


def _compose(configs, *overrides):
    """The example experiment with the user's reward chosen over it, as the README says."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            "train_rl",
            [
                "experiment=rl_custom_reward",
                "reward_fn@rl_module.reward_fn=small_cells",
                f"hydra.searchpath=[file://{configs}]",
                *overrides,
            ],
        )


def _reward(configs, *overrides):
    cfg = _compose(configs, *overrides)
    from crystalrl.rewards.reward import RewardOutput

    reward = instantiate(cfg.rl_module.reward_fn, _convert_="all")
    reward.setup(vae=None, device="cpu")
    return cfg, RewardOutput.of(reward([NACL, DENSE]))


def test_the_recipe_with_a_function_replaces_the_experiments_reward(user_reward):
    cfg, out = _reward(user_reward)
    assert list(cfg.rl_module.reward_fn.components) == ["small_cells"]  # no leaked `custom`
    values = out.components["small_cells"].tolist()
    assert values == pytest.approx([-NACL.volume / 2, -DENSE.volume / 2])


def test_the_recipe_with_a_class_given_as_a_target_node(user_reward):
    fn = "rl_module.reward_fn.components.small_cells.fn"
    _, out = _reward(user_reward, f"{fn}={{_target_: my_rewards.DensityAbove, threshold: 0.1}}")
    assert out.components["small_cells"].tolist() == [0.0, 1.0]


def test_the_experiment_alone_keeps_its_reward(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train_rl", ["experiment=rl_custom_reward"])
    GlobalHydra.instance().clear()
    custom = cfg.rl_module.reward_fn.components.custom
    assert custom.fn == "crystalrl.rewards.functions.valid_atomic_density"
    assert custom.normalize_fn is None and list(cfg.rl_module.reward_fn.components) == ["custom"]


def test_the_recipe_with_a_class_given_by_its_dotted_path(user_reward):
    """A class named by path is instantiated without arguments (its defaults)."""
    fn = "rl_module.reward_fn.components.small_cells.fn"
    _, out = _reward(user_reward, f"{fn}=my_rewards.DensityAbove")
    assert out.components["small_cells"].tolist() == [0.0, 1.0]


def test_the_experiments_custom_entry_takes_a_class_by_path_too(user_reward):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train_rl",
            [
                "experiment=rl_custom_reward",
                "rl_module.reward_fn.components.custom.fn=my_rewards.DensityAbove",
            ],
        )
    from crystalrl.rl.checks import check_rl_config

    check_rl_config(cfg)  # accepted before any work
    reward = instantiate(cfg.rl_module.reward_fn, _convert_="all")
    assert reward.components[0].fn.threshold == 0.05


NEEDS_ARGS = """
class Above:
    def __init__(self, threshold):
        self.threshold = threshold

    def __call__(self, structures):
        return [1.0 for _ in structures]

NOT_CALLABLE = 3
"""


@pytest.mark.parametrize(
    ("fn", "says"),
    [
        ("my_rewards.Above", "cannot be built without arguments"),
        ("my_rewards.NOT_CALLABLE", "is not callable"),
        ("my_rewards.missing", "has no attribute 'missing'"),
        ("not_a_module_anywhere.fn", "no module 'not_a_module_anywhere'"),
    ],
)
def test_a_custom_fn_that_cannot_work_is_refused_naming_the_key(user_reward, fn, says):
    from crystalrl.checks import SettingError
    from crystalrl.rl.checks import check_rl_config

    (user_reward.parent / "my_rewards.py").write_text(MY_REWARDS + NEEDS_ARGS)
    key = "rl_module.reward_fn.components.small_cells.fn"
    cfg = _compose(user_reward, f"{key}={fn}")
    with pytest.raises(SettingError) as err:
        check_rl_config(cfg)
    message = str(err.value)
    assert message.startswith(f"{key}") and says in message
    if "argument" in says:  # the fix for a class with arguments
        assert "{_target_: my_rewards.Above, ARG: VALUE}" in message
    else:
        assert "my_rewards.DensityAbove" in message  # the accepted forms


def test_a_custom_reward_built_alone_names_its_key():
    from crystalrl.checks import SettingError
    from crystalrl.rewards.components import CustomReward

    with pytest.raises(SettingError, match=r"components\.dense\.fn=3 is not callable"):
        CustomReward(fn=3, name="dense")

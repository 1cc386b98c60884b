"""Numbers of GRPO, sampling and evaluation are refused before any work, by key and range;
a run does not resume under changed training settings unless told to."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from crystalrl.checks import SettingError, check_evaluate_config, check_sample_config
from crystalrl.rl.checks import check_rl_config


@pytest.fixture
def compose_cfg(monkeypatch, tmp_path, hydra_compose):
    monkeypatch.setenv("CRYSTALRL_DATA_DIR", str(tmp_path))
    return hydra_compose


RL = "rl_module.rl_configs"


@pytest.mark.parametrize(
    ("override", "key", "accepted"),
    [
        (f"{RL}.num_group_samples=0", f"{RL}.num_group_samples=0", "an integer ≥ 2"),
        (f"{RL}.num_group_samples=-3", f"{RL}.num_group_samples=-3", "an integer ≥ 2"),
        (f"{RL}.num_group_samples=1", f"{RL}.num_group_samples=1", "an integer ≥ 2"),
        (f"{RL}.num_inner_batch=0", f"{RL}.num_inner_batch=0", "an integer ≥ 1"),
        (f"{RL}.kl_weight=abc", f"{RL}.kl_weight='abc'", "a number ≥ 0"),
        (f"{RL}.clip_ratio=-1", f"{RL}.clip_ratio=-1", "a number in (0, 1)"),
        (f"{RL}.train_step_fraction=0", f"{RL}.train_step_fraction=0", "in (0, 1]"),
        ("rl_module.sampling_configs.sampling_steps=0", "sampling_steps=0", "an integer ≥ 1"),
        ("rl_module.sampling_configs.sampler=euler", "sampler='euler'", "'ddim', 'ddpm'"),
        ("rl_module.optimizer.lr=0", "rl_module.optimizer.lr=0", "a number > 0"),
        ("data.batch_size=0", "data.batch_size=0", "an integer ≥ 1"),
    ],
)
def test_a_bad_rl_number_is_refused_naming_key_and_range(compose_cfg, override, key, accepted):
    cfg = compose_cfg("train_rl", ["experiment=rl_custom_reward", override])
    with pytest.raises(SettingError) as info:
        check_rl_config(cfg)
    assert key in str(info.value) and accepted in str(info.value)


def test_the_shipped_rl_experiments_pass_and_all_problems_come_at_once(compose_cfg):
    check_rl_config(compose_cfg("train_rl", ["experiment=rl_custom_reward"]))
    check_rl_config(compose_cfg("train_rl", ["experiment=mp_20/rl_dng"]))
    cfg = compose_cfg(
        "train_rl",
        ["experiment=rl_custom_reward", f"{RL}.num_group_samples=1", f"{RL}.kl_weight=-2"],
    )
    with pytest.raises(SettingError, match="2 settings of train_rl are out of range") as info:
        check_rl_config(cfg)
    assert "num_group_samples=1" in str(info.value) and "kl_weight=-2" in str(info.value)


def test_more_inner_batches_than_trajectories_is_refused(compose_cfg):
    cfg = compose_cfg(
        "train_rl",
        [
            "experiment=rl_custom_reward",
            "data.batch_size=2",
            f"{RL}.num_group_samples=4",
            f"{RL}.num_inner_batch=9",
        ],
    )
    with pytest.raises(SettingError, match=r"num_inner_batch=9: expected an integer in \[1, 8\]"):
        check_rl_config(cfg)


def test_rl_module_refuses_a_group_of_one_before_loading_anything(tmp_path):
    from crystalrl.rl.module import RLModule

    # the checkpoint does not exist: the number is judged first
    with pytest.raises(SettingError, match=r"num_group_samples=1: expected an integer ≥ 2"):
        RLModule(ldm_ckpt_path=str(tmp_path / "none.ckpt"), rl_configs={"num_group_samples": 1})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("batch_size=0", "batch_size=0: expected an integer ≥ 1"),
        ("num_atoms=0", "num_atoms=0: expected an integer ≥ 1, or null"),
        ("num_samples=-5", "num_samples=-5: expected an integer ≥ 1"),
        ("eta=2", "eta=2: expected a number in [0, 1]"),
    ],
)
def test_sample_numbers_are_checked(compose_cfg, override, message):
    check_sample_config(compose_cfg("sample", []))
    with pytest.raises(SettingError) as info:
        check_sample_config(compose_cfg("sample", [override]))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("num_structures=-1", "num_structures=-1: expected an integer ≥ 1, or null"),
        ("match_timeout=0", "match_timeout=0: expected a number > 0"),
        ("target_window=[3,1]", "target_window="),
    ],
)
def test_evaluate_numbers_are_checked(compose_cfg, override, message):
    check_evaluate_config(compose_cfg("evaluate", ["structure_path=x"]))
    with pytest.raises(SettingError) as info:
        check_evaluate_config(compose_cfg("evaluate", ["structure_path=x", override]))
    assert message in str(info.value)


# ---------------------------------------------------------------------- resuming
@pytest.fixture
def saved_run(compose_cfg, tmp_path):
    """A run folder as :func:`crystalrl.training.fit` leaves it: config.yaml and last.ckpt."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    old = compose_cfg("train_rl", ["experiment=rl_custom_reward"])
    OmegaConf.save(old, run / "config.yaml", resolve=False)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    return run


def test_resuming_under_changed_training_settings_is_refused_naming_each_key(
    compose_cfg, saved_run
):
    from crystalrl.resume_check import ResumeSettingsError, check_resume

    last = saved_run / "checkpoints" / "last.ckpt"
    same = compose_cfg("train_rl", ["experiment=rl_custom_reward", "trainer.max_steps=500"])
    check_resume(same, saved_run, last)  # a longer run of the same settings resumes
    changed = compose_cfg(
        "train_rl",
        [
            "experiment=rl_custom_reward",
            f"{RL}.kl_weight=0.5",
            f"{RL}.num_group_samples=8",
            "rl_module.optimizer.lr=3e-5",
            "rl_module.reward_fn.components.custom.fn=my_rewards.other",
            "rl_module.ldm_ckpt_path=/somewhere/else.ckpt",
            f"{RL}.val_num_group_samples=4",  # validation only: not a change of training
        ],
    )
    with pytest.raises(ResumeSettingsError) as info:
        check_resume(changed, saved_run, last)
    message = str(info.value)
    for key in (
        f"{RL}.kl_weight: 1.0 -> 0.5",
        f"{RL}.num_group_samples: 16 -> 8",
        "rl_module.optimizer.lr: 1e-05 -> 3e-05",
        "rl_module.reward_fn.components.custom.fn: "
        "'crystalrl.rewards.functions.valid_atomic_density' -> 'my_rewards.other'",
        "rl_module.ldm_ckpt_path:",
    ):
        assert key in message, message
    assert "val_num_group_samples" not in message
    assert "(5 changed)" in message
    assert "run_name=rl_custom_reward_2" in message and "resume=force" in message
    # the explicit choice: resume anyway
    forced = compose_cfg(
        "train_rl", ["experiment=rl_custom_reward", f"{RL}.kl_weight=0.5", "resume=force"]
    )
    check_resume(forced, saved_run, last)


def test_fit_refuses_before_writing_anything(compose_cfg, saved_run):
    """fit stops before the trainer is built and leaves the run's config.yaml as it was."""
    from crystalrl.resume_check import ResumeSettingsError
    from crystalrl.training import fit

    before = (saved_run / "config.yaml").read_text()
    cfg = compose_cfg("train_rl", ["experiment=rl_custom_reward", f"{RL}.kl_weight=0.5"])
    cfg.paths.output_dir = str(saved_run)
    with pytest.raises(ResumeSettingsError):
        fit(cfg, module=None, datamodule=None)
    assert (saved_run / "config.yaml").read_text() == before

"""A stopped training run resumes from its last checkpoint when the same command is rerun."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch


def test_rerunning_the_same_command_resumes(perov_small_dir, tmp_path, hydra_compose, capsys):
    """The command's run twice in this process: the second run finds the first's
    last.ckpt on disk as a new process would, so the process itself is not what is tested.
    num_threads stays null: here it would set the threads of the whole test session."""
    from crystalrl.train_vae import main

    def train_vae(max_steps: int) -> str:
        cfg = hydra_compose(
            "train_vae",
            [
                "data=perov_5",
                f"data.data_dir={perov_small_dir}",
                "data.limit_train=64",
                "data.limit_eval=32",
                "data.batch_size=16",
                "vae_module.model.d_model=16",
                "vae_module.model.encoder_layers=1",
                "vae_module.model.decoder_layers=1",
                "vae_module.model.nhead=2",
                "trainer.max_epochs=-1",
                f"trainer.max_steps={max_steps}",
                "logger=csv",
                f"paths.log_dir={tmp_path}",
                "run_name=resume_test",
                "callbacks.progress_bar=null",
            ],
        )
        main(cfg)
        return capsys.readouterr().out

    first = train_vae(8)
    assert "Resuming" not in first
    last = tmp_path / "train_vae" / "resume_test" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 8
    second = train_vae(12)
    assert f"Resuming from {last}" in second
    assert torch.load(last, weights_only=False)["global_step"] == 12
    # metrics of both pieces are kept (one CSV version each)
    assert len(list((tmp_path / "train_vae" / "resume_test" / "csv").glob("version_*"))) == 2


@pytest.mark.slow
def test_a_run_shorter_than_its_checkpoint_interval_still_saves_and_exports(tmp_path):
    """RL writes last.ckpt every 10 steps and the best at validations; a 2-step run (the
    README's smoke test is 3) has reached neither and must still leave both files."""
    cmd = [
        sys.executable,
        "-m",
        "crystalrl.train_rl",
        "experiment=rl_custom_reward",
        "trainer.max_steps=2",
        "data.batch_size=2",
        "rl_module.rl_configs.num_group_samples=2",
        "rl_module.sampling_configs.sampling_steps=3",
        "logger=csv",
        f"paths.log_dir={tmp_path}",
        "callbacks.progress_bar=null",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "train_rl" / "rl_custom_reward"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    assert (run / "rl_custom_reward.ckpt").is_file()

"""Stage 2 and stage 3 under Lightning DDP with two CPU processes (gloo).

Both ranks must end with the same weights (``RankAgreement`` all-gathers a checksum per
tensor and fails otherwise), one process exports, and a stopped RL run resumes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow

DDP = [
    "trainer.strategy=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "num_threads=1",
    "logger=csv",
    "callbacks.progress_bar=null",
]


def _run(module: str, overrides: list[str]) -> str:
    cmd = [sys.executable, "-m", module, *overrides, *DDP]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_ldm_and_rl_train_on_two_processes_with_identical_weights(tiny_vae_ckpt, tmp_path):
    ldm_path = tmp_path / "ldm_small.ckpt"
    out = _run(
        "crystalrl.train_ldm",
        [
            "data=perov_5",
            "data.limit_train=64",
            "data.limit_eval=32",
            "data.batch_size=16",
            f"ldm_module.vae_ckpt_path={tiny_vae_ckpt}",
            "ldm_module.denoiser.hidden_size=32",
            "ldm_module.denoiser.depth=1",
            "ldm_module.denoiser.num_heads=2",
            "trainer.max_epochs=-1",
            "trainer.max_steps=5",
            f"paths.log_dir={tmp_path}",
            "run_name=ldm",
            f"export_path={ldm_path}",
        ],
    )
    assert "Weights agree across 2 processes" in out
    assert out.count("Exported") == 1 and ldm_path.is_file()

    rl = [
        "experiment=rl_custom_reward",
        "data=perov_5",
        "data.limit_train=8",
        "data.limit_eval=4",
        "data.batch_size=2",
        f"rl_module.ldm_ckpt_path={ldm_path}",
        "rl_module.vae_ckpt_path=null",
        "rl_module.rl_configs.num_group_samples=4",
        "rl_module.rl_configs.val_num_group_samples=4",
        "rl_module.sampling_configs.sampling_steps=5",
        # plain density: every decoded crystal gets a different reward, so gradients flow
        "rl_module.reward_fn.components.custom.fn=crystalrl.rewards.functions.atomic_density",
        "rl_module.optimizer.lr=1e-3",
        "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1",
        "callbacks.last_checkpoint.every_n_train_steps=1",
        f"paths.log_dir={tmp_path}",
        "run_name=rl",
        f"export_path={tmp_path / 'rl_small.ckpt'}",
    ]
    out = _run("crystalrl.train_rl", [*rl, "trainer.max_steps=2"])
    assert "Weights agree across 2 processes" in out
    before = torch.load(ldm_path, weights_only=False)["state_dict"]
    after = torch.load(tmp_path / "rl_small.ckpt", weights_only=False)["state_dict"]
    changed = [
        k for k in before if k.startswith("denoiser.") and not torch.equal(before[k], after[k])
    ]
    assert changed, "the policy update changed no weight"

    last = tmp_path / "train_rl" / "rl" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 2
    out = _run("crystalrl.train_rl", [*rl, "trainer.max_steps=4"])
    assert f"Resuming from {last}" in out and "Weights agree across 2 processes" in out
    assert torch.load(last, weights_only=False)["global_step"] == 4

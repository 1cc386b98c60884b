"""A training run keeps its last steps: the final step is saved and exported whatever the
checkpoint interval, a signal stops it at a step boundary with a resumable last.ckpt, and
rerunning it under changed training settings is refused unless resume=force."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

pytestmark = pytest.mark.slow

#: The issue's command, with smaller rollouts where they do not matter to what is tested.
TINY_RL = [
    "experiment=rl_custom_reward",
    "data.batch_size=2",
    "data.limit_train=16",
    "data.limit_eval=4",
    "rl_module.rl_configs.num_group_samples=4",
    "rl_module.sampling_configs.sampling_steps=5",
    "rl_module.rl_configs.policy_precision=32",
    "logger=csv",
    "callbacks.progress_bar=null",
    "num_threads=1",
]


def _train_rl(tmp_path, *overrides: str, run_name: str = "tail") -> list[str]:
    return [
        sys.executable,
        "-m",
        "crystalrl.train_rl",
        *TINY_RL,
        f"paths.log_dir={tmp_path}",
        f"run_name={run_name}",
        *overrides,
    ]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=900)


def _step(path) -> int:
    return int(torch.load(path, weights_only=False, map_location="cpu")["global_step"])


def test_the_last_steps_past_the_checkpoint_interval_are_saved_and_exported(tmp_path):
    done = _run(_train_rl(tmp_path, "trainer.max_steps=13", "trainer.val_check_interval=100"))
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "train_rl" / "tail"
    assert _step(run / "checkpoints" / "last.ckpt") == 13  # the interval saved step 10
    export = torch.load(run / "rl_custom_reward.ckpt", weights_only=True)
    assert export["global_step"] == 13
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    name = next(k for k in export["state_dict"] if k.startswith("denoiser."))
    assert torch.equal(export["state_dict"][name], last[f"ldm.{name}"].half())
    assert f"Last checkpoint: {run / 'checkpoints' / 'last.ckpt'} (step 13)" in done.stdout
    # the end of the run says where its metrics are and how the reward moved
    assert f"Metrics: {run / 'csv' / 'version_0' / 'metrics.csv'}" in done.stdout
    assert re.search(r"train/reward: \S+ -> \S+ \(steps 0-12\)", done.stdout), done.stdout
    # each Lightning message once, and no code example from Lightning
    both = done.stdout + done.stderr
    assert both.count("Seed set to 0") == 1
    assert "def training_step" not in both


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_at_a_step_boundary_and_saves_a_resumable_last_ckpt(tmp_path, sig, status):
    run = tmp_path / "train_rl" / "tail"
    last = run / "checkpoints" / "last.ckpt"
    cmd = _train_rl(
        tmp_path,
        "trainer.max_steps=400",
        "trainer.val_check_interval=1000",
        "callbacks.last_checkpoint.every_n_train_steps=2",
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    deadline = time.time() + 600
    while not last.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert last.is_file(), "the run saved no checkpoint in time"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == status, err[-3000:]
    name = signal.Signals(sig).name
    stopped = [line for line in out.splitlines() if f"{name}" in line and "saved" in line]
    assert stopped, out[-2000:]
    step = _step(last)
    assert 2 <= step < 400 and f"step {step}" in stopped[-1]
    assert not (run / "rl_custom_reward.ckpt").exists()  # an interrupted run exports nothing
    # the same command resumes from there and finishes
    again = _run([*cmd[:-3], f"trainer.max_steps={step + 1}", "trainer.val_check_interval=1000"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Resuming from {last}" in again.stdout
    assert _step(last) == step + 1


def test_resuming_with_another_kl_weight_is_refused_then_forced(tmp_path):
    first = _run(_train_rl(tmp_path, "trainer.max_steps=2"))
    assert first.returncode == 0, first.stderr[-3000:]
    run = tmp_path / "train_rl" / "tail"
    last = run / "checkpoints" / "last.ckpt"
    before = last.stat().st_mtime_ns

    changed = "rl_module.rl_configs.kl_weight=0.5"
    refused = _run(_train_rl(tmp_path, "trainer.max_steps=3", changed))
    assert refused.returncode == 1
    assert "rl_module.rl_configs.kl_weight: 1.0 -> 0.5" in refused.stderr
    assert "run_name=tail_2" in refused.stderr and "resume=force" in refused.stderr
    assert "Traceback" not in refused.stderr  # one message, not a traceback
    assert last.stat().st_mtime_ns == before and _step(last) == 2

    forced = _run(_train_rl(tmp_path, "trainer.max_steps=3", changed, "resume=force"))
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert f"Resuming from {last}" in forced.stdout and _step(last) == 3
    # the run's record now holds the new settings: the same command resumes silently
    again = _run(_train_rl(tmp_path, "trainer.max_steps=4", changed))
    assert again.returncode == 0, again.stderr[-3000:]
    assert _step(last) == 4

"""The training bar of a step-bounded run: step/max_steps, and numbers that keep their size
(a KL of 5e-5 used to read ``0.000`` beside ``Epoch 0/-2``)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from crystalrl.progress import StepProgressBar, readable


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5.1234e-5, "5.12e-05"),
        (0.04354, "0.04354"),
        (1.5, "1.5"),
        (123456.0, "1.23e+05"),
        (0.0, "0"),
        (-2.5e-4, "-2.50e-04"),
        (float("nan"), "nan"),
        (3, "3"),
        ("text", "text"),
    ],
)
def test_readable_numbers(value, text):
    assert readable(value) == text


class _KLModel(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("reward", 0.04354, prog_bar=True)
        self.log("kl", 5.1234e-5, prog_bar=True)
        return out


def test_a_step_bounded_run_shows_its_steps_and_a_readable_kl(tmp_path):
    bar = StepProgressBar()
    seen: list[tuple[str, float, float, dict]] = []

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            task = bar.progress.tasks[bar.train_progress_bar_id]
            metrics = bar.get_metrics(trainer, trainer.lightning_module)
            seen.append((task.description, task.completed, task.total, metrics))

    torch.manual_seed(0)
    trainer = L.Trainer(
        max_steps=3,
        max_epochs=-1,
        limit_val_batches=0,
        callbacks=[bar, Watch()],
        logger=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    trainer.fit(_KLModel())
    description, completed, total, metrics = seen[-1]
    assert description.strip() == "Step 3/3" and (completed, total) == (3, 3)
    assert "-2" not in seen[0][0] and seen[0][0].strip() == "Step 1/3"
    assert metrics["kl"] == "5.12e-05" and metrics["reward"] == "0.04354"

"""Lightning's progress bar for training runs counted in steps, with numbers a person can
read. (Long computations outside training show :mod:`crystalrl.progress_bar`.)

Lightning's rich bar counts epochs and batches of the epoch. An RL run has no epochs
(``max_epochs=-1``), so the bar read ``Epoch 0/-2`` and told nothing of how far the run
was; and it printed every metric with three decimals, so a KL of 5e-5 read ``0.000``.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


def readable(value: Any) -> Any:
    """A number in few characters that keeps its size: small and large ones in scientific
    notation (``5.12e-05``), others to four significant digits; anything else as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if isinstance(value, int):
        return str(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.2e}"
    return f"{value:.4g}"


class StepProgressBar(RichProgressBar):
    """``Step 5/60`` and a bar over ``trainer.max_steps`` when the run is bounded in steps
    (else Lightning's epoch bar, without its ``/-2`` for unbounded epochs); the logged
    ``prog_bar`` metrics through :func:`readable`."""

    def _steps(self, trainer: L.Trainer) -> int | None:
        steps = trainer.max_steps
        return int(steps) if steps is not None and steps > 0 else None

    def _get_train_description(self, current_epoch: int) -> str:
        steps = self._steps(self.trainer)
        if steps is not None:
            text = f"Step {self.trainer.global_step}/{steps}"
        else:
            text = f"Epoch {current_epoch}"
            if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
                text += f"/{self.trainer.max_epochs - 1}"
        # as Lightning does: padded to the validation bar's width, so the two do not flicker
        return f"{text:{len(self.validation_description)}}"

    def _show_steps(self, trainer: L.Trainer) -> None:
        steps = self._steps(trainer)
        if steps is None or self.progress is None or self.train_progress_bar_id is None:
            return
        self.progress.update(
            self.train_progress_bar_id,
            total=steps,
            completed=trainer.global_step,
            description=self._get_train_description(trainer.current_epoch),
        )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._show_steps(trainer)
        self.refresh()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._show_steps(trainer)
        self.refresh()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        return {name: readable(value) for name, value in items.items()}

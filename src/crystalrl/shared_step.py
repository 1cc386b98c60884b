"""Lightning hooks of the stages that train, validate and test with one step function."""

from __future__ import annotations

from typing import Any

import torch

from crystalrl.optimization import build_optimizer


class SharedStepHooks:
    """Lightning hooks of a module whose one ``_step(batch, stage)`` serves training,
    validation and test, optimised by :func:`build_optimizer` (the VAE, the predictor)."""

    def log_stage(
        self, values: dict[str, Any], stage: str, batch_size: int, prog_bar: bool = False
    ) -> None:
        """Log one stage's values: per step while training, per epoch always; validation and
        test values are averaged over all DDP processes' batches (training's need not be)."""
        self.log_dict(
            values,
            prog_bar=prog_bar,
            batch_size=batch_size,
            on_epoch=True,
            on_step=stage == "train",
            sync_dist=stage != "train",
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> dict:
        return build_optimizer(self, self.hparams)

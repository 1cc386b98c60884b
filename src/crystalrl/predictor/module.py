"""Property prediction from the frozen VAE encoder: the surrogate behind PredictorReward.

The encoder already reads every atom in its lattice context; a small transformer head on
its per-atom hidden states, pooled over atoms, predicts one or more named targets. Keeping
the encoder frozen makes the predictor see generated crystals exactly as the VAE does.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from crystalrl.checkpoint_io import load_module
from crystalrl.data.batch import CrystalBatch
from crystalrl.shared_step import SharedStepHooks
from crystalrl.vae.module import VAEModule, init_args, load_vae


class PredictorModule(SharedStepHooks, L.LightningModule):
    """Targets are learned normalised by ``target_mean``/``target_std`` (one per name)."""

    def __init__(
        self,
        vae_ckpt_path: str | None = None,
        target_names: list[str] | tuple[str, ...] = ("band_gap",),
        target_mean: list[float] | None = None,
        target_std: list[float] | None = None,
        hidden_size: int = 256,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        loss: str = "l1",
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
        warmup_steps: int = 200,
        scheduler: dict[str, Any] | None = None,
        vae_hparams: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(init_args(locals()))
        vae = (
            load_vae(vae_ckpt_path, key="predictor_module.vae_ckpt_path")
            if vae_ckpt_path
            else VAEModule(**(vae_hparams or {}))
        )
        self.hparams.update(vae_ckpt_path=None, vae_hparams=dict(vae.hparams))
        self.vae = vae.requires_grad_(False).eval()
        n = len(target_names)
        self.register_buffer("mean", torch.tensor(target_mean or [0.0] * n, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(target_std or [1.0] * n, dtype=torch.float32))
        d = self.vae.vae.d_model
        self.proj = nn.Linear(d, hidden_size)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            4 * hidden_size,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.head = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.out = nn.Sequential(
            nn.LayerNorm(hidden_size),
            nn.Linear(hidden_size, hidden_size),
            nn.GELU(),
            nn.Linear(hidden_size, n),
        )

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()  # frozen
        return self

    def forward(self, batch: CrystalBatch) -> torch.Tensor:
        """Normalised predictions, (B, n_targets)."""
        with torch.no_grad():
            h = self.vae.vae.encode_hidden(batch)
        h = self.head(self.proj(h), src_key_padding_mask=~batch.mask)
        m = batch.mask.unsqueeze(-1).to(h.dtype)
        return self.out((h * m).sum(1) / m.sum(1).clamp(min=1))

    @torch.no_grad()
    def predict(self, batch: CrystalBatch) -> dict[str, torch.Tensor]:
        """Predictions in the targets' own units, by name."""
        y = self.forward(batch) * self.std + self.mean
        return {name: y[:, i] for i, name in enumerate(self.hparams.target_names)}

    def _targets(self, batch: CrystalBatch) -> torch.Tensor:
        names = self.hparams.target_names
        missing = [n for n in names if n not in batch.properties]
        if missing:
            raise KeyError(f"batch has no target {missing}; set data.target_names={list(names)}")
        y = torch.stack([batch.properties[n].float() for n in names], dim=-1)
        return (y - self.mean) / self.std

    def _step(self, batch: CrystalBatch, stage: str) -> torch.Tensor:
        pred, y = self.forward(batch), self._targets(batch)
        loss = F.l1_loss(pred, y) if self.hparams.loss == "l1" else F.mse_loss(pred, y)
        mae = ((pred - y).abs() * self.std).mean(0)
        log = {f"{stage}/mae_{n}": mae[i] for i, n in enumerate(self.hparams.target_names)}
        log[f"{stage}/total_loss"] = loss
        self.log_stage(log, stage, len(batch), prog_bar=True)
        return loss


def load_predictor(path: str, map_location: str = "cpu", key: str | None = None) -> PredictorModule:
    """A trained predictor in eval mode (Lightning or exported checkpoint); ``key`` names
    the config key ``path`` came from in errors."""
    return load_module(PredictorModule, path, map_location, key)

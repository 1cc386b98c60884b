"""A callback that turns a silent divergence of DDP processes into an error."""

from __future__ import annotations

import lightning as L
import torch


class RankAgreement(L.Callback):
    """Under DDP, check at the end of training that every process holds the same weights.

    Gradients are all-reduced, so the ranks' weights can only drift apart through a bug
    (a parameter outside the reduced set, a rank-dependent update); one all-gather of a
    checksum per tensor turns that silent divergence into an error naming the tensor.
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size < 2 or not torch.distributed.is_initialized():
            return
        names, sums = [], []
        for name, p in pl_module.named_parameters():
            names.append(name)
            sums.append(p.detach().double().sum() + p.detach().double().abs().sum())
        device = pl_module.device  # NCCL gathers device tensors only
        local = torch.stack(sums) if sums else torch.zeros(0, dtype=torch.float64, device=device)
        gathered = [torch.empty_like(local) for _ in range(trainer.world_size)]
        torch.distributed.all_gather(gathered, local)
        for rank, other in enumerate(gathered):
            differs = (other - gathered[0]).abs() > 1e-9 * (1 + gathered[0].abs())
            if bool(differs.any()):
                first = names[int(differs.nonzero()[0])]
                raise RuntimeError(f"rank {rank} ends with other weights than rank 0 ({first})")
        if trainer.is_global_zero:
            print(f"Weights agree across {trainer.world_size} processes")

"""VAE features of crystals, used by the diversity rewards, their metrics and the predictor.

Deterministic by construction: the encoder runs in eval mode on the posterior *mean* and
no augmentation is applied, so the same structures always give the same vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from crystalrl.data.batch import CrystalBatch, niggli_or_keep
from crystalrl.vae.module import VAEModule


@torch.no_grad()
def batch_features(vae: VAEModule, batch: CrystalBatch) -> dict[str, torch.Tensor]:
    """``structure`` (B, latent_dim): mean of latent means over atoms;
    ``composition`` (B, d_model): mean of element embeddings over atoms."""
    model = vae.vae
    was_training = model.training
    model.eval()
    mu, _ = model.encode(batch)
    m = batch.mask.unsqueeze(-1).float()
    n = m.sum(1).clamp(min=1)
    structure = (mu * m).sum(1) / n
    composition = (model.element_embedding(batch.atom_types) * m).sum(1) / n
    model.train(was_training)
    return {"structure": structure, "composition": composition}


def structure_features(
    vae: VAEModule, structures: Sequence, batch_size: int = 512, niggli: bool = True
) -> dict[str, torch.Tensor]:
    """Features of pymatgen structures (or ASE atoms), computed in batches on the VAE's
    device and returned on the CPU, where the metrics and reference caches keep them.

    ``niggli`` reduces each cell first, as the training data were: an unreduced cell of
    the same crystal would otherwise land elsewhere in latent space.
    """
    parts: list[dict[str, torch.Tensor]] = []
    # the weights' device, not vae.device: inside the RL module the reward is set up
    # before Lightning moves the model, and vae.device already named the GPU then
    device = next(vae.parameters()).device
    for i in range(0, len(structures), batch_size):
        chunk = list(structures[i : i + batch_size])
        if niggli:
            chunk = [niggli_or_keep(s) for s in chunk]
        batch = CrystalBatch.from_structures(chunk, dtype=torch.float32).to(device)
        parts.append({k: v.cpu() for k, v in batch_features(vae, batch).items()})
    if not parts:
        d = vae.vae.latent_dim, vae.vae.d_model
        return {"structure": torch.zeros(0, d[0]), "composition": torch.zeros(0, d[1])}
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

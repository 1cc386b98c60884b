"""DiT denoiser over a set of per-atom latents (after facebookresearch/DiT, for sets).

Tokens are atoms, not image patches: there is no positional embedding (a crystal's atoms
have no order) and padded atoms are masked out of attention. The timestep and an
optional condition modulate every block through adaLN-Zero, so at initialisation each
block is the identity and the model predicts zero noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of the (continuous or integer) timestep, then an MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
        )
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))


class ConditionEmbedder(nn.Module):
    """Embeds a real-valued condition vector; a learned null vector stands for "no condition".

    During training the condition is dropped with probability ``dropout_prob`` so the same
    model also learns the unconditional distribution (classifier-free guidance).
    """

    def __init__(self, cond_dim: int, hidden_size: int, dropout_prob: float = 0.1):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Linear(cond_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )
        self.null = nn.Parameter(torch.zeros(hidden_size))
        self.dropout_prob = dropout_prob

    def forward(self, cond: torch.Tensor | None, batch_size: int, drop: torch.Tensor | None = None):
        if cond is None:
            return self.null.expand(batch_size, -1)
        emb = self.proj(cond.float())
        if drop is None and self.training and self.dropout_prob > 0:
            drop = torch.rand(batch_size, device=emb.device) < self.dropout_prob
        if drop is not None:
            emb = torch.where(drop[:, None], self.null.expand_as(emb), emb)
        return emb


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation of attention and MLP."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        hidden = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(hidden, hidden_size),
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def attention(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).unbind(2)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=attn_mask
        )
        return self.proj(out.transpose(1, 2).reshape(b, n, d))

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(
            c
        ).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attention(
            modulate(self.norm1(x), shift_msa, scale_msa), attn_mask
        )
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """Predicts the noise (and optionally the variance interpolation) of per-atom latents."""

    def __init__(
        self,
        latent_dim: int = 8,
        hidden_size: int = 256,
        depth: int = 6,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        learn_sigma: bool = False,
        cond_dim: int = 0,
        cond_dropout_prob: float = 0.1,
    ):
        super().__init__()
        self.latent_dim = latent_dim
        self.learn_sigma = learn_sigma
        self.out_channels = 2 * latent_dim if learn_sigma else latent_dim
        self.x_embedder = nn.Linear(latent_dim, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = (
            ConditionEmbedder(cond_dim, hidden_size, cond_dropout_prob) if cond_dim > 0 else None
        )
        self.blocks = nn.ModuleList(
            [DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)]
        )
        self.final_layer = FinalLayer(hidden_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_basic_init)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor,
        cond: torch.Tensor | None = None,
        drop_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, N, latent_dim), t (B,), mask (B, N) True at real atoms -> (B, N, out)."""
        h = self.x_embedder(x)
        c = self.t_embedder(t)
        if self.y_embedder is not None:
            c = c + self.y_embedder(cond, x.shape[0], drop_cond)
        # additive mask: padded keys get -inf; every row keeps >= 1 real key
        attn_mask = torch.zeros(mask.shape, dtype=h.dtype, device=h.device)
        attn_mask = attn_mask.masked_fill(~mask, float("-inf"))[:, None, None, :]
        for block in self.blocks:
            h = block(h, c, attn_mask)
        return self.final_layer(h, c) * mask.unsqueeze(-1)

    def forward_with_cfg(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        mask: torch.Tensor,
        cond: torch.Tensor,
        cfg_scale: float,
    ) -> torch.Tensor:
        """Classifier-free guidance: eps = eps_uncond + s·(eps_cond − eps_uncond)."""
        b = x.shape[0]
        both = self.forward(
            torch.cat([x, x]),
            torch.cat([t, t]),
            torch.cat([mask, mask]),
            torch.cat([cond, cond]),
            drop_cond=torch.cat(
                [torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]
            ).to(x.device),
        )
        cond_out, uncond_out = both[:b], both[b:]
        eps_c, rest = cond_out[..., : self.latent_dim], cond_out[..., self.latent_dim :]
        eps_u = uncond_out[..., : self.latent_dim]
        return torch.cat([eps_u + cfg_scale * (eps_c - eps_u), rest], dim=-1)


#: Paper-sized configurations (DiT-S/B/L widths and depths).
DIT_CONFIGS = {
    "dit_s": dict(hidden_size=384, depth=12, num_heads=6),
    "dit_b": dict(hidden_size=768, depth=12, num_heads=12),
    "dit_l": dict(hidden_size=1024, depth=24, num_heads=16),
}

"""DiT denoiser over a set of per-atom latents (after facebookresearch/DiT, for sets).

Tokens are atoms, not image patches: there is no positional embedding (a crystal's atoms
have no order) and padded atoms are masked out of attention. The timestep modulates
every block through adaLN-Zero, so at initialisation each block is the identity and the
model predicts zero noise.

When the last six channels of a token are its position (sin and cos of 2π times each
fractional coordinate, see ``LDMModule(position_scale=...)``), ``pair_freqs`` > 0 adds a
relative-position bias to every attention logit: an MLP of the pairwise periodic offsets
cos/sin(2πk·Δx) of the noisy positions, modulated by the timestep. Dot-product attention
over linear embeddings cannot compare two atoms' positions on a torus by itself; this bias
is what lets the denoiser learn which distances between atoms are allowed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from crystalrl.ldm.tokens import channels_to_lattice, lattice_matrix


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
        emb = self.timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))  # float32 sinusoids, any weights


class PairBias(nn.Module):
    """Attention bias (B, depth, heads, N, N) from pairwise periodic position offsets.

    Positions arrive as noisy (sin, cos) pairs per axis; their direction gives the angle
    and their length how far noise has pulled them from the unit circle, so the offset
    features come with a per-pair confidence. With lattice channels (``num_rbf`` > 0) the
    offsets also become Cartesian distances in the crystal's current (noisy) lattice,
    expanded in Gaussian radial basis functions: what decides whether two atoms may sit
    where they are. The last layer starts at zero: at initialisation the bias vanishes and
    the DiT is the plain one.
    """

    def __init__(
        self,
        num_freqs: int,
        hidden_size: int,
        depth: int,
        num_heads: int,
        num_rbf: int = 0,
        lattice_scale: float = 0.0,
        width: int = 64,
    ):
        super().__init__()
        self.depth, self.num_heads = depth, num_heads
        self.lattice_scale = lattice_scale
        self.register_buffer(
            "freqs", torch.arange(1, num_freqs + 1, dtype=torch.float32), persistent=False
        )
        self.register_buffer("rbf_centers", torch.linspace(0.5, 6.0, num_rbf), persistent=False)
        self.rbf_width = 5.5 / max(num_rbf - 1, 1)
        self.inp = nn.Linear(3 * 2 * num_freqs + 3 + num_rbf, width)
        self.t_proj = nn.Linear(hidden_size, width)
        self.out = nn.Sequential(
            nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, depth * num_heads)
        )
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(
        self,
        pos: torch.Tensor,
        c: torch.Tensor,
        lattice: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        delta, radius = self.offsets(pos)
        angle = delta.unsqueeze(-1) * self.freqs  # (B, N, N, 3, F)
        conf = radius[:, :, None] * radius[:, None]  # (B, N, N, 3)
        feats = [angle.cos().flatten(-2), angle.sin().flatten(-2), conf]
        if len(self.rbf_centers):
            feats.append(self.distance_rbf(delta, lattice.float(), mask))
        h = self.inp(torch.cat(feats, dim=-1).to(c.dtype)) + self.t_proj(c)[:, None, None]
        b, n = pos.shape[:2]
        bias = self.out(h).view(b, n, n, self.depth, self.num_heads)
        return bias.permute(0, 3, 4, 1, 2)  # (B, depth, heads, N, N)

    @staticmethod
    def offsets(pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Periodic offsets 2π(x_j − x_i) per axis, (B, N, N, 3) in (−π, π], and each
        atom's (sin, cos) radius per axis, (B, N, 3)."""
        sin, cos = pos[..., :3].float(), pos[..., 3:].float()
        radius = (sin**2 + cos**2).sqrt().clamp(min=1e-6)
        sin, cos = sin / radius, cos / radius
        # the angle of the rotation that takes i's point on the circle to j's
        cos_d = cos[:, :, None] * cos[:, None] + sin[:, :, None] * sin[:, None]
        sin_d = cos[:, :, None] * sin[:, None] - sin[:, :, None] * cos[:, None]
        return torch.atan2(sin_d, cos_d), radius

    def distance_rbf(
        self, delta: torch.Tensor, lattice: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Distances (Å) in the lattice the channels hold now, as RBFs.

        Each fractional offset is wrapped into (-½, ½] per axis before it meets the
        lattice: the minimum image for the near-orthogonal cells Niggli reduction gives,
        a longer image for a few skewed ones (a bias feature, not a measurement).
        """
        scaled, angles = channels_to_lattice(lattice, mask, self.lattice_scale)
        n = mask.sum(1, keepdim=True).to(scaled.dtype).clamp(min=1)
        matrix = lattice_matrix(scaled * n ** (1 / 3), angles)  # (B, 3, 3)
        cart = torch.einsum("bijk,bkl->bijl", delta / (2 * math.pi), matrix)
        dist = cart.norm(dim=-1, keepdim=True)  # (B, N, N, 1)
        return torch.exp(-(((dist - self.rbf_centers) / self.rbf_width) ** 2))


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
        pair_freqs: int = 0,
        pair_rbf: int = 0,
        lattice_scale: float = 0.0,
    ):
        """``pair_freqs`` > 0: the last 6 of the ``latent_dim`` channels are positions
        (the 6 before the last with ``lattice_scale`` > 0, when the last 6 are lattice
        channels) and drive a :class:`PairBias` with that many harmonics; ``pair_rbf`` > 0
        adds that many radial basis functions of the distances the lattice channels give."""
        super().__init__()
        self.latent_dim = latent_dim
        self.learn_sigma = learn_sigma
        self.out_channels = 2 * latent_dim if learn_sigma else latent_dim
        self.x_embedder = nn.Linear(latent_dim, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.blocks = nn.ModuleList(
            [DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)]
        )
        self.final_layer = FinalLayer(hidden_size, self.out_channels)
        self.initialize_weights()
        if pair_rbf and not lattice_scale:
            raise ValueError("denoiser.pair_rbf needs lattice channels (lattice_scale > 0)")
        self.lattice_scale = lattice_scale
        self.pair_bias = (
            PairBias(pair_freqs, hidden_size, depth, num_heads, pair_rbf, lattice_scale)
            if pair_freqs > 0
            else None
        )

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
    ) -> torch.Tensor:
        """x (B, N, latent_dim), t (B,), mask (B, N) True at real atoms -> (B, N, out)."""
        h = self.x_embedder(x)
        c = self.t_embedder(t)
        # additive mask: padded keys get -inf; every row keeps >= 1 real key
        attn_mask = torch.zeros(mask.shape, dtype=h.dtype, device=h.device)
        attn_mask = attn_mask.masked_fill(~mask, float("-inf"))[:, None, None, :]
        if self.pair_bias is None:
            for block in self.blocks:
                h = block(h, c, attn_mask)
        else:
            if self.lattice_scale:
                pos, lattice = x[..., -12:-6], x[..., -6:]
            else:
                pos, lattice = x[..., -6:], None
            bias = self.pair_bias(pos, c, lattice, mask).to(h.dtype)
            for i, block in enumerate(self.blocks):
                h = block(h, c, attn_mask + bias[:, i])
        return self.final_layer(h, c) * mask.unsqueeze(-1)


#: Paper-sized configurations (DiT-S/B/L widths and depths).
DIT_CONFIGS = {
    "dit_s": dict(hidden_size=384, depth=12, num_heads=6),
    "dit_b": dict(hidden_size=768, depth=12, num_heads=12),
    "dit_l": dict(hidden_size=1024, depth=24, num_heads=16),
}

"""A bidirectional transformer whose blocks are modulated by a conditioning vector (adaLN-Zero)."""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

from resgen.typing import Hidden, Padding

__all__ = ["AdaLNBlock", "Transformer"]


class AdaLNBlock(nn.Module):
    """Pre-norm self-attention + MLP block with adaptive layer norm (DiT's adaLN-Zero).

    The conditioning vector ``cond`` ``[batch, width]`` sets a shift, scale and gate for each of the
    two sub-layers; gates start at zero so every block starts as the identity.

    Args:
        width: model width.
        heads: attention heads (``width`` must be divisible by it).
        mlp_ratio: hidden size of the MLP relative to ``width``.
        dropout: probability of zeroing an element of each sub-layer's output before it joins
            the residual stream (training only; a regulariser for small datasets).
    """

    def __init__(
        self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.dropout = nn.Dropout(dropout)
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(
        self,
        x: Hidden,
        cond: Float[Tensor, "batch width"],
        padding: Padding | None = None,
    ) -> Hidden:
        """Apply the block to ``x`` ``[batch, length, width]``; padded keys are never attended."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(cond))[:, None].chunk(
            6, dim=-1
        )
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = rearrange(self.qkv(h), "b l (three h c) -> three b h l c", three=3, h=self.heads)
        attn_mask = None if padding is None else ~padding[:, None, None, :]
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + gate1 * self.drop_residual(self.proj(rearrange(h, "b h l c -> b l (h c)")))
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.drop_residual(self.mlp(h))

    def drop_residual(self, x: Hidden) -> Hidden:
        """Residual dropout of a sub-layer's output ``[batch, length, width]``; ``x`` itself
        outside training or at rate 0 (no module call: the AR sampler runs blocks thousands of
        times per sample)."""
        return self.dropout(x) if self.training and self.dropout.p > 0 else x


class Transformer(nn.Module):
    """A stack of :class:`AdaLNBlock` followed by a conditioned final norm.

    Args:
        width: model width.
        layers: number of blocks.
        heads: attention heads per block.
        mlp_ratio: MLP expansion.
        dropout: residual dropout of every block (:class:`AdaLNBlock`).
    """

    def __init__(
        self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            AdaLNBlock(width, heads, mlp_ratio, dropout) for _ in range(layers)
        )
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(width, 2 * width)
        nn.init.zeros_(self.final_modulation.weight)
        nn.init.zeros_(self.final_modulation.bias)

    def forward(
        self,
        x: Hidden,
        cond: Float[Tensor, "batch width"],
        padding: Padding | None = None,
    ) -> Hidden:
        """Run every block on ``x`` ``[batch, length, width]`` conditioned on ``cond``."""
        for block in self.blocks:
            x = block(x, cond, padding)
        shift, scale = self.final_modulation(F.silu(cond))[:, None].chunk(2, dim=-1)
        return self.final_norm(x) * (1 + scale) + shift

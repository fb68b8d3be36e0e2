"""Output heads that turn transformer hidden states into distributions."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch.nn.functional as F
from einops import rearrange
from torch import nn

from resgen.diffusion.mixture import MixtureParams
from resgen.typing import Hidden

__all__ = ["Head", "MixtureOfGaussiansHead"]


@runtime_checkable
class Head(Protocol):
    """A plug point: maps hidden states ``[batch, length, width]`` to distribution parameters."""

    def __call__(self, hidden: Hidden) -> object:
        """Distribution parameters for every position."""
        ...


class MixtureOfGaussiansHead(nn.Module):
    """Mixture-of-Gaussians head with a low-rank output projection.

    ``hidden -> Linear(width, rank) -> Linear(rank, comp * (1 + 2 * dim))`` gives mixture logits,
    means and log-scales per position. The bottleneck keeps the parameter count at ``rank * (width +
    comp * (1 + 2 dim))`` instead of ``width * comp * (1 + 2 dim)``. Scales are bounded below by
    ``min_scale`` (softplus), since a collapsing variance destabilises the likelihood.

    Args:
        width: input width.
        dim: code dimension of the predicted vectors.
        components: number of mixture components.
        rank: bottleneck rank of the output projection.
        min_scale: floor on every standard deviation.
    """

    def __init__(
        self, width: int, dim: int, components: int, rank: int = 128, min_scale: float = 1e-3
    ) -> None:
        super().__init__()
        if min(width, dim, components, rank) < 1 or min_scale <= 0:
            raise ValueError("width, dim, components and rank must be >= 1, min_scale > 0")
        self.dim, self.components, self.min_scale = dim, components, min_scale
        self.down = nn.Linear(width, rank)
        self.up = nn.Linear(rank, components * (1 + 2 * dim))
        # Start near unit scales: softplus(raw) + min_scale == 1 at raw = log(e - 1).
        self._scale_offset = math.log(math.e - 1)

    def forward(self, hidden: Hidden) -> MixtureParams:
        """Mixture parameters for each position of ``hidden`` ``[batch, length, width]``."""
        out = self.up(F.gelu(self.down(hidden)))
        out = rearrange(out, "b l (comp p) -> b l comp p", comp=self.components)
        logits = out[..., 0]
        means = out[..., 1 : 1 + self.dim]
        raw_scale = out[..., 1 + self.dim :] + self._scale_offset
        scales = F.softplus(raw_scale) + self.min_scale
        return MixtureParams(logits=logits, means=means, log_scales=scales.log())

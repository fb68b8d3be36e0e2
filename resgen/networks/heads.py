"""Output heads that turn transformer hidden states into distributions."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from jaxtyping import Float, Int
from torch import Tensor, nn

from resgen.diffusion.mixture import AssignedComponent, MixtureParams
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

    def _outputs(self, hidden: Hidden) -> Float[Tensor, "batch length comp params"]:
        # The means must resolve the finest RVQ depth, finer than bfloat16's 3 digits: the head
        # runs in float32 even inside a mixed-precision autocast.
        with torch.autocast(hidden.device.type, enabled=False):
            out = self.up(F.gelu(self.down(hidden.float())))
        return rearrange(out, "b l (comp p) -> b l comp p", comp=self.components)

    def _log_scales(self, raw: Tensor) -> Tensor:
        return (F.softplus(raw + self._scale_offset) + self.min_scale).log()

    def forward(self, hidden: Hidden) -> MixtureParams:
        """Mixture parameters for each position of ``hidden`` ``[batch, length, width]``."""
        out = self._outputs(hidden)
        return MixtureParams(
            logits=out[..., 0],
            means=out[..., 1 : 1 + self.dim],
            log_scales=self._log_scales(out[..., 1 + self.dim :]),
        )

    def assigned(self, hidden: Hidden, component: Int[Tensor, "batch length"]) -> AssignedComponent:
        """The mixture weight, mean and scales of one given component per position.

        Equal to picking ``component`` out of :meth:`forward`'s parameters, but the
        element-wise work (scales, their logs, and everything backward of them) runs on one
        component instead of all: with one component per codeword (256 of them) this is most of
        the head's cost in training.
        """
        out = self._outputs(hidden)
        if component.shape != out.shape[:2]:
            raise ValueError(f"expected components of shape {tuple(out.shape[:2])}")
        index = repeat(component, "b l -> b l 1 p", p=out.shape[-1])
        chosen = out.gather(2, index)[:, :, 0]
        log_weights = torch.log_softmax(out[..., 0].float(), dim=-1)
        return AssignedComponent(
            log_weight=log_weights.gather(-1, component[..., None])[..., 0],
            mean=chosen[..., 1 : 1 + self.dim],
            log_scale=self._log_scales(chosen[..., 1 + self.dim :]),
        )

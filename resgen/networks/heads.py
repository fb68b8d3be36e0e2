"""Output heads that turn transformer hidden states into distributions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from jaxtyping import Float, Int
from torch import Tensor, nn

from resgen.diffusion.mixture import AssignedComponent, MixtureParams
from resgen.diffusion.target_scale import scale_of_counts
from resgen.typing import Hidden, MaskCounts

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

    The mixture models the target divided by a fixed scale per mask count
    (:meth:`target_scale`; all ones unless ``target_scales`` is given, see
    :mod:`resgen.diffusion.target_scale`): losses divide their target by it, samplers multiply
    their draw by it.

    Args:
        width: input width.
        dim: code dimension of the predicted vectors.
        components: number of mixture components.
        rank: bottleneck rank of the output projection.
        min_scale: floor on every standard deviation.
        target_scales: ``depth + 1`` fixed scales of the target by mask count, or ``None``.
        fixed_scale: when given, every component's standard deviation is this constant (an
            isotropic Gaussian, as in CLaM-TTS) and the head predicts only logits and means.
    """

    def __init__(
        self,
        width: int,
        dim: int,
        components: int,
        rank: int = 128,
        min_scale: float = 1e-3,
        target_scales: Sequence[float] | None = None,
        fixed_scale: float | None = None,
    ) -> None:
        super().__init__()
        if min(width, dim, components, rank) < 1 or min_scale <= 0:
            raise ValueError("width, dim, components and rank must be >= 1, min_scale > 0")
        if fixed_scale is not None and fixed_scale <= 0:
            raise ValueError(f"fixed_scale must be > 0, got {fixed_scale}")
        if target_scales is not None and min(target_scales) <= 0:
            raise ValueError("target_scales must all be > 0")
        self.dim, self.components, self.min_scale = dim, components, min_scale
        self.fixed_scale = fixed_scale
        self.down = nn.Linear(width, rank)
        per_component = 1 + dim if fixed_scale is not None else 1 + 2 * dim
        self.up = nn.Linear(rank, components * per_component)
        # Start near unit scales: softplus(raw) + min_scale == 1 at raw = log(e - 1).
        self._scale_offset = math.log(math.e - 1)
        scales = torch.ones(1) if target_scales is None else torch.tensor(list(target_scales))
        # Not persistent: the scales come from the configuration, so checkpoints stay unchanged.
        self.register_buffer("target_scales", scales.float(), persistent=False)
        self.normalizes_targets = target_scales is not None

    def target_scale(self, counts: MaskCounts) -> Float[Tensor, "batch length"]:
        """The fixed scale ``[batch, length]`` of each position's target for mask counts
        ``[batch, length]`` (ones without ``target_scales``)."""
        if not self.normalizes_targets:
            return torch.ones(counts.shape, device=counts.device)
        if counts.numel() and int(counts.max()) >= len(self.target_scales):
            raise ValueError(
                f"mask count {int(counts.max())} has no target scale "
                f"(the head holds {len(self.target_scales)})"
            )
        return scale_of_counts(self.target_scales, counts)

    def _project(
        self, hidden: Hidden, weight: Float[Tensor, "out rank"], bias: Float[Tensor, " out"]
    ) -> Float[Tensor, "batch length out"]:
        """``hidden`` through the bottleneck, then through ``weight`` and ``bias`` (rows of the
        output projection ``up``)."""
        # The means must resolve the finest RVQ depth, finer than bfloat16's 3 digits: the head
        # runs in float32 even inside a mixed-precision autocast.
        with torch.autocast(hidden.device.type, enabled=False):
            return F.linear(F.gelu(self.down(hidden.float())), weight, bias)

    def _outputs(self, hidden: Hidden) -> Float[Tensor, "batch length comp params"]:
        out = self._project(hidden, self.up.weight, self.up.bias)
        return rearrange(out, "b l (comp p) -> b l comp p", comp=self.components)

    def _log_scales(self, raw: Tensor) -> Tensor:
        if self.fixed_scale is not None:
            shape = (*raw.shape[:-1], self.dim)
            return torch.full(shape, math.log(self.fixed_scale), device=raw.device)
        return (F.softplus(raw + self._scale_offset) + self.min_scale).log()

    def forward(self, hidden: Hidden) -> MixtureParams:
        """Mixture parameters for each position of ``hidden`` ``[batch, length, width]``."""
        out = self._outputs(hidden)
        return MixtureParams(
            logits=out[..., 0],
            means=out[..., 1 : 1 + self.dim],
            log_scales=self._log_scales(out[..., 1 + self.dim :]),
        )

    def logits(self, hidden: Hidden) -> Float[Tensor, "batch length comp"]:
        """The mixture logits ``[batch, length, comp]`` alone: :meth:`forward`'s ``logits``.

        Only the logit rows of the output projection are computed (one output per component
        instead of ``1 + 2 * dim``): classifier-free guidance reads nothing else of the
        unconditional pass.
        """
        per_component = self.up.out_features // self.components
        # (comp p) layout, p = 0 the logit: every per_component-th row of the projection
        return self._project(hidden, self.up.weight[::per_component], self.up.bias[::per_component])

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

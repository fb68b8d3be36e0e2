"""The keep rule of iterative samplers: reveal the most confident tokens, coarse before fine."""

from __future__ import annotations

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor

from resgen.diffusion.masking import depth_mask
from resgen.diffusion.schedules import MaskSchedule
from resgen.typing import MaskCounts

__all__ = ["masked_targets", "reveal_most_confident"]


def masked_targets(
    schedule: MaskSchedule, maskable: Int[Tensor, " batch"], steps: int
) -> Int[Tensor, "steps batch"]:
    """How many slots stay masked after each of ``steps`` sampling steps.

    ``n_s = floor(gamma(s / T) * M)`` for ``s = 1..T``, where ``M`` ``[batch]`` is each sample's
    number of maskable slots; made non-increasing and ending at ``n_T = 0``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = maskable.device
    maskable = maskable.cpu()  # a few numbers: computed on the CPU, the same on every device
    progress = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    gamma = schedule(progress).to(torch.float64)
    n = torch.floor(gamma[:, None] * maskable.double()[None, :] + 1e-6).long()
    n = torch.minimum(n, maskable[None, :])
    n = torch.cummin(n, dim=0).values
    n[-1] = 0
    return n.to(device)


def reveal_most_confident(
    scores: Float[Tensor, "batch length depth"],
    counts: MaskCounts,
    n_masked_next: Int[Tensor, " batch"],
    *,
    gumbel_scale: float = 0.0,
    generator: torch.Generator | None = None,
) -> MaskCounts:
    """New mask counts after revealing the most confident masked slots.

    Known slots stay known. Gumbel noise of scale ``gumbel_scale`` is added to the scores of masked
    slots, then a cumulative minimum over depth forces coarse-to-fine order (a fine token is never
    surer than the coarser ones of its position), and the best slots are revealed until exactly
    ``n_masked_next[b]`` stay masked. Ties go to the coarser depth, so the masked depths of every
    position stay a top-contiguous block.

    Args:
        scores: ``[batch, length, depth]`` confidence of each proposed token (higher = surer).
        counts: ``[batch, length]`` current masked depths per position.
        n_masked_next: ``[batch]`` slots that must stay masked, at most the current number.

    Returns:
        ``[batch, length]`` counts, never above ``counts``.
    """
    batch, length, depth = scores.shape
    masked = depth_mask(counts, depth)
    current = masked.sum(dim=(1, 2))
    if bool((n_masked_next > current).any()) or bool((n_masked_next < 0).any()):
        raise ValueError("n_masked_next must lie between 0 and the current number of masked slots")
    scores = scores.float()
    if gumbel_scale > 0:
        uniform = torch.rand(scores.shape, generator=generator, device=scores.device)
        scores = scores + gumbel_scale * -torch.log(-torch.log(uniform.clamp(1e-20, 1.0)))
    scores = torch.where(masked, scores, torch.full_like(scores, float("inf")))
    scores = torch.cummin(scores, dim=2).values
    # Depth-major flattening + stable sort: among equal scores the coarser depth ranks first.
    flat = rearrange(scores, "b l d -> b (d l)")
    order = torch.sort(flat, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(
        -1, order, torch.arange(flat.shape[-1], device=flat.device).expand_as(order)
    )
    known = ranks < (length * depth - n_masked_next)[:, None]
    known = rearrange(known, "b (d l) -> b l d", d=depth)
    return depth - known.sum(-1)

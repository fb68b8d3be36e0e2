"""Masking schedules: ``gamma(r)``, the fraction of tokens masked at progress ``r`` in ``[0, 1]``.

A schedule is anything with ``__call__(r) -> gamma(r)`` (the :class:`MaskSchedule` protocol), with
``gamma(0) = 1`` (everything masked) and ``gamma(1) = 0`` (nothing masked), non-increasing between.
Training and sampling schedules are chosen independently.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from attrs import frozen
from jaxtyping import Float
from torch import Tensor

__all__ = ["MaskSchedule", "CosineSchedule", "masked_count"]


@runtime_checkable
class MaskSchedule(Protocol):
    """A masking schedule ``gamma``: maps progress ``r`` (any shape) to the masked fraction."""

    def __call__(self, r: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """``gamma(r)`` elementwise, with ``gamma(0) = 1`` and ``gamma(1) = 0``."""
        ...


@frozen
class CosineSchedule:
    """MaskGIT's cosine schedule ``gamma(r) = cos(pi r / 2)``."""

    def __call__(self, r: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """``cos(pi r / 2)`` elementwise."""
        return torch.cos(r * (math.pi / 2)).clamp(0.0, 1.0)


def masked_count(
    schedule: MaskSchedule, r: Float[Tensor, "*shape"], total: int, *, minimum: int = 1
) -> Tensor:
    """Number of masked slots ``ceil(gamma(r) * total)``, clamped to ``[minimum, total]``.

    Args:
        schedule: the masking schedule ``gamma``.
        r: progress values in ``[0, 1]`` (any shape).
        total: number of maskable slots (``L * D``).
        minimum: lower clamp (1 for training, so that every sample has a target; 0 at sampling).

    Returns:
        ``Int`` tensor of the same shape as ``r``.
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    # The small epsilon keeps float noise (gamma * total = 3.0000001) from adding a slot.
    n = torch.ceil(schedule(r) * total - 1e-6).long()
    return n.clamp(minimum, total)

"""Masking schedules: ``gamma(r)``, the fraction of tokens masked at progress ``r`` in ``[0, 1]``.

A schedule is anything with ``__call__(r) -> gamma(r)`` (the :class:`MaskSchedule` protocol), with
``gamma(0) = 1`` (everything masked) and ``gamma(1) = 0`` (nothing masked), non-increasing between.
Training and sampling schedules are chosen independently.

Offered schedules (MaskGIT's family):

| name | ``gamma(r)`` |
| --- | --- |
| ``cosine`` | ``cos(pi r / 2)`` |
| ``linear`` | ``1 - r`` |
| ``arccos`` | ``(2 / pi) arccos(r)`` |
| ``power`` | ``1 - r ** exponent`` (``exponent > 0``; 1 is linear, 2 MaskGIT's "square") |

:func:`schedule_from_name` builds one from its name (for configs and command lines).
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import torch
from attrs import field, frozen
from jaxtyping import Float, Int
from torch import Tensor

__all__ = [
    "MaskSchedule",
    "CosineSchedule",
    "LinearSchedule",
    "ArccosSchedule",
    "PowerSchedule",
    "SCHEDULES",
    "schedule_from_name",
    "masked_count",
]


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


@frozen
class LinearSchedule:
    """The linear schedule ``gamma(r) = 1 - r``."""

    def __call__(self, r: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """``1 - r`` elementwise, clamped to ``[0, 1]``."""
        return (1.0 - r).clamp(0.0, 1.0)


@frozen
class ArccosSchedule:
    """The arccos schedule ``gamma(r) = (2 / pi) arccos(r)``: masks fewer tokens early than cosine.

    ``r`` is clamped to ``[0, 1]`` first (``arccos`` is undefined outside ``[-1, 1]``).
    """

    def __call__(self, r: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """``(2 / pi) arccos(r)`` elementwise."""
        return (torch.arccos(r.clamp(0.0, 1.0)) * (2 / math.pi)).clamp(0.0, 1.0)


def _positive(instance: object, attribute: Any, value: object) -> None:
    if not (isinstance(value, float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


@frozen
class PowerSchedule:
    """The power schedule ``gamma(r) = 1 - r ** exponent``.

    Attributes:
        exponent: ``> 0``. ``1`` is the linear schedule; ``2`` MaskGIT's "square", ``3`` its
            "cubic". Larger exponents keep more tokens masked for longer.
    """

    exponent: float = field(default=2.0, converter=float, validator=_positive)

    def __call__(self, r: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        """``1 - r ** exponent`` elementwise (``r`` clamped to ``[0, 1]``)."""
        return (1.0 - r.clamp(0.0, 1.0) ** self.exponent).clamp(0.0, 1.0)


SCHEDULES: dict[str, type] = {
    "cosine": CosineSchedule,
    "linear": LinearSchedule,
    "arccos": ArccosSchedule,
    "power": PowerSchedule,
}
"""The schedules :func:`schedule_from_name` knows, by name."""


def schedule_from_name(name: str, **kwargs: Any) -> MaskSchedule:
    """Build a schedule from its name (case-insensitive), e.g. ``schedule_from_name("power",
    exponent=3)``.

    Args:
        name: one of ``cosine``, ``linear``, ``arccos``, ``power``.
        **kwargs: the schedule's parameters (only ``power`` has one: ``exponent``).

    Returns:
        The schedule, a :class:`MaskSchedule`.

    Raises:
        ValueError: unknown name (the message lists the valid ones), or parameters the schedule
            does not take or does not accept.
    """
    key = name.strip().lower()
    if key not in SCHEDULES:
        valid = ", ".join(sorted(SCHEDULES))
        raise ValueError(f"unknown masking schedule {name!r}; valid names: {valid}")
    try:
        return SCHEDULES[key](**kwargs)
    except TypeError as error:
        raise ValueError(f"bad parameters {kwargs!r} for the {key!r} schedule: {error}") from None


def masked_count(
    schedule: MaskSchedule,
    r: Float[Tensor, "*shape"],
    total: int | Int[Tensor, "*shape"],
    *,
    minimum: int = 1,
) -> Tensor:
    """Number of masked slots ``ceil(gamma(r) * total)``, clamped to ``[minimum, total]``.

    Args:
        schedule: the masking schedule ``gamma``.
        r: progress values in ``[0, 1]`` (any shape).
        total: number of maskable slots (``L * D``): one int, or one per element of ``r`` (e.g.
            per sample, when padding leaves each sample its own number of real slots).
        minimum: lower clamp (1 for training, so that every sample has a target; 0 at sampling).

    Returns:
        ``Int`` tensor of the same shape as ``r``.
    """
    if isinstance(total, int) and total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    # The small epsilon keeps float noise (gamma * total = 3.0000001) from adding a slot.
    n = torch.ceil(schedule(r) * total - 1e-6).long()
    return torch.minimum(n.clamp_min(minimum), torch.as_tensor(total, device=n.device))

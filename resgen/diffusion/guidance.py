"""Guiders: combine conditional and unconditional network outputs at sampling time."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from attrs import field, frozen, validators
from jaxtyping import Float
from torch import Tensor

__all__ = ["Guider", "ClassifierFreeGuidance"]


@runtime_checkable
class Guider(Protocol):
    """A plug point: ``combine(cond, uncond, progress) -> guided`` (same shape as the inputs)."""

    def combine(
        self, cond: Float[Tensor, "*shape"], uncond: Float[Tensor, "*shape"], progress: float
    ) -> Float[Tensor, "*shape"]:
        """Guided output at sampling ``progress`` in ``[0, 1]``."""
        ...


@frozen
class ClassifierFreeGuidance:
    """``uncond + w (cond - uncond)``, with the scale constant or ramped linearly with progress.

    Attributes:
        scale: guidance scale ``w`` (1 = no guidance).
        ramp: if true, ``w`` grows linearly from 1 at the start to ``scale`` at the end.
        start: guidance applies only for progress in ``[start, stop]``; elsewhere ``w = 1``.
        stop: see ``start``.
    """

    scale: float = field(default=2.0, validator=validators.ge(0.0))
    ramp: bool = False
    start: float = field(default=0.0, validator=[validators.ge(0.0), validators.le(1.0)])
    stop: float = field(default=1.0, validator=[validators.ge(0.0), validators.le(1.0)])

    def weight(self, progress: float) -> float:
        """The guidance scale at ``progress`` in ``[0, 1]``."""
        if not self.start <= progress <= self.stop:
            return 1.0
        if self.ramp:
            return 1.0 + (self.scale - 1.0) * progress
        return self.scale

    def combine(
        self, cond: Float[Tensor, "*shape"], uncond: Float[Tensor, "*shape"], progress: float
    ) -> Float[Tensor, "*shape"]:
        """``uncond + w(progress) * (cond - uncond)``."""
        return uncond + self.weight(progress) * (cond - uncond)

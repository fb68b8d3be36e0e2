"""Guiders: combine conditional and unconditional network outputs at sampling time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from attrs import field, frozen, validators
from jaxtyping import Float
from torch import Tensor

from resgen.typing import Hidden

__all__ = ["Guider", "ClassifierFreeGuidance", "GuidedPasses"]

_Output = TypeVar("_Output", bound=Tensor)


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


@frozen
class GuidedPasses:
    """One sampling step's network passes: the conditional one and, under guidance, the
    unconditional one, with the guider that combines them.

    A sampler's head decides *what* is guided: :meth:`guide` reads one output (e.g. mixture or
    token logits) from both passes and combines that. Why not combine the hidden states before
    the head: a mixture's means and scales are not linear in the guidance direction, and guided
    hidden states push the means far from the codewords they stand for (ResGen then writes
    tokens its chosen component never meant; see the Results page).

    Attributes:
        cond: ``[batch, length, width]`` hidden states of the conditional pass.
        uncond: ``[batch, length, width]`` of the unconditional pass, or ``None`` (no guidance).
        guider: combines an output of the two passes (given with ``uncond``).
        progress: sampling progress in ``[0, 1]`` (for scheduled guidance scales).
    """

    cond: Hidden
    uncond: Hidden | None = None
    guider: Guider | None = None
    progress: float = 1.0

    def __attrs_post_init__(self) -> None:
        if (self.uncond is None) != (self.guider is None):
            raise ValueError("an unconditional pass and a guider must be given together")

    def guide(self, read: Callable[[Hidden], _Output]) -> _Output:
        """``read`` applied to the conditional pass, guided by its value on the unconditional one
        (``guider.combine(read(cond), read(uncond), progress)``) when there is one."""
        out = read(self.cond)
        if self.uncond is None or self.guider is None:
            return out
        return self.guider.combine(out, read(self.uncond), self.progress)

    def guided_hidden(self) -> Hidden:
        """The hidden states themselves combined (the guidance of earlier releases)."""
        return self.guide(lambda hidden: hidden)

"""An exponential moving average of a stage's weights (``StageSpec.ema_decay``).

Sampling from an average of the last few hundred steps' weights, rather than from the last step's,
smooths out the noise of the final updates; diffusion and masked generative models commonly do it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """Keeps ``average <- decay_n * average + (1 - decay_n) * parameter`` after every update.

    The decay warms up as ``decay_n = min(decay, (1 + n) / (10 + n))`` at the ``n``-th update, so
    the first averages follow the weights closely instead of remembering their random start.

    Args:
        params: the trained parameters (any shapes); the average starts as a copy of them.
        decay: the decay in ``(0, 1)``; ``1 / (1 - decay)`` steps is the averaging horizon.

    Raises:
        ValueError: ``decay`` outside ``(0, 1)``.
    """

    def __init__(self, params: Sequence[nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the averaging decay must lie in (0, 1), got {decay}")
        self.params = list(params)
        self.decay = decay
        self.updates = 0
        self.averages = [p.detach().clone() for p in self.params]

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the parameters' current values into the average (call after each optimizer step)."""
        weight = 1.0 - self.current_decay()
        for average, param in zip(self.averages, self.params, strict=True):
            average.lerp_(param.detach(), weight)
        self.updates += 1

    @torch.no_grad()
    def _exchange(self) -> None:
        for average, param in zip(self.averages, self.params, strict=True):
            trained = param.detach().clone()
            param.copy_(average)
            average.copy_(trained)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Inside the block the parameters hold the averages; their trained values return after."""
        self._exchange()
        try:
            yield
        finally:
            self._exchange()

    @torch.no_grad()
    def apply(self) -> None:
        """Copy the averages into the parameters for good (at the end of training)."""
        for average, param in zip(self.averages, self.params, strict=True):
            param.copy_(average)

    def state_dict(self) -> dict[str, Any]:
        """The number of updates and the averages (on the CPU), to resume exactly."""
        return {"updates": self.updates, "averages": [a.detach().cpu() for a in self.averages]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises:
            ValueError: the saved averages do not match the parameters in number or shape.
        """
        saved: list[Tensor] = state["averages"]
        shapes = [tuple(p.shape) for p in self.params]
        if [tuple(a.shape) for a in saved] != shapes:
            raise ValueError(
                f"the saved weight average holds {len(saved)} tensors that do not match the "
                f"{len(shapes)} parameters being trained"
            )
        self.updates = int(state["updates"])
        with torch.no_grad():
            for average, value in zip(self.averages, saved, strict=True):
                average.copy_(value)

"""The :class:`Recipe` protocol: what ``resgen train`` needs of a recipe module."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["Recipe"]


@runtime_checkable
class Recipe(Protocol):
    """A recipe module: named presets, the command line's overrides, and ``run``.

    Every module of :data:`resgen.recipes.RECIPES` satisfies it (a test checks the members and
    their parameters), so the command line calls it without looking at its signatures. A module
    satisfies a protocol by having the members: ``isinstance(module, Recipe)`` checks them.

    Attributes:
        PRESETS: preset name -> the recipe's configuration (an attrs class).
    """

    PRESETS: Mapping[str, Any]

    def configure(
        self, preset: str, *, generator: str | None = None, depth: int | None = None
    ) -> Any:
        """The configuration of ``preset`` with the command line's overrides (``--model``,
        ``--depth``); ``None`` keeps the preset's value.

        Raises:
            ValueError: the preset is unknown, or the recipe does not take an override given.
        """
        ...

    def run(
        self,
        out_dir: str | Path,
        config: Any = None,
        *,
        data_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
    ) -> dict[str, Any]:
        """Run every stage into ``out_dir`` (resuming what is there) and return the metrics.

        Raises:
            ValueError: the device is unknown, unavailable or not one the recipe runs on.
        """
        ...

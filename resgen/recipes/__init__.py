"""Bundled recipes: full systems composed from the library's parts, one readable file each.

:data:`RECIPES` maps a recipe name (``resgen train NAME``) to its module path and a one-line
description. Recipe modules are imported only when run (:func:`load_recipe`), so listing them
stays instant. Every recipe module satisfies :class:`~resgen.recipes.protocol.Recipe`.
"""

from __future__ import annotations

import importlib

from resgen.recipes.protocol import Recipe

__all__ = ["RECIPES", "Recipe", "load_recipe"]

RECIPES: dict[str, tuple[str, str]] = {
    "image-fashion": (
        "resgen.recipes.image_fashion",
        "class-conditional ResGen on Fashion-MNIST (codec, classifier, generator, samples)",
    ),
    "imagenet": (
        "resgen.recipes.imagenet",
        "class-conditional ResGen on ImageNet 256 (image folder, tokenizer, code store, "
        "generator, 50 samples per class, FID/IS/precision/recall); runs under torchrun",
    ),
    "tts-synth": (
        "resgen.recipes.tts_synth",
        "zero-shot TTS on the synthetic multi-speaker corpus (codec, ResGen, AR baseline, WAVs)",
    ),
}
"""``name -> (module, description)``; each module is a :class:`~resgen.recipes.protocol.Recipe`."""


def load_recipe(name: str) -> Recipe:
    """Import the recipe ``name`` of :data:`RECIPES`.

    Raises:
        ValueError: ``name`` is not a recipe (the message lists them).
        TypeError: its module does not satisfy :class:`~resgen.recipes.protocol.Recipe`.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(RECIPES)}")
    module = importlib.import_module(RECIPES[name][0])
    if not isinstance(module, Recipe):
        raise TypeError(f"{RECIPES[name][0]} is not a Recipe (PRESETS, configure, run)")
    return module

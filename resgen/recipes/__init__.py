"""Bundled recipes: full systems composed from the library's parts, one readable file each.

:data:`RECIPES` maps a recipe name (``resgen train NAME``) to its module path and a one-line
description. Recipe modules are imported only when run, so listing them stays instant.
"""

from __future__ import annotations

__all__ = ["RECIPES"]

RECIPES: dict[str, tuple[str, str]] = {
    "image-fashion": (
        "resgen.recipes.image_fashion",
        "class-conditional ResGen on Fashion-MNIST (codec, classifier, generator, samples)",
    ),
    "tts-synth": (
        "resgen.recipes.tts_synth",
        "zero-shot TTS on the synthetic multi-speaker corpus (codec, ResGen, AR baseline, WAVs)",
    ),
}
"""``name -> (module, description)``; each module has ``PRESETS`` and ``run(out_dir, config)``."""

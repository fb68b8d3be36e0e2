"""Shape aliases shared by every module (DESIGN.md section 2).

Dimension names: ``batch`` (B), ``length`` (L, token positions), ``depth`` (D, RVQ depth, index 0
is the coarsest), ``codes`` (K, codebook size), ``dim`` (C, code dimension), ``width`` (transformer
width), ``comp`` (mixture components). Everything is channels-last.
"""

from __future__ import annotations

from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = [
    "Tokens",
    "MaskCounts",
    "DepthMask",
    "Padding",
    "Latents",
    "DepthEmbeddings",
    "Codebooks",
    "Labels",
    "Hidden",
    "Images",
    "PhonemeIds",
    "PhonemePadding",
    "FrameText",
]

Tokens = Int[Tensor, "batch length depth"]
"""RVQ token indices, one per position and depth."""

MaskCounts = Int[Tensor, "batch length"]
"""``k[b, i]`` in ``0..D``: how many of the finest depths of position ``i`` are masked."""

DepthMask = Bool[Tensor, "batch length depth"]
"""Boolean view of a mask state: ``True`` where a token is masked."""

Padding = Bool[Tensor, "batch length"]
"""``True`` at padded positions of variable-length sequences."""

Latents = Float[Tensor, "batch length dim"]
"""Continuous vectors in code space (one per position)."""

DepthEmbeddings = Float[Tensor, "batch length depth dim"]
"""Per-depth codeword embeddings ``e_j(x_ij)``."""

Codebooks = Float[Tensor, "depth codes dim"]
"""One codebook per depth."""

Labels = Int[Tensor, "batch"]
"""Class labels; the null (unconditional) label is ``num_classes``."""

Hidden = Float[Tensor, "batch length width"]
"""Transformer hidden states."""

Images = Float[Tensor, "batch channels height width"]
"""Images in ``[-1, 1]``, channels-first as torch convolutions expect."""

PhonemeIds = Int[Tensor, "batch phonemes"]
"""Phoneme ids of the text-to-speech networks (0 = padding)."""

PhonemePadding = Bool[Tensor, "batch phonemes"]
"""``True`` at padded phonemes."""

FrameText = Int[Tensor, "batch length"]
"""Index of the phoneme laid over each speech position (``-1`` = none)."""

"""Structured quantizer dropout: train with random depth cut-offs (SoundStream / EnCodec style).

A sample whose cut-off is ``c`` is reconstructed from its first ``c`` depths only, so the quantizer
(and the decoder behind it) learns to work at every bitrate ``1..D``: at inference the first ``d``
tokens of every position can be encoded and decoded on their own.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

__all__ = ["sample_depth_cutoffs"]


def sample_depth_cutoffs(
    batch: int,
    depth: int,
    *,
    prob: float,
    min_depth: int = 1,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> Int[Tensor, " batch"]:
    """Draw a depth cut-off per sample.

    With probability ``prob`` a sample keeps only its first ``c`` depths, ``c`` uniform in
    ``min_depth..depth``; otherwise it keeps all ``depth`` depths.

    Args:
        batch: number of samples.
        depth: RVQ depth D.
        prob: probability that a sample is cut.
        min_depth: smallest cut-off, in ``1..depth``.
        device: where the result lives.
        generator: optional random generator, on any device (the draws are made there, then
            moved to ``device``); without one, the CPU's global generator.

    Returns:
        ``[batch]`` int64 cut-offs in ``min_depth..depth``.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob must lie in [0, 1], got {prob}")
    if not 1 <= min_depth <= depth:
        raise ValueError(f"min_depth must lie in 1..{depth}, got {min_depth}")
    source = generator.device if generator is not None else torch.device("cpu")
    cut = torch.rand(batch, generator=generator, device=source) < prob
    drawn = torch.randint(min_depth, depth + 1, (batch,), generator=generator, device=source)
    return torch.where(cut, drawn, torch.full_like(drawn, depth)).to(device)

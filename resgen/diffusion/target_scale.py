"""Per-count normalisation of ResGen's target: a fixed RMS for each number of masked depths.

The cumulative embedding of the top ``k`` depths shrinks fast as ``k`` falls (on the image codec:
RMS 0.44 with every depth masked, 0.002 with only the finest), so a mixture fitted in code
space sees targets whose sizes differ by two orders of magnitude, and any weighting that makes
the coarse positions learn (beta-NLL) leaves the fine ones nearly without gradient. Dividing the
target by a fixed RMS per count puts every count on the same footing; the sampler multiplies its
draw back. The scale is a property of the codec and its data, fixed before training.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from resgen.typing import DepthEmbeddings, MaskCounts, Padding

__all__ = ["count_target_rms", "scale_of_counts"]


def count_target_rms(
    embeddings: DepthEmbeddings, padding: Padding | None = None
) -> Float[Tensor, " counts"]:
    """RMS per dimension of the cumulative embedding of the top ``k`` depths, for ``k = 0..D``.

    Args:
        embeddings: ``[batch, length, depth, dim]`` per-depth codeword embeddings of data tokens.
        padding: optional ``[batch, length]``, ``True`` at positions left out.

    Returns:
        ``[depth + 1]`` scales; entry ``k`` is ``sqrt(mean(sum_{j >= D-k} e_j ** 2))`` over
        positions and dimensions, entry 0 (nothing masked, no target) is 1.
    """
    if embeddings.ndim != 4:
        raise ValueError(f"expected embeddings [batch, length, depth, dim], got {embeddings.shape}")
    finest_first = embeddings.float().flip(2).cumsum(2)  # index k - 1: the top k depths
    if padding is not None:
        finest_first = finest_first[~padding]
    else:
        finest_first = finest_first.flatten(0, 1)
    if finest_first.shape[0] == 0:
        raise ValueError("no position to measure the target scales on")
    rms = finest_first.pow(2).mean(dim=(0, 2)).sqrt()
    if bool((rms <= 0).any()):
        raise ValueError("a count's cumulative embedding is zero everywhere: cannot normalise it")
    return torch.cat([rms.new_ones(1), rms])


def scale_of_counts(
    scales: Float[Tensor, " counts"], counts: MaskCounts
) -> Float[Tensor, "batch length"]:
    """Each position's target scale ``scales[k_i]`` ``[batch, length]`` for counts ``k``."""
    return scales.to(counts.device)[counts]

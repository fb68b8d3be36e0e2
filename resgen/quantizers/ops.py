"""Nearest-codeword search without materialising the full ``N x K`` distance matrix.

The torch implementation walks the codebook in blocks of ``block_codes`` codes and keeps a running
minimum (and, when asked, a running log-sum-exp for the per-token log-softmax used by confidence
rules), so peak memory is ``N * block_codes`` rather than ``N * K``.
"""

from __future__ import annotations

import torch
from attrs import frozen
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["NearestCode", "nearest_code"]


@frozen
class NearestCode:
    """Result of :func:`nearest_code`.

    Attributes:
        indices: ``Int[N]``, index of the nearest code of each vector.
        distances: ``Float[N]``, squared Euclidean distance to that code.
        log_probs: ``Float[N]`` or ``None``: ``log softmax(-d^2 / temperature)`` of the chosen
            code, present when a temperature was given.
    """

    indices: Int[Tensor, " n"]
    distances: Float[Tensor, " n"]
    log_probs: Float[Tensor, " n"] | None = None


def nearest_code(
    vectors: Float[Tensor, "n dim"],
    codebook: Float[Tensor, "codes dim"],
    *,
    temperature: float | None = None,
    block_codes: int = 4096,
) -> NearestCode:
    """Find the nearest codeword of each vector (squared Euclidean distance, ties to lowest index).

    Args:
        vectors: ``[n, dim]`` query vectors.
        codebook: ``[codes, dim]`` codewords.
        temperature: if given, also return the log-softmax of ``-distance / temperature`` at the
            chosen code (a per-token confidence).
        block_codes: codes scored per block; bounds memory at ``n * block_codes`` floats.

    Returns:
        A :class:`NearestCode` with ``indices``, ``distances`` (and ``log_probs``) of shape ``[n]``.
    """
    if block_codes < 1:
        raise ValueError(f"block_codes must be >= 1, got {block_codes}")
    # Distances in float32 even under autocast: argmin over half-precision distances is unstable.
    with torch.autocast(device_type=vectors.device.type, enabled=False):
        x = vectors.float()
        cb = codebook.float()
        x_sq = x.pow(2).sum(-1)
        n = x.shape[0]
        best = torch.full((n,), float("inf"), device=x.device)
        best_idx = torch.zeros(n, dtype=torch.long, device=x.device)
        lse = torch.full((n,), float("-inf"), device=x.device) if temperature else None
        for start in range(0, cb.shape[0], block_codes):
            block = cb[start : start + block_codes]
            # ||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2, computed as one addmm per block.
            dist = torch.addmm(block.pow(2).sum(-1)[None, :], x, block.t(), alpha=-2.0)
            dist = dist + x_sq[:, None]
            block_best, block_idx = dist.min(dim=-1)
            better = block_best < best
            best = torch.where(better, block_best, best)
            best_idx = torch.where(better, block_idx + start, best_idx)
            if lse is not None:
                lse = torch.logaddexp(lse, torch.logsumexp(-dist / temperature, dim=-1))
        best = best.clamp_min(0.0)
        log_probs = None if lse is None else -best / temperature - lse
    return NearestCode(indices=best_idx, distances=best, log_probs=log_probs)

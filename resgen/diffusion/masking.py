"""The fine-to-coarse masking process over RVQ tokens.

A mask state is a count ``k[b, i]`` in ``0..D`` per position: the ``k`` finest depths
``D-k .. D-1`` are masked, the coarse prefix ``0 .. D-k-1`` is known. Counts are drawn by picking
``n`` of the ``L * D`` slots uniformly without replacement, which makes ``k`` a multivariate
hypergeometric draw, then relabelling each position's picked slots as its top depths.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from jaxtyping import Bool, Float, Int
from torch import Tensor

from resgen.diffusion.schedules import MaskSchedule, masked_count
from resgen.typing import DepthEmbeddings, DepthMask, Latents, MaskCounts, Padding

__all__ = [
    "sample_mask_counts",
    "sample_training_counts",
    "depth_mask",
    "split_embeddings",
    "split_on_guess",
]


def sample_mask_counts(
    n_masked: Int[Tensor, " batch"],
    length: int,
    depth: int,
    *,
    padding: Padding | None = None,
    generator: torch.Generator | None = None,
) -> MaskCounts:
    """Spread ``n_masked[b]`` masked slots uniformly over the ``length * depth`` slots of row ``b``.

    Returns counts ``k`` ``[batch, length]`` with ``k.sum(-1) == n_masked`` and ``0 <= k <= depth``:
    a multivariate hypergeometric draw with ``length`` urns of ``depth`` balls each. Padded
    positions (``padding`` ``[batch, length]``, ``True`` = pad) hold no slots and get ``k = 0``;
    ``n_masked`` must then not exceed the number of real slots.
    """
    batch = n_masked.shape[0]
    device = n_masked.device
    keys = torch.rand(batch, length, depth, generator=generator, device=device)
    if padding is not None:
        keys = keys.masked_fill(padding[..., None], 2.0)  # padded slots sort last, never picked
    available = length * depth if padding is None else (~padding).sum(-1) * depth
    if bool((n_masked < 0).any()) or bool((n_masked > available).any()):
        raise ValueError("n_masked must lie in 0..(number of unpadded slots)")
    ranks = rearrange(keys, "b l d -> b (l d)").argsort(-1).argsort(-1)
    picked = rearrange(ranks < n_masked[:, None], "b (l d) -> b l d", l=length)
    return reduce(picked.long(), "b l d -> b l", "sum")


def sample_training_counts(
    schedule: MaskSchedule,
    batch: int,
    length: int,
    depth: int,
    *,
    padding: Padding | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> MaskCounts:
    """Training-time mask counts: ``r ~ U(0, 1)``, ``n = ceil(gamma(r) * L * D)`` in ``[1, L*D]``.

    With ``padding``, ``L * D`` counts only the real positions of each sample. Returns ``[batch,
    length]`` counts (see :func:`sample_mask_counts`).
    """
    r = torch.rand(batch, generator=generator, device=device)
    real = (
        torch.full((batch,), length, device=device)
        if padding is None
        else (~padding).sum(-1).to(device)
    )
    n = masked_count(schedule, r, real * depth, minimum=1)
    return sample_mask_counts(n, length, depth, padding=padding, generator=generator)


def depth_mask(counts: MaskCounts, depth: int) -> DepthMask:
    """Boolean view ``[batch, length, depth]`` of a mask state: ``True`` at depths ``>= D - k``."""
    if counts.numel() and (counts.min() < 0 or counts.max() > depth):
        raise ValueError(f"mask counts must lie in 0..{depth}")
    levels = torch.arange(depth, device=counts.device)
    return levels >= (depth - counts)[..., None]


def split_embeddings(embeddings: DepthEmbeddings, counts: MaskCounts) -> tuple[Latents, Latents]:
    """Split per-depth embeddings ``[batch, length, depth, dim]`` by a mask state.

    Returns:
        ``(visible, target)``, each ``[batch, length, dim]``: the sum of the known (coarse)
        embeddings, the network's input; and the cumulative embedding of the masked (fine) depths,
        ResGen's regression target.
    """
    masked: Bool[Tensor, "batch length depth"] = depth_mask(counts, embeddings.shape[2])
    target: Float[Tensor, "batch length dim"] = (embeddings * masked[..., None]).sum(2)
    visible = (embeddings * ~masked[..., None]).sum(2)
    return visible, target


def split_on_guess(
    embeddings: DepthEmbeddings, guess: DepthEmbeddings, counts: MaskCounts
) -> tuple[Latents, Latents]:
    """:func:`split_embeddings` with the known depths read from the network's own guess.

    At sampling time the known depths of a position are tokens the sampler chose from the
    network's earlier predictions, not the data's tokens. Training on such inputs (scheduled
    sampling) teaches the network to correct its own guess instead of trusting it.

    Args:
        embeddings: ``[batch, length, depth, dim]`` per-depth embeddings of the data's tokens.
        guess: ``[batch, length, depth, dim]`` per-depth embeddings of the guessed tokens.
        counts: ``[batch, length]`` mask state.

    Returns:
        ``(visible, target)``, each ``[batch, length, dim]``: the sum of the guess's known
        depths, and what must be added to it to reach the data's cumulative embedding.
    """
    if guess.shape != embeddings.shape:
        raise ValueError(
            f"guess {tuple(guess.shape)} and embeddings {tuple(embeddings.shape)} differ in shape"
        )
    visible, _ = split_embeddings(guess, counts)
    return visible, embeddings.sum(2) - visible

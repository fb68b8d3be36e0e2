"""The few ``torch.distributed`` collectives that keep codebook state identical across ranks.

Every helper is a no-op (returns its input) when no process group is initialised or the world has
one rank, so single-process code pays nothing. Each is called unconditionally on every rank at the
same point of the quantizer's update: whether a collective runs never depends on rank-local data,
which is what keeps a rank that happens to see a dead code (or an empty batch) from hanging the
others.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from jaxtyping import Float
from torch import Tensor

__all__ = ["world_size", "is_distributed", "all_reduce_sum", "broadcast", "all_gather_rows"]


def world_size() -> int:
    """Number of ranks of the default process group (1 when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_distributed() -> bool:
    """Whether a default process group with more than one rank is initialised."""
    return world_size() > 1


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over ranks in place (no-op on one rank).

    Args:
        tensor: any shape; every rank must pass the same shape and dtype.

    Returns:
        ``tensor`` itself, now holding the sum.
    """
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s copy, in place (no-op on one rank).

    Args:
        tensor: any shape; every rank must pass the same shape and dtype.
        src: the rank whose values win.

    Returns:
        ``tensor`` itself.
    """
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def all_gather_rows(rows: Float[Tensor, "n dim"]) -> Float[Tensor, "total dim"]:
    """Concatenate every rank's ``rows`` in rank order; ranks may hold different numbers of rows.

    Args:
        rows: ``[n, dim]`` on this rank (``n`` may differ across ranks, and may be 0).

    Returns:
        ``[sum of n over ranks, dim]``, identical on every rank.
    """
    if not is_distributed():
        return rows
    world = world_size()
    count = torch.tensor([rows.shape[0]], dtype=torch.long, device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    most = max(sizes)
    padded = rows.new_zeros(most, rows.shape[1])
    padded[: rows.shape[0]] = rows
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([g[:s] for g, s in zip(gathered, sizes)], dim=0)

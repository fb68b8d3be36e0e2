"""k-means (k-means++ seeding, then Lloyd iterations) used to initialise codebooks from data."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from resgen.quantizers.ops import nearest_code

__all__ = ["kmeans_plus_plus", "kmeans"]


def kmeans_plus_plus(
    x: Float[Tensor, "n dim"],
    k: int,
    *,
    max_rounds: int = 256,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "k dim"]:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): new centres are drawn with probability
    proportional to their squared distance to the nearest centre chosen so far.

    Exact (one centre per round) when ``k <= max_rounds``; for larger ``k`` each round draws
    ``ceil(k / max_rounds)`` centres at once (without replacement, a k-means||-style batch), so
    the cost stays ``O(n * k * dim)`` in matmuls instead of ``k`` sequential passes. With fewer
    distinct points than ``k`` the remaining centres are copies of random points (a dead-code
    restart will move them once they prove unused).

    Args:
        x: ``[n, dim]`` float32 points, ``n >= 1``.
        k: number of centres.
        max_rounds: most sequential sampling rounds.
        generator: optional random generator, on any device (the draws are made there);
            without one, the CPU's global generator.

    Returns:
        ``[k, dim]`` centres.
    """
    n = x.shape[0]
    if n == 0:
        raise ValueError("k-means++ needs at least one point")
    device = x.device
    source = generator.device if generator is not None else torch.device("cpu")
    per_round = -(-k // max(1, max_rounds))
    centers = x.new_empty(k, x.shape[1])
    first = int(torch.randint(0, n, (1,), generator=generator, device=source))
    centers[0] = x[first]
    closest = (x - x[first]).pow(2).sum(-1).to(source)
    filled = 1
    while filled < k:
        m = min(per_round, k - filled)
        positive = int((closest > 0).sum())
        if positive < m:  # fewer distinct points than centres: fill with random points
            rest = torch.randint(0, n, (k - filled,), generator=generator, device=source)
            centers[filled:] = x[rest.to(device)]
            break
        picks = torch.multinomial(closest, m, replacement=False, generator=generator)
        new = x[picks.to(device)]
        centers[filled : filled + m] = new
        filled += m
        found = nearest_code(x, new, backend="torch").distances.to(source)
        closest = torch.minimum(closest, found)
    return centers


def kmeans(
    x: Float[Tensor, "n dim"],
    k: int,
    iters: int,
    *,
    plus_plus: bool = True,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "k dim"]:
    """Cluster ``x`` into ``k`` centres: seeding, then ``iters`` Lloyd iterations.

    Args:
        x: ``[n, dim]`` points.
        k: number of centres.
        iters: Lloyd iterations (0: seeding only).
        plus_plus: k-means++ seeding if ``True``, else ``k`` random points.
        generator: optional random generator, on any device (the draws are made there);
            without one, the CPU's global generator.

    Returns:
        ``[k, dim]`` float32 centres; a centre whose cluster empties keeps its position.
    """
    x = x.detach().float()
    n = x.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one point")
    source = generator.device if generator is not None else torch.device("cpu")
    if plus_plus:
        centers = kmeans_plus_plus(x, k, generator=generator)
    else:
        if n >= k:
            picks = torch.randperm(n, generator=generator, device=source)[:k]
        else:
            picks = torch.randint(0, n, (k,), generator=generator, device=source)
        centers = x[picks.to(x.device)].clone()
    for _ in range(iters):
        idx = nearest_code(x, centers, backend="torch").indices
        sums = torch.zeros_like(centers).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k).float()
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
    return centers

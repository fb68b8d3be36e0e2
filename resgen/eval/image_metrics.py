"""Inception Score and k-nearest-neighbour precision/recall.

* :func:`inception_score` (Salimans et al., 2016): ``exp(E_x KL(p(y|x) || p(y)))`` over class
  probabilities, averaged over ``splits`` equal chunks (mean and standard deviation reported, as in
  the original code). The offline FID Inception file stops at the 2048-d pool layer (it has no
  1008-way classifier), so offline the score is computed from another classifier's probabilities,
  e.g. the Fashion-MNIST classifier's softmax (a "classifier score").
* :func:`precision_recall` (Kynkäänniemi et al., 2019): each set's manifold is the union of balls
  centred on its feature vectors with radius the distance to the ``k``-th nearest neighbour within
  the set (the point itself excluded). Precision is the fraction of generated samples inside the
  real manifold; recall the fraction of real samples inside the generated manifold.
"""

from __future__ import annotations

import numpy as np
import torch
from attrs import frozen
from jaxtyping import Float
from torch import Tensor

__all__ = ["InceptionScore", "PrecisionRecall", "inception_score", "precision_recall"]


@frozen
class InceptionScore:
    """Result of :func:`inception_score`.

    Attributes:
        mean: mean of the per-split scores.
        std: standard deviation (population, ``ddof=0``) of the per-split scores.
        splits: number of splits.
    """

    mean: float
    std: float
    splits: int


@frozen
class PrecisionRecall:
    """Result of :func:`precision_recall`.

    Attributes:
        precision: fraction of generated samples inside the real manifold, in ``[0, 1]``.
        recall: fraction of real samples inside the generated manifold, in ``[0, 1]``.
        k: neighbourhood size used for the radii.
    """

    precision: float
    recall: float
    k: int


def _as_float64(x: np.ndarray | Tensor) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    return x.detach().to("cpu", torch.float64)


def inception_score(
    probs: Float[Tensor, "n classes"] | Float[np.ndarray, "n classes"], splits: int = 10
) -> InceptionScore:
    """Inception Score of a set of class-probability vectors.

    For each of ``splits`` consecutive equal chunks (the last ``n % splits`` rows are dropped):
    ``exp(mean_x sum_y p(y|x) (log p(y|x) - log p(y)))`` with ``p(y)`` the chunk's mean
    probability; computed in float64 with ``0 log 0 = 0``.

    Args:
        probs: ``[n, classes]`` probabilities (rows sum to 1; apply a softmax to logits first).
        splits: number of chunks (>= 1, at most ``n``).

    Returns:
        Mean and standard deviation over the chunks.

    Raises:
        ValueError: when rows are not probability vectors or ``splits`` is out of range.
    """
    p = _as_float64(probs)
    n = p.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be in [1, n={n}], got {splits}")
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(n, dtype=p.dtype), atol=1e-4):
        raise ValueError("probs must be non-negative rows summing to 1 (apply softmax to logits)")
    size = n // splits
    scores = []
    for chunk in p[: size * splits].split(size):
        marginal = chunk.mean(0, keepdim=True)
        kl = torch.where(chunk > 0, chunk * (chunk.log() - marginal.log()), 0.0).sum(1)
        scores.append(kl.mean().exp().item())
    return InceptionScore(mean=float(np.mean(scores)), std=float(np.std(scores)), splits=splits)


def _pairwise_distances(a: Tensor, b: Tensor, block: int) -> list[Tensor]:
    """Euclidean distances ``[len(a), len(b)]`` in row blocks (float64)."""
    return [torch.cdist(chunk, b) for chunk in a.split(block)]


def _kth_neighbour_radii(feats: Tensor, k: int, block: int) -> Tensor:
    """Distance of each row to its k-th nearest other row."""
    radii = []
    for chunk in _pairwise_distances(feats, feats, block):
        # The k+1 smallest include the point itself (distance 0).
        radii.append(chunk.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _coverage(queries: Tensor, centres: Tensor, radii: Tensor, block: int) -> float:
    """Fraction of queries within radius of at least one centre."""
    inside = [
        (chunk <= radii[None, :]).any(dim=1)
        for chunk in _pairwise_distances(queries, centres, block)
    ]
    return torch.cat(inside).double().mean().item()


def precision_recall(
    real_features: Float[Tensor, "n_real feat"] | Float[np.ndarray, "n_real feat"],
    fake_features: Float[Tensor, "n_fake feat"] | Float[np.ndarray, "n_fake feat"],
    k: int = 3,
    *,
    block: int = 1024,
) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al., 2019) of generated features.

    Distances are Euclidean, in float64, computed in blocks of ``block`` rows so that memory stays
    ``O(block * n)``. A sample on a ball's boundary counts as inside.

    Args:
        real_features: ``[n_real, feat]`` features of real samples.
        fake_features: ``[n_fake, feat]`` features of generated samples.
        k: neighbourhood size (the paper uses 3); both sets need more than ``k`` rows.
        block: rows per distance block.

    Returns:
        Precision and recall.

    Raises:
        ValueError: on too few samples or mismatched feature dimensions.
    """
    real = _as_float64(real_features)
    fake = _as_float64(fake_features)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(
            f"each set needs more than k={k} samples, "
            f"got {real.shape[0]} real, {fake.shape[0]} fake"
        )
    real_radii = _kth_neighbour_radii(real, k, block)
    fake_radii = _kth_neighbour_radii(fake, k, block)
    return PrecisionRecall(
        precision=_coverage(fake, real, real_radii, block),
        recall=_coverage(real, fake, fake_radii, block),
        k=k,
    )

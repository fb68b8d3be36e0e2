"""Inception Score and k-NN precision/recall on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resgen.eval.image_metrics import inception_score, precision_recall


def test_inception_score_extremes() -> None:
    # Confident and evenly spread over 10 classes: exp(log 10) = 10.
    onehot = torch.eye(10).repeat(5, 1)
    score = inception_score(onehot, splits=5)
    assert score.mean == pytest.approx(10.0) and score.std == pytest.approx(0.0, abs=1e-9)
    # Uniform predictions carry no information: 1.
    assert inception_score(torch.full((20, 4), 0.25), splits=2).mean == pytest.approx(1.0)


def test_inception_score_reference() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(60, 7)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for chunk in np.split(probs, 3):
        marginal = chunk.mean(0)
        scores.append(np.exp((chunk * (np.log(chunk) - np.log(marginal))).sum(1).mean()))
    got = inception_score(probs, splits=3)
    assert got.mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert got.std == pytest.approx(np.std(scores), rel=1e-8)


def test_inception_score_rejects_logits() -> None:
    with pytest.raises(ValueError, match="softmax"):
        inception_score(torch.randn(10, 3), splits=2)
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.full((4, 2), 0.5), splits=5)


def brute_force_pr(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]

    def inside(q, c, r):
        d = np.linalg.norm(q[:, None] - c[None], axis=-1)
        return (d <= r[None]).any(1).mean()

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_brute_force(k: int) -> None:
    rng = np.random.default_rng(k)
    real = rng.normal(size=(80, 6))
    fake = rng.normal(size=(70, 6)) * 1.5 + 0.5
    got = precision_recall(real, fake, k=k, block=16)
    precision, recall = brute_force_pr(real, fake, k)
    assert got.precision == pytest.approx(precision) and got.recall == pytest.approx(recall)


def test_precision_recall_known_cases() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 4))
    same = precision_recall(real, real.copy())
    assert same.precision == 1.0 and same.recall == 1.0
    far = precision_recall(real, real + 100.0)
    assert far.precision == 0.0 and far.recall == 0.0
    # A generator that collapsed onto a few real points: precise, but poor recall.
    collapsed = np.repeat(real[:3], 10, axis=0) + 1e-6 * rng.normal(size=(30, 4))
    pr = precision_recall(real, collapsed)
    assert pr.precision == 1.0 and pr.recall < 0.5


def test_precision_recall_errors() -> None:
    with pytest.raises((ValueError, TypeError), match="k=3|samples"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))
    with pytest.raises((ValueError, TypeError), match="feature dimensions|feat"):
        precision_recall(np.zeros((10, 2)), np.zeros((10, 3)))

"""Fréchet distance: against a scipy ``sqrtm`` reference, and the cached statistics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg

from resgen.eval.frechet import FeatureStats, frechet_distance, frechet_distance_from_features


def reference_fid(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula with scipy's sqrtm (what pytorch-fid computes)."""
    covmean = linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def random_gaussian(rng: np.random.Generator, dim: int, samples: int):
    x = rng.normal(size=(samples, dim)) @ rng.normal(size=(dim, dim))
    x += rng.normal(scale=3.0, size=dim)
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dim=st.integers(1, 24),
    method=st.sampled_from(["eigh", "sqrtm"]),
)
def test_matches_scipy_sqrtm(seed: int, dim: int, method: str) -> None:
    rng = np.random.default_rng(seed)
    mu1, sigma1 = random_gaussian(rng, dim, 4 * dim + 8)
    mu2, sigma2 = random_gaussian(rng, dim, 4 * dim + 8)
    expected = reference_fid(mu1, sigma1, mu2, sigma2)
    got = frechet_distance(mu1, sigma1, mu2, sigma2, method=method)
    assert abs(got - expected) <= 1e-6 * max(abs(expected), 1e-12)


def test_closed_form_for_commuting_covariances() -> None:
    # Diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 2.0])
    expected = 9.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_rank_deficient_self_distance_is_zero() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(10, 64))  # 10 samples in 64 dimensions: rank 9
    stats = FeatureStats.from_features(feats, extractor="x")
    assert stats.frechet_distance(stats) == pytest.approx(0.0, abs=1e-10)


def test_float32_inputs_are_promoted() -> None:
    rng = np.random.default_rng(1)
    mu1, sigma1 = random_gaussian(rng, 8, 40)
    mu2, sigma2 = random_gaussian(rng, 8, 40)
    f64 = frechet_distance(mu1, sigma1, mu2, sigma2)
    f32 = frechet_distance(*(x.astype(np.float32) for x in (mu1, sigma1, mu2, sigma2)))
    assert f32 == pytest.approx(f64, rel=1e-5)


def test_bad_inputs_are_named() -> None:
    eye = np.eye(3)
    # With the test suite's jaxtyping hook the shape check fires first (a TypeError).
    with pytest.raises((ValueError, TypeError), match="feature dimensions differ|feat"):
        frechet_distance(np.zeros(3), eye, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([0.0, np.nan, 0.0]), eye, np.zeros(3), eye)
    with pytest.raises((ValueError, TypeError), match="unknown method|method"):
        frechet_distance(np.zeros(3), eye, np.zeros(3), eye, method="svd")
    with pytest.raises((ValueError, TypeError), match="sigma"):
        frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), eye)


def test_stats_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(2)
    stats = FeatureStats.from_features(rng.normal(size=(30, 5)), extractor="unit-test")
    path = stats.save(tmp_path / "sub" / "stats")
    assert path.name == "stats.npz"
    loaded = FeatureStats.load(path)
    assert loaded.count == 30 and loaded.extractor == "unit-test"
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)


def test_pytorch_fid_npz_is_accepted(tmp_path) -> None:
    np.savez(tmp_path / "pf.npz", mu=np.zeros(4), sigma=np.eye(4))
    stats = FeatureStats.load(tmp_path / "pf.npz")
    assert stats.extractor == "inception-2015-12-05"


def test_stats_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        FeatureStats.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", mean=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        FeatureStats.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats.from_features(np.zeros((1, 3)), extractor="x")
    a = FeatureStats.from_features(np.random.default_rng(0).normal(size=(5, 3)), extractor="a")
    b = FeatureStats.from_features(np.random.default_rng(1).normal(size=(5, 3)), extractor="b")
    with pytest.raises(ValueError, match="different extractors"):
        a.frechet_distance(b)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n1=st.integers(2, 12),
    n2=st.integers(2, 12),
    dim=st.integers(1, 40),
)
def test_from_features_matches_statistics(seed: int, n1: int, n2: int, dim: int) -> None:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=(n1, dim)) * rng.uniform(0.5, 2, size=dim)
    x2 = rng.normal(size=(n2, dim)) + rng.normal(size=dim)
    expected = FeatureStats.from_features(x1, "x").frechet_distance(
        FeatureStats.from_features(x2, "x")
    )
    got = frechet_distance_from_features(x1, x2)
    assert abs(got - expected) <= 1e-6 * max(abs(expected), 1e-9)


def test_from_features_self_distance_is_zero() -> None:
    x = np.random.default_rng(3).normal(size=(20, 500))
    assert frechet_distance_from_features(x, x) == pytest.approx(0.0, abs=1e-9)

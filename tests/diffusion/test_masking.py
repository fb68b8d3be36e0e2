"""Masking invariants (DESIGN.md section 6) and the law of the sampled counts.

The multivariate hypergeometric reference is computed here with ``math.comb``, independently of
``resgen.diffusion.process``. Chi-square goodness-of-fit tests use scipy; each also runs a negative
control (a plausible wrong law) that the same draws must reject, so the test has power.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import TypeCheckError
from scipy.stats import chisquare

from resgen.diffusion.masking import (
    depth_mask,
    sample_mask_counts,
    sample_training_counts,
    split_embeddings,
    split_on_guess,
)
from resgen.diffusion.schedules import CosineSchedule, LinearSchedule

DRAWS = 20_000
ACCEPT = 1e-3  # p-value above which the law is accepted (fixed seeds: deterministic)
REJECT = 1e-6  # p-value below which the negative control must fall


def _vectors(length: int, depth: int, n: int) -> list[tuple[int, ...]]:
    return [k for k in itertools.product(range(depth + 1), repeat=length) if sum(k) == n]


def _hypergeometric(k: tuple[int, ...], depth: int) -> float:
    return math.prod(math.comb(depth, ki) for ki in k) / math.comb(len(k) * depth, sum(k))


def _multinomial(k: tuple[int, ...]) -> float:
    """The wrong law of the negative control: slots drawn *with* replacement."""
    n, length = sum(k), len(k)
    return math.factorial(n) / math.prod(math.factorial(ki) for ki in k) / length**n


def _histogram(samples: torch.Tensor, support: list[tuple[int, ...]]) -> list[int]:
    index = {k: i for i, k in enumerate(support)}
    freq = [0] * len(support)
    for row in samples.tolist():
        freq[index[tuple(row)]] += 1  # KeyError: a count vector outside the support
    return freq


def _chi2_pvalue(freq: list[int], probs: list[float]) -> float:
    expected = [p * sum(freq) for p in probs]
    assert min(expected) >= 5, "cell too small for the chi-square approximation"
    return float(chisquare(freq, expected).pvalue)


# ----------------------------------------------------------------------------------------------
# Invariants


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 5),
    st.lists(st.integers(0, 10_000), min_size=1, max_size=6),
    st.integers(0, 2**31 - 1),
)
def test_counts_sum_to_n_and_masks_are_top_contiguous(
    length: int, depth: int, raw: list[int], seed: int
) -> None:
    total = length * depth
    n = torch.tensor([v % (total + 1) for v in raw])
    k = sample_mask_counts(n, length, depth, generator=torch.Generator().manual_seed(seed))
    assert k.shape == (len(raw), length) and k.dtype == torch.long
    assert torch.equal(k.sum(-1), n)
    assert bool(((k >= 0) & (k <= depth)).all())
    mask = depth_mask(k, depth)
    assert torch.equal(mask.sum(-1), k)
    # top-contiguous: once a depth is masked, every finer depth is masked too
    assert bool((mask[..., :-1] <= mask[..., 1:]).all())


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_padding_is_respected(length: int, depth: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    padding = torch.rand(3, length, generator=generator) < 0.4
    real = (~padding).sum(-1)
    n = (torch.rand(3, generator=generator) * (real * depth + 1)).long().clamp_max(real * depth)
    k = sample_mask_counts(n, length, depth, padding=padding, generator=generator)
    assert torch.equal(k.sum(-1), n)
    assert bool((k[padding] == 0).all())
    assert bool((k <= depth).all())
    k_train = sample_training_counts(
        CosineSchedule(), 3, length, depth, padding=padding, generator=generator
    )
    assert bool((k_train[padding] == 0).all())
    # every sample with a real position gets a target; a fully padded one gets nothing
    assert torch.equal(k_train.sum(-1) >= 1, real > 0)
    assert bool((k_train.sum(-1) <= real * depth).all())


def test_bad_totals_are_refused() -> None:
    with pytest.raises(ValueError, match="n_masked"):
        sample_mask_counts(torch.tensor([5]), 2, 2)
    with pytest.raises(ValueError, match="n_masked"):
        sample_mask_counts(torch.tensor([-1]), 2, 2)
    padding = torch.tensor([[False, True]])
    with pytest.raises(ValueError, match="n_masked"):
        sample_mask_counts(torch.tensor([3]), 2, 2, padding=padding)


def test_same_generator_same_counts() -> None:
    def draw() -> torch.Tensor:
        g = torch.Generator().manual_seed(3)
        return sample_training_counts(CosineSchedule(), 16, 5, 4, generator=g)

    assert torch.equal(draw(), draw())


def test_training_counts_cover_one_to_total() -> None:
    k = sample_training_counts(LinearSchedule(), 4000, 2, 3, generator=torch.Generator())
    n = k.sum(-1)
    assert int(n.min()) == 1 and int(n.max()) == 6


# ----------------------------------------------------------------------------------------------
# The law of k: chi-square against the multivariate hypergeometric


@pytest.mark.parametrize(("length", "depth", "n"), [(3, 2, 2), (3, 2, 3), (2, 3, 3), (3, 3, 4)])
def test_counts_follow_the_multivariate_hypergeometric(length: int, depth: int, n: int) -> None:
    generator = torch.Generator().manual_seed(100 * length + 10 * depth + n)
    k = sample_mask_counts(torch.full((DRAWS,), n), length, depth, generator=generator)
    support = _vectors(length, depth, n)
    freq = _histogram(k, support)
    assert _chi2_pvalue(freq, [_hypergeometric(v, depth) for v in support]) > ACCEPT
    if n <= depth:  # same support: slots drawn with replacement must be rejected
        assert _chi2_pvalue(freq, [_multinomial(v) for v in support]) < REJECT


def test_padded_counts_follow_the_hypergeometric_of_the_real_positions() -> None:
    length, depth, n = 4, 2, 3
    padding = torch.tensor([False, True, False, False]).expand(DRAWS, length)
    generator = torch.Generator().manual_seed(7)
    k = sample_mask_counts(
        torch.full((DRAWS,), n), length, depth, padding=padding, generator=generator
    )
    assert bool((k[:, 1] == 0).all())
    real = k[:, [0, 2, 3]]
    support = _vectors(3, depth, n)
    freq = _histogram(real, support)
    assert _chi2_pvalue(freq, [_hypergeometric(v, depth) for v in support]) > ACCEPT
    # the wrong law: hypergeometric over all 4 positions, conditioned on the padded one being 0
    wrong = [_hypergeometric((v[0], 0, v[1], v[2]), 3) for v in support]
    wrong = [w / sum(wrong) for w in wrong]
    assert _chi2_pvalue(freq, wrong) < REJECT


@pytest.mark.parametrize(
    ("schedule", "tail"),
    [
        (LinearSchedule(), lambda m, total: (total - m + 1) / total),
        (CosineSchedule(), lambda m, total: 2 / math.pi * math.acos((m - 1) / total)),
    ],
)
def test_training_counts_follow_the_schedule_mixture(schedule, tail) -> None:
    """``k ~ sum_n pi(n) MultiHypergeom(n)`` with ``P(n >= m) = gamma^{-1}((m-1)/LD)``, m >= 2."""
    length, depth = 2, 2
    total = length * depth
    generator = torch.Generator().manual_seed(11)
    k = sample_training_counts(schedule, DRAWS, length, depth, generator=generator)
    support = [v for n in range(1, total + 1) for v in _vectors(length, depth, n)]
    tails = [1.0] + [tail(m, total) for m in range(2, total + 1)] + [0.0]  # P(n >= 1 .. total+1)
    law = {n: tails[n - 1] - tails[n] for n in range(1, total + 1)}
    probs = [law[sum(v)] * _hypergeometric(v, depth) for v in support]
    freq = _histogram(k, support)
    assert _chi2_pvalue(freq, probs) > ACCEPT
    uniform_n = [_hypergeometric(v, depth) / total for v in support]  # n uniform on 1..LD
    if isinstance(schedule, CosineSchedule):
        assert _chi2_pvalue(freq, uniform_n) < REJECT


# ----------------------------------------------------------------------------------------------
# depth_mask and split_embeddings


def test_depth_mask_matches_the_definition() -> None:
    depth = 4
    k = torch.tensor([[0, 1, 2], [3, 4, 0]])
    mask = depth_mask(k, depth)
    for b, i, j in itertools.product(range(2), range(3), range(depth)):
        assert bool(mask[b, i, j]) == (j >= depth - int(k[b, i]))
    with pytest.raises(ValueError, match=r"0\.\.4"):
        depth_mask(torch.tensor([[5]]), depth)
    with pytest.raises(ValueError, match=r"0\.\.4"):
        depth_mask(torch.tensor([[-1]]), depth)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_split_embeddings(length: int, depth: int, dim: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    emb = torch.randn(2, length, depth, dim, generator=generator, dtype=torch.float64)
    k = torch.randint(0, depth + 1, (2, length), generator=generator)
    visible, target = split_embeddings(emb, k)
    assert visible.shape == target.shape == (2, length, dim)
    for b, i in itertools.product(range(2), range(length)):
        cut = depth - int(k[b, i])
        torch.testing.assert_close(visible[b, i], emb[b, i, :cut].sum(0))
        torch.testing.assert_close(target[b, i], emb[b, i, cut:].sum(0))
    torch.testing.assert_close(visible + target, emb.sum(2))
    # nothing masked: no target; everything masked: no input
    zero = torch.zeros(2, length, dtype=torch.long)
    assert bool((split_embeddings(emb, zero)[1] == 0).all())
    assert bool((split_embeddings(emb, zero + depth)[0] == 0).all())


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_split_on_guess(length: int, depth: int, dim: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    emb, guess = torch.randn(2, 2, length, depth, dim, generator=generator, dtype=torch.float64)
    k = torch.randint(0, depth + 1, (2, length), generator=generator)
    visible, target = split_on_guess(emb, guess, k)
    for b, i in itertools.product(range(2), range(length)):
        cut = depth - int(k[b, i])
        torch.testing.assert_close(visible[b, i], guess[b, i, :cut].sum(0))
    # input plus target is always the data, whatever the guess
    torch.testing.assert_close(visible + target, emb.sum(2))
    # a perfect guess is the ordinary split
    for got, want in zip(split_on_guess(emb, emb, k), split_embeddings(emb, k)):
        torch.testing.assert_close(got, want)
    with pytest.raises((ValueError, TypeCheckError)):  # the shapes' names catch it first
        split_on_guess(emb, torch.cat([guess, guess], dim=-1), k)

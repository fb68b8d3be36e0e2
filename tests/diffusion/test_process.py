"""The masking process as an exact discrete diffusion, checked by exhaustive enumeration.

Tiny problems only (L <= 3, D <= 3, K <= 3, T <= 4). The references here are written
independently of ``resgen.diffusion.process``: slot-level enumeration with ``itertools`` and
``math.comb`` for the count laws, and explicit enumeration of every reverse trajectory for the
likelihood and the ELBO. The reverse model is a random table over all masked states
``x_t = (k, visible tokens)``: for each state, a joint distribution over the values of all masked
slots (so the model need not factorise).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resgen.diffusion.masking import depth_mask, sample_training_counts
from resgen.diffusion.process import (
    ELBOTerms,
    count_schedule,
    elbo_terms,
    enumerate_counts,
    log_forward_marginal,
    log_likelihood,
    log_posterior,
    log_transition,
    reveal_probabilities,
    reveal_weights,
    revealed_mask,
    training_count_probabilities,
    training_loss_moments,
)
from resgen.diffusion.schedules import (
    ArccosSchedule,
    CosineSchedule,
    LinearSchedule,
    PowerSchedule,
    masked_count,
    schedule_from_name,
)

SIZES = [(1, 1), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3)]


# ----------------------------------------------------------------------------------------------
# Independent references


def _slot_counts(slots: tuple[int, ...], length: int, depth: int) -> tuple[int, ...]:
    """Counts per position of a set of slots ``position * depth + level``."""
    k = [0] * length
    for s in slots:
        k[s // depth] += 1
    return tuple(k)


def _top_slots(k: tuple[int, ...], depth: int) -> set[int]:
    """The slots a count vector masks: the top ``k_i`` depths of each position."""
    return {i * depth + j for i, ki in enumerate(k) for j in range(depth - ki, depth)}


def _comb_ratio_posterior(k_prev: tuple[int, ...], k: tuple[int, ...]) -> float:
    if any(a > b for a, b in zip(k_prev, k)):
        return 0.0
    num = math.prod(math.comb(b, a) for a, b in zip(k_prev, k))
    return num / math.comb(sum(k), sum(k_prev))


def _all_vectors(length: int, depth: int, n: int) -> list[tuple[int, ...]]:
    return [k for k in itertools.product(range(depth + 1), repeat=length) if sum(k) == n]


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _marginal(table: np.ndarray, values: list[int | None]) -> float:
    """``logsumexp`` of a log-table with axis ``a`` fixed to ``values[a]`` (``None``: summed)."""
    for axis in range(len(values) - 1, -1, -1):
        v = values[axis]
        table = np.take(table, v, axis=axis) if v is not None else _logsumexp(table, axis)
    return float(table)


class TabularModel:
    """A random reverse model ``p_theta(x_M | x_t)``: one table per masked state.

    The table of state ``(k, visible tokens)`` is a log-distribution over the joint values of the
    masked slots (position-major, coarse to fine), drawn from a generator seeded by the state
    itself, so the model is a fixed function whatever the order of the queries. ``scale`` sets how
    peaked it is; ``factorised`` makes the masked slots independent given the state.
    """

    def __init__(
        self, depth: int, codes: int, seed: int, scale: float, factorised: bool = False
    ) -> None:
        self.depth, self.codes, self.seed = depth, codes, seed
        self.scale, self.factorised = scale, factorised
        self._tables: dict[tuple, np.ndarray] = {}

    def table(self, k: tuple[int, ...], visible: tuple[int, ...]) -> np.ndarray:
        if (k, visible) not in self._tables:
            self._tables[k, visible] = self._make_table(k, visible)
        return self._tables[k, visible]

    def _make_table(self, k: tuple[int, ...], visible: tuple[int, ...]) -> np.ndarray:
        n = sum(k)
        rng = np.random.default_rng([self.seed, len(k), *k, *visible])
        if self.factorised:
            logits = self.scale * rng.standard_normal((n, self.codes))
            logp = logits - _logsumexp(logits, 1)[:, None]
            table = np.zeros([self.codes] * n)
            for a in range(n):
                shape = [1] * n
                shape[a] = self.codes
                table = table + logp[a].reshape(shape)
            return table
        logits = self.scale * rng.standard_normal(self.codes**n)
        return (logits - _logsumexp(logits, 0)).reshape([self.codes] * n)

    def log_prob(self, x: np.ndarray, k: tuple[int, ...], subset: set[int]) -> float:
        """``log p(x[subset] | x_t)`` for flat tokens ``x`` (slot ``i * D + j``)."""
        masked = sorted(_top_slots(k, self.depth))
        visible = tuple(int(x[s]) for s in range(len(x)) if s not in set(masked))
        table = self.table(k, visible)
        return _marginal(table, [int(x[s]) if s in subset else None for s in masked])

    def __call__(self, tokens: torch.Tensor, counts: torch.Tensor, subset: torch.Tensor):
        out = []
        for x, k, sub in zip(tokens.flatten(1).numpy(), counts.tolist(), subset.flatten(1)):
            chosen = set(torch.nonzero(sub).flatten().tolist())
            assert chosen <= _top_slots(tuple(k), self.depth), "subset outside the masked slots"
            out.append(self.log_prob(x, tuple(k), chosen))
        return torch.tensor(out, dtype=torch.float64)


class DataConditional(TabularModel):
    """The exact conditional ``p_data(x_M | x_visible)`` of a random data law over all tokens."""

    def __init__(self, length: int, depth: int, codes: int, seed: int, scale: float) -> None:
        super().__init__(depth, codes, seed, scale)
        logits = scale * np.random.default_rng(seed).standard_normal(codes ** (length * depth))
        self.log_data = (logits - _logsumexp(logits, 0)).reshape([codes] * (length * depth))

    def log_prob(self, x: np.ndarray, k: tuple[int, ...], subset: set[int]) -> float:
        masked = _top_slots(k, self.depth)
        fixed = [None if s in masked else int(x[s]) for s in range(len(x))]
        chosen = [int(x[s]) if s in subset else fixed[s] for s in range(len(x))]
        return _marginal(self.log_data, chosen) - _marginal(self.log_data, fixed)


def _trajectories(length: int, depth: int, counts: tuple[int, ...]):
    """All count trajectories ``(k_0, ..., k_T)`` with their probability under the posterior."""
    levels = [_all_vectors(length, depth, n) for n in counts]
    for path in itertools.product(*levels[:-1]):
        path = (*path, levels[-1][0])
        prob = math.prod(_comb_ratio_posterior(path[t - 1], path[t]) for t in range(1, len(path)))
        if prob > 0:
            yield path, prob


def _reference_likelihood_and_elbo(
    model: TabularModel, x: np.ndarray, length: int, depth: int, counts: tuple[int, ...]
) -> tuple[float, float]:
    """``(log p(x_0), ELBO)`` by summing over every reverse trajectory explicitly.

    ``p(x_0) = sum_traj prod_t q(k_{t-1}|k_t) p(x_0[R_t] | x_t)`` and, as the mask factors of the
    forward posterior and the reverse chain are equal, ``ELBO = sum_traj q(traj) sum_t log
    p(x_0[R_t] | x_t)``.
    """
    term = functools.cache(
        lambda k_prev, k: model.log_prob(x, k, _top_slots(k, depth) - _top_slots(k_prev, depth))
    )
    likelihood, elbo = 0.0, 0.0
    for path, prob in _trajectories(length, depth, counts):
        log_p = sum(term(path[t - 1], path[t]) for t in range(1, len(path)))
        likelihood += prob * math.exp(log_p)
        elbo += prob * log_p
    return math.log(likelihood), elbo


def _vec(k: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor([k], dtype=torch.long)


# ----------------------------------------------------------------------------------------------
# Count laws: marginals, transitions, posteriors


@pytest.mark.parametrize(("length", "depth"), SIZES)
def test_enumerate_counts_is_the_support(length: int, depth: int) -> None:
    for n in range(length * depth + 1):
        got = [tuple(r) for r in enumerate_counts(length, depth, n).tolist()]
        slots = itertools.combinations(range(length * depth), n)
        expected = sorted({_slot_counts(s, length, depth) for s in slots})
        assert got == expected


@pytest.mark.parametrize(("length", "depth"), SIZES)
def test_forward_marginal_is_the_slot_level_hypergeometric(length: int, depth: int) -> None:
    """``q(k_t | x_0)`` equals the law of the counts of ``n`` slots picked uniformly."""
    for n in range(length * depth + 1):
        subsets = list(itertools.combinations(range(length * depth), n))
        freq = Counter(_slot_counts(s, length, depth) for s in subsets)
        vectors = enumerate_counts(length, depth, n)
        got = log_forward_marginal(vectors, depth).exp()
        expected = torch.tensor(
            [freq[tuple(k)] / len(subsets) for k in vectors.tolist()], dtype=torch.float64
        )
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
        assert got.sum().item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("length", "depth"), SIZES)
def test_transition_is_one_slot_level_step(length: int, depth: int) -> None:
    """``q(k_t | k_{t-1})``: mask ``Delta`` of the unmasked slots uniformly, relabel to the top."""
    total = length * depth
    for n_prev in range(total + 1):
        for k_prev in _all_vectors(length, depth, n_prev):
            free = sorted(set(range(total)) - _top_slots(k_prev, depth))
            for n in range(n_prev, total + 1):
                picks = list(itertools.combinations(free, n - n_prev))
                freq = Counter(
                    tuple(a + b for a, b in zip(k_prev, _slot_counts(p, length, depth)))
                    for p in picks
                )
                vectors = enumerate_counts(length, depth, n)
                prev = _vec(k_prev).expand(len(vectors), length)
                got = log_transition(vectors, prev, depth).exp()
                expected = [freq[tuple(k)] / len(picks) for k in vectors.tolist()]
                torch.testing.assert_close(
                    got, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-15
                )
                assert got.sum().item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("length", "depth"), SIZES)
def test_posterior_normalises_and_is_bayes_rule(length: int, depth: int) -> None:
    """``q(k'|k, x_0) = q(k|k') q(k'|x_0) / q(k|x_0)`` for every pair of totals ``n' <= n``."""
    total = length * depth
    for n in range(total + 1):
        now = enumerate_counts(length, depth, n)
        for n_prev in range(n + 1):
            before = enumerate_counts(length, depth, n_prev)
            i, j = torch.meshgrid(torch.arange(len(now)), torch.arange(len(before)), indexing="ij")
            k, k_prev = now[i.flatten()], before[j.flatten()]
            post = log_posterior(k_prev, k, depth).exp().reshape(len(now), len(before))
            torch.testing.assert_close(
                post.sum(1), torch.ones(len(now), dtype=torch.float64), rtol=0, atol=1e-12
            )
            joint = (log_transition(k, k_prev, depth) + log_forward_marginal(k_prev, depth)).exp()
            bayes = (
                joint.reshape(len(now), len(before))
                / log_forward_marginal(now, depth).exp()[:, None]
            )
            torch.testing.assert_close(post, bayes, rtol=1e-10, atol=1e-14)
            # Chapman-Kolmogorov: one step from the marginal at n' gives the marginal at n.
            torch.testing.assert_close(
                joint.reshape(len(now), len(before)).sum(1),
                log_forward_marginal(now, depth).exp(),
                rtol=1e-10,
                atol=1e-14,
            )


@pytest.mark.parametrize(("length", "depth"), [(2, 2), (3, 2), (2, 3)])
def test_posterior_matches_nested_slot_sets(length: int, depth: int) -> None:
    """Brute force: all nested slot sets ``S' < S`` are equally likely under the forward chain."""
    total = length * depth
    for n in range(total + 1):
        for n_prev in range(n + 1):
            pairs: Counter = Counter()
            for big in itertools.combinations(range(total), n):
                for small in itertools.combinations(big, n_prev):
                    pairs[
                        (_slot_counts(small, length, depth), _slot_counts(big, length, depth))
                    ] += 1
            marg = Counter()
            for (_, k), c in pairs.items():
                marg[k] += c
            for (k_prev, k), c in pairs.items():
                got = log_posterior(_vec(k_prev), _vec(k), depth).exp().item()
                assert got == pytest.approx(c / marg[k], rel=1e-12)


@pytest.mark.parametrize(("length", "depth"), SIZES)
def test_reveal_probabilities_are_posterior_averages(length: int, depth: int) -> None:
    """``pi(k) = sum_{k'} q(k'|k) 1[slot revealed]``; rows sum to ``Delta``; coarse depths first."""
    total = length * depth
    for n in range(total + 1):
        now = enumerate_counts(length, depth, n)
        for n_prev in range(n + 1):
            got = reveal_probabilities(now, n_prev, depth)
            before = enumerate_counts(length, depth, n_prev)
            for a in range(len(now)):
                k = now[a : a + 1].expand(len(before), length)
                post = log_posterior(before, k, depth).exp()
                possible = post > 0
                masks = revealed_mask(k[possible], before[possible], depth).double()
                expected = (post[possible, None, None] * masks).sum(0)
                torch.testing.assert_close(got[a], expected, rtol=1e-10, atol=1e-14)
            torch.testing.assert_close(
                got.sum((1, 2)), torch.full((len(now),), float(n - n_prev), dtype=torch.float64)
            )
            masked = depth_mask(now, depth)
            # among the masked depths of a position, the probability never grows with depth
            step = got[..., 1:] - got[..., :-1]
            assert bool((step[masked[..., :-1]] <= 1e-12).all())


def test_reveal_is_not_uniform_over_masked_slots() -> None:
    """One position, both depths masked, one revealed: always the coarse one (not 1/2 each)."""
    got = reveal_probabilities(_vec((2,)), 1, 2)
    torch.testing.assert_close(got, torch.tensor([[[1.0, 0.0]]], dtype=torch.float64))


def test_impossible_pairs_have_zero_probability() -> None:
    k, k_prev = _vec((1, 2)), _vec((2, 0))
    assert log_transition(k, k_prev, 2).item() == -math.inf
    assert log_posterior(k_prev, k, 2).item() == -math.inf
    with pytest.raises(ValueError, match="must not exceed"):
        revealed_mask(k, k_prev, 2)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        log_forward_marginal(_vec((3, 0)), 2)


def test_revealed_mask_reveals_the_lowest_masked_depths() -> None:
    got = revealed_mask(_vec((3, 2, 1)), _vec((1, 2, 0)), 3)
    expected = torch.tensor([[[1, 1, 0], [0, 0, 0], [0, 0, 1]]], dtype=torch.bool)
    assert torch.equal(got, expected)


def test_enumerate_counts_refuses_large_problems() -> None:
    with pytest.raises(ValueError, match="too many"):
        enumerate_counts(20, 3, 5)
    with pytest.raises(ValueError, match=r"0\.\.4"):
        enumerate_counts(2, 2, 5)


# ----------------------------------------------------------------------------------------------
# Chains of counts


@pytest.mark.parametrize("name", ["cosine", "linear", "arccos", "power"])
@pytest.mark.parametrize(("steps", "total"), [(1, 1), (2, 4), (4, 9), (4, 2), (16, 9), (3, 100)])
def test_count_schedule(name: str, steps: int, total: int) -> None:
    schedule = schedule_from_name(name)
    ceil = count_schedule(schedule, steps, total)
    floor = count_schedule(schedule, steps, total, rounding="floor")
    for counts in (ceil, floor):
        assert len(counts) == steps + 1
        assert counts[0] == 0 and counts[-1] == total
        assert all(a <= b for a, b in zip(counts, counts[1:]))
    assert all(f <= c <= f + 1 for f, c in zip(floor, ceil))
    r = 1 - torch.arange(steps + 1, dtype=torch.float64) / steps
    assert list(ceil) == masked_count(schedule, r, total, minimum=0).tolist()


def test_count_schedule_values_and_errors() -> None:
    # cos(pi/8) * 9 = 8.31, cos(pi/4) * 9 = 6.36, cos(3 pi/8) * 9 = 3.44
    assert count_schedule(CosineSchedule(), 4, 9) == (0, 4, 7, 9, 9)
    assert count_schedule(CosineSchedule(), 4, 9, rounding="floor") == (0, 3, 6, 8, 9)
    with pytest.raises(ValueError, match="rounding"):
        count_schedule(CosineSchedule(), 4, 9, rounding="round")
    with pytest.raises(ValueError, match="steps"):
        count_schedule(CosineSchedule(), 0, 9)

    class Increasing:
        def __call__(self, r: torch.Tensor) -> torch.Tensor:
            return r

    with pytest.raises(ValueError, match="gamma"):
        count_schedule(Increasing(), 4, 9)
    x = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="from 0 to L\\*D"):
        elbo_terms(TabularModel(2, 2, 0, 1.0), x, (0, 2, 3))
    with pytest.raises(ValueError, match="non-decreasing"):
        log_likelihood(TabularModel(2, 2, 0, 1.0), x, (0, 3, 2, 4))
    with pytest.raises(ValueError, match=r"0\.\.1"):
        elbo_terms(TabularModel(2, 2, 0, 1.0), x + 2, (0, 4), num_codes=2)


def test_reveal_weights() -> None:
    weights = reveal_weights((0, 0, 2, 2, 5, 6))
    expected = torch.tensor([0.0, 1.0, 0.0, 3 / 5, 1 / 6], dtype=torch.float64)
    torch.testing.assert_close(weights, expected, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# ELBO and likelihood of the reverse chain


@st.composite
def problems(draw: st.DrawFn) -> tuple:
    length = draw(st.integers(1, 3))
    depth = draw(st.integers(1, 3))
    codes = draw(st.integers(2, 3))
    steps = draw(st.integers(1, 4))
    total = length * depth
    if draw(st.booleans()):  # from a schedule (computed in the test: beartype uses `random`)
        counts = (
            draw(st.sampled_from(["cosine", "linear", "arccos", "power"])),
            draw(st.sampled_from(["ceil", "floor"])),
            steps,
        )
    else:  # any chain, repeated totals included
        inner = sorted(
            draw(st.lists(st.integers(0, total), min_size=steps - 1, max_size=steps - 1))
        )
        counts = (0, *inner, total)
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.floats(0.1, 4.0))
    factorised = draw(st.booleans())
    x = np.random.default_rng(seed + 1).integers(0, codes, size=(length, depth))
    return length, depth, codes, counts, TabularModel(depth, codes, seed, scale, factorised), x


@settings(max_examples=100, deadline=None)
@given(problems())
def test_elbo_never_exceeds_the_exact_log_likelihood(problem: tuple) -> None:
    length, depth, _, counts, model, x = problem
    if isinstance(counts[0], str):
        name, rounding, steps = counts
        schedule = schedule_from_name(name)
        counts = count_schedule(schedule, steps, length * depth, rounding=rounding)
    _check_elbo_against_trajectories(length, depth, counts, model, x)


@pytest.mark.parametrize("factorised", [False, True])
@pytest.mark.parametrize("counts", [(0, 4, 7, 9, 9), (0, 1, 2, 5, 9), (0, 3, 3, 8, 9)])
def test_elbo_bounds_on_the_largest_problem(counts: tuple[int, ...], factorised: bool) -> None:
    """L = D = K = 3, T = 4, whatever hypothesis happens to draw."""
    model = TabularModel(3, 3, seed=counts[1], scale=2.5, factorised=factorised)
    x = np.random.default_rng(counts[2]).integers(0, 3, size=(3, 3))
    _check_elbo_against_trajectories(3, 3, counts, model, x)


def _check_elbo_against_trajectories(
    length: int, depth: int, counts: tuple[int, ...], model: TabularModel, x: np.ndarray
) -> None:
    tokens = torch.as_tensor(x, dtype=torch.long)[None]
    ref_log_p, ref_elbo = _reference_likelihood_and_elbo(model, x.flatten(), length, depth, counts)
    terms = elbo_terms(model, tokens, counts)
    log_p = log_likelihood(model, tokens, counts)

    assert isinstance(terms, ELBOTerms)
    assert log_p.item() == pytest.approx(ref_log_p, rel=1e-9, abs=1e-9)
    assert -terms.negative_elbo.item() == pytest.approx(ref_elbo, rel=1e-9, abs=1e-9)
    # The bound itself: ELBO <= log p_theta(x_0) <= 0.
    assert -terms.negative_elbo.item() <= log_p.item() + 1e-9
    assert log_p.item() <= 1e-12
    # Each term is at most its simple counterpart; equal where n_{t-1} = 0.
    assert bool((terms.terms <= terms.simple + 1e-9).all())
    for t in range(1, len(counts)):
        if counts[t - 1] == 0:
            assert terms.terms[0, t - 1].item() == pytest.approx(terms.simple[0, t - 1].item())
    assert terms.simple_bound.item() >= terms.negative_elbo.item() - 1e-9
    if model.factorised:  # L_t = E_{k_t}[sum over slots of P(revealed) * slot loss]
        expected = _factorised_terms(model, tokens, counts)
        torch.testing.assert_close(terms.terms[0], expected, rtol=1e-9, atol=1e-12)


def _factorised_terms(model: TabularModel, tokens: torch.Tensor, counts: tuple[int, ...]):
    """``L_t`` of a factorised model from per-slot losses and the reveal probabilities."""
    _, length, depth = tokens.shape
    out = []
    for t in range(1, len(counts)):
        total = 0.0
        for k in enumerate_counts(length, depth, counts[t]):
            k = k[None]
            weight = log_forward_marginal(k, depth).exp().item()
            probs = reveal_probabilities(k, counts[t - 1], depth)[0]
            for i, j in torch.nonzero(depth_mask(k, depth)[0]).tolist():
                single = torch.zeros(1, length, depth, dtype=torch.bool)
                single[0, i, j] = True
                total -= weight * probs[i, j].item() * model(tokens, k, single).item()
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize(
    ("length", "depth", "codes", "counts"),
    [(2, 2, 2, (0, 1, 3, 4)), (1, 3, 3, (0, 2, 3)), (3, 1, 3, (0, 1, 1, 2, 3)), (2, 2, 2, (0, 4))],
)
def test_reverse_chain_is_a_distribution(
    length: int, depth: int, codes: int, counts: tuple[int, ...]
) -> None:
    """``sum_{x_0} p_theta(x_0) = 1`` over all ``K^(L D)`` data, and the ELBO sits below."""
    model = TabularModel(depth, codes, seed=7, scale=2.0)
    grid = itertools.product(range(codes), repeat=length * depth)
    tokens = torch.tensor(list(grid), dtype=torch.long).reshape(-1, length, depth)
    log_p = log_likelihood(model, tokens, counts)
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-12)
    assert bool((-elbo_terms(model, tokens, counts).negative_elbo <= log_p + 1e-12).all())


@pytest.mark.parametrize(
    ("length", "depth", "codes", "counts"),
    [(2, 2, 2, (0, 1, 3, 4)), (2, 2, 2, (0, 2, 2, 3, 4)), (3, 2, 2, (0, 2, 5, 6))],
)
def test_elbo_is_tight_for_the_data_conditional(
    length: int, depth: int, codes: int, counts: tuple[int, ...]
) -> None:
    """With ``p_theta(x_M | x_t) = p_data(x_M | x_visible)`` the chain's law is ``p_data`` and the
    trajectory posterior equals the forward posterior: ``ELBO = log p_theta(x_0) = log
    p_data(x_0)`` for every ``x_0``, while the simple bound stays strictly looser."""
    model = DataConditional(length, depth, codes, seed=3, scale=1.5)
    grid = list(itertools.product(range(codes), repeat=length * depth))
    tokens = torch.tensor(grid, dtype=torch.long).reshape(-1, length, depth)
    expected = torch.tensor([model.log_data[g] for g in grid], dtype=torch.float64)
    terms = elbo_terms(model, tokens, counts)
    torch.testing.assert_close(log_likelihood(model, tokens, counts), expected)
    torch.testing.assert_close(-terms.negative_elbo, expected)
    assert bool((terms.simple_bound > terms.negative_elbo + 1e-3).all())


def test_simple_loss_bounds_only_when_summed_over_steps() -> None:
    """A uniform model: ``-log p(x_0) = L D log K`` exactly, ``S_t = n_t log K``. The step sum
    ``sum_t S_t`` is a bound; the step average ``E_t[S_t]`` (unweighted, unscaled) is not."""
    length, depth, codes = 2, 2, 3
    counts = count_schedule(CosineSchedule(), 4, length * depth)

    def uniform(tokens: torch.Tensor, k: torch.Tensor, subset: torch.Tensor) -> torch.Tensor:
        return -subset.flatten(1).sum(1).double() * math.log(codes)

    tokens = torch.zeros(1, length, depth, dtype=torch.long)
    nll = -log_likelihood(uniform, tokens, counts).item()
    terms = elbo_terms(uniform, tokens, counts)
    assert nll == pytest.approx(length * depth * math.log(codes))
    assert terms.negative_elbo.item() == pytest.approx(nll)  # tight: the model is exact
    expected_simple = torch.tensor(counts[1:], dtype=torch.float64) * math.log(codes)
    torch.testing.assert_close(terms.simple[0], expected_simple)
    # balanced per-slot losses: here, and only in such cases, L_t = w_t S_t
    torch.testing.assert_close(terms.terms[0], terms.weights * terms.simple[0])
    assert terms.simple_bound.item() >= nll
    assert terms.simple.mean().item() < nll


# ----------------------------------------------------------------------------------------------
# The training code path


@pytest.mark.parametrize("total", [1, 4, 6, 9])
def test_training_count_probabilities_closed_forms(total: int) -> None:
    """Linear: ``n = ceil((1 - r) LD)`` is uniform on ``1..LD``. Cosine: ``P(n >= m) =
    (2/pi) arccos((m - 1)/LD)``. Both up to the ``1e-6`` guard's shift of the boundaries."""
    linear = training_count_probabilities(LinearSchedule(), total)
    expected = torch.tensor([0.0] + [1 / total] * total, dtype=torch.float64)
    torch.testing.assert_close(linear, expected, rtol=0, atol=2e-6)
    cosine = training_count_probabilities(CosineSchedule(), total)
    tail = [1.0] + [2 / math.pi * math.acos((m - 1) / total) for m in range(2, total + 1)] + [0.0]
    expected = torch.tensor([0.0] + [tail[m] - tail[m + 1] for m in range(total)])
    torch.testing.assert_close(cosine, expected.double(), rtol=0, atol=2e-6)
    for schedule in (ArccosSchedule(), PowerSchedule(3)):
        law = training_count_probabilities(schedule, total)
        assert law.sum().item() == pytest.approx(1.0, abs=1e-12) and law[0].item() == 0.0


@pytest.mark.parametrize(
    ("length", "depth", "codes", "schedule", "other"),
    [
        (2, 2, 2, CosineSchedule(), LinearSchedule()),
        (3, 2, 2, ArccosSchedule(), LinearSchedule()),
        (2, 3, 3, PowerSchedule(2), LinearSchedule()),
    ],
)
def test_monte_carlo_training_loss_matches_the_exact_expectation(
    length: int, depth: int, codes: int, schedule, other
) -> None:
    """The training path (``sample_training_counts`` with the schedule, then the model's ``-log p``
    of the masked tokens) averaged over ``N`` draws is within ``5`` standard errors of the exact
    expectation.

    Tolerance: the loss is bounded, so the mean of ``N = 40000`` i.i.d. draws is normal to an
    excellent approximation with standard deviation ``sigma / sqrt(N)``, ``sigma^2`` the exact
    variance (enumerated too). A 5-sigma two-sided band fails by chance with probability 6e-7.
    Power: the same draws are more than 5 standard errors away from the expectation under another
    schedule (the band is narrow enough to tell schedules apart).
    """
    model = TabularModel(depth, codes, seed=11, scale=1.5)
    x = torch.randint(0, codes, (1, length, depth), generator=torch.Generator().manual_seed(5))
    mean, var = training_loss_moments(model, x, schedule, num_codes=codes)

    draws = 40_000
    generator = torch.Generator().manual_seed(1234)
    k = sample_training_counts(schedule, draws, length, depth, generator=generator)
    unique, freq = torch.unique(k, dim=0, return_counts=True)  # loss depends on k only
    loss = -model(x.expand(len(unique), length, depth), unique, depth_mask(unique, depth))
    estimate = (freq.double() * loss).sum().item() / draws

    stderr = math.sqrt(var.item() / draws)
    assert var.item() > 0
    assert abs(estimate - mean.item()) <= 5 * stderr, (estimate, mean.item(), stderr)
    other_mean, _ = training_loss_moments(model, x, other)
    assert abs(estimate - other_mean.item()) > 5 * stderr

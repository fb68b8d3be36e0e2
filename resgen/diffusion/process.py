"""The masking process as an exact T-step discrete diffusion: marginals, posteriors, ELBO.

The state of the chain is a mask-count vector ``k`` (``[length]``, entries in ``0..D``, the finest
``k_i`` depths of position ``i`` masked; see :mod:`resgen.diffusion.masking`). Unmasked tokens are
copies of the data ``x_0`` and masked ones are the absorbing ``[MASK]``, so given ``x_0`` the
state at time ``t`` is ``x_t = (k_t, x_0 restricted to the unmasked slots)``.

**Counts.** A chain of ``T`` steps has masked totals ``0 = n_0 <= n_1 <= ... <= n_T = L * D``
(:func:`count_schedule`). Equal consecutive totals are allowed: such a step does nothing.

**Forward step** ``t-1 -> t``: choose ``Delta_t = n_t - n_{t-1}`` of the ``L*D - n_{t-1}``
unmasked slots uniformly without replacement, then relabel each position's masked slots as its top
depths. With ``k' = k_{t-1}``, ``k = k_t`` and ``C`` the binomial coefficient:

    q(k | k') = prod_i C(D - k'_i, k_i - k'_i) / C(L*D - n_{t-1}, Delta_t)   (log_transition)
    q(k_t | x_0) = prod_i C(D, k_i) / C(L*D, n_t)                     (log_forward_marginal)
    q(k' | k, x_0) = prod_i C(k_i, k'_i) / C(n_t, n_{t-1})                   (log_posterior)

The marginal is the multivariate hypergeometric law (``n_t`` slots picked uniformly); the posterior
follows from Bayes' rule with ``C(D, k') C(D - k', k - k') = C(D, k) C(k, k')``: uniformly choose
which ``n_{t-1}`` of the ``n_t`` masked slots stay masked. None of the three depends on the token
values of ``x_0``; the posterior's revealed slots (masked at ``t``, not at ``t-1``:
:func:`revealed_mask`) take their values from ``x_0``.

**Reverse model.** A :data:`ReverseModel` ``p_theta(x_0 | x_t)`` is a callable ``model(tokens,
counts, subset) -> log p_theta(tokens[subset] | x_t)``: the log-probability (marginal over the
other masked slots) that the slots in ``subset`` (a subset of the masked slots of ``counts``) hold
the values ``tokens`` gives them, given ``x_t``, the unmasked part of ``tokens``. It must not look
at the masked values of ``tokens``, and it does not see ``t`` (ResGen's network sees only ``k``).
The reverse chain is the usual ``x_0``-parameterisation

    p_theta(x_{t-1} | x_t) = sum_{x~_0} q(x_{t-1} | x_t, x~_0) p_theta(x~_0 | x_t)
                           = q(k_{t-1} | k_t) * p_theta(x_0[R_t] | x_t)

with ``R_t`` the revealed slots, started from the fully masked ``x_T``. Its mask pattern is the
forward posterior (the counts of a uniformly random subset of the masked slots, relabelled so that
each position reveals its lowest masked depths): this is the chain the ELBO describes, not ResGen's
confidence-ordered sampler (a heuristic reverse chain with the same counts).

**ELBO** (:func:`elbo_terms`). Since ``q(x_T | x_0) = p(x_T)`` (both fully masked) and the
mask-pattern factors of ``q`` and ``p_theta`` are the same posterior, they cancel and

    -log p_theta(x_0) <= sum_{t=1}^{T} L_t,      L_t = E_{q(k_t)} E_{q(k_{t-1} | k_t)}
                                                       [ -log p_theta(x_0[R_t] | x_t) ]

(Jensen over reverse trajectories; ``L_t`` is the KL term of step ``t``, ``L_1`` the
reconstruction term; the gap is ``KL(q(k_{1:T} | x_0) || p_theta(k_{1:T} | x_0))`` and vanishes
when ``p_theta`` is the data's own conditional law). The *simple* term of step ``t`` is

    S_t = E_{q(k_t)} [ -log p_theta(x_0[M_t] | x_t) ]        (M_t: all masked slots at t).

**Weights.** Which slots a step reveals is *not* uniform over the masked slots: at each position
the lowest masked depths are revealed first, so slot ``(i, j)`` is revealed with probability
``pi_ij(k_t) = 1[j >= D - k_i] P(k'_i <= D - 1 - j)``, ``k'_i ~ Hypergeom(n_t, k_i, n_{t-1})``
(:func:`reveal_probabilities`). These sum to ``Delta_t``: the *average* over the ``n_t`` masked
slots is ``w_t = Delta_t / n_t`` (:func:`reveal_weights`), the weight of a token-level absorbing
diffusion. For a model that factorises over the masked slots, ``L_t = E_{q(k_t)}[sum_ij pi_ij
l_ij]`` with ``l_ij`` the slot's ``-log p_theta``; ``L_t = w_t S_t`` holds only when those losses
are balanced across depths (e.g. a uniform model), unlike MaskGIT-style masking where every masked
slot is equally likely to be revealed.

**Simple loss.** For any model ``R_t`` is a subset of ``M_t`` and a marginal is at least the
joint, ``p_theta(x_0[R_t] | x_t) >= p_theta(x_0[M_t] | x_t)``, hence ``L_t <= S_t`` (equality at
every step with ``n_{t-1} = 0``) and

    -log p_theta(x_0) <= sum_t L_t <= sum_t S_t = T * E_{t ~ U{1..T}} [S_t].

So the simple loss bounds the negative ELBO (and the negative log-likelihood) only **summed over
the T steps**, i.e. ``T`` times the per-step average with the reveal probabilities ``<= 1``
dropped. The per-step average itself is *not* a bound in general: a uniform model over ``K`` codes
has ``-log p_theta(x_0) = L D log K`` but ``E_t[S_t] = E_t[n_t] log K``, smaller as soon as some
``n_t < L D`` with ``t >= 1``.

The training code path (:func:`resgen.diffusion.masking.sample_training_counts`) draws ``r ~
U(0, 1)``, ``n = ceil(gamma(r) L D)`` clamped to ``[1, L*D]``, then ``k ~ MultiHypergeom(n)``; its
loss ``-log p_theta(x_0[M] | x_t)`` has expectation ``sum_n rho(n) E_{k | n}[...]``
(:func:`training_count_probabilities`, :func:`training_loss_moments`). With ``n_t`` from
``gamma(1 - t/T)`` the step average ``E_t[S_t]`` is a Riemann sum of that expectation.

Everything here enumerates count vectors and is meant for tiny problems (property tests and
documentation); computations are in float64 and in log space. Padding is not supported.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from attrs import field, frozen
from jaxtyping import Bool, Float, Int
from torch import Tensor

from resgen.diffusion.masking import depth_mask
from resgen.diffusion.schedules import MaskSchedule, masked_count
from resgen.typing import DepthMask, MaskCounts, Tokens

__all__ = [
    "ReverseModel",
    "count_schedule",
    "enumerate_counts",
    "log_forward_marginal",
    "log_transition",
    "log_posterior",
    "revealed_mask",
    "reveal_weights",
    "reveal_probabilities",
    "ELBOTerms",
    "elbo_terms",
    "log_likelihood",
    "training_count_probabilities",
    "training_loss_moments",
]

ReverseModel = Callable[[Tokens, MaskCounts, DepthMask], Float[Tensor, " batch"]]
"""``model(tokens [B, L, D], counts [B, L], subset [B, L, D]) -> log p_theta(tokens[subset] | x_t)
[B]``, where ``x_t`` is ``tokens`` with the top ``counts`` depths masked and ``subset`` lies inside
the masked slots. See the module docstring."""

_MAX_VECTORS = 100_000
"""Largest number of count vectors ``(D + 1) ** L`` the enumeration helpers accept."""


def _log_comb(n: Tensor, k: Tensor) -> Tensor:
    """``log C(n, k)`` in float64, ``-inf`` where ``k < 0`` or ``k > n``."""
    n = n.to(torch.float64)
    k = k.to(torch.float64)
    valid = (k >= 0) & (k <= n)
    n_safe = torch.where(valid, n, torch.zeros_like(n))
    k_safe = torch.where(valid, k, torch.zeros_like(k))
    value = torch.lgamma(n_safe + 1) - torch.lgamma(k_safe + 1) - torch.lgamma(n_safe - k_safe + 1)
    return torch.where(valid, value, torch.full_like(value, -math.inf))


def _check_counts(counts: Tensor, depth: int, name: str = "counts") -> None:
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if counts.numel() and (int(counts.min()) < 0 or int(counts.max()) > depth):
        raise ValueError(f"{name} must lie in 0..{depth} (the RVQ depth)")


def count_schedule(
    schedule: MaskSchedule, steps: int, total: int, *, rounding: str = "ceil"
) -> tuple[int, ...]:
    """Masked totals ``(n_0, ..., n_T)`` of a ``T``-step chain, derived from a schedule.

    Forward time ``t`` is sampling progress ``r = 1 - t / T``:

    - ``rounding="ceil"``: ``n_t = ceil(gamma(1 - t/T) * total)``, i.e. ``masked_count(schedule,
      1 - t/T, total, minimum=0)``, the training path's rounding;
    - ``rounding="floor"``: ``n_t = floor(gamma(1 - t/T) * total)``, the sampler's rounding in
      DESIGN.md section 3 (after sampling step ``s = T - t``, ``floor(gamma(s/T) L D)`` stay
      masked).

    Both use a ``1e-6`` guard against float noise. Consecutive totals may be equal (a step that
    masks nothing; it contributes nothing to the ELBO).

    Args:
        schedule: the masking schedule ``gamma``.
        steps: ``T >= 1``.
        total: ``L * D >= 1``.
        rounding: ``"ceil"`` or ``"floor"``.

    Returns:
        ``T + 1`` Python ints, ``0 = n_0 <= ... <= n_T = total``.

    Raises:
        ValueError: bad arguments, or a schedule that breaks ``gamma(1) = 0``, ``gamma(0) = 1``
            or monotonicity.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    r = 1.0 - torch.arange(steps + 1, dtype=torch.float64) / steps
    if rounding == "ceil":
        n = masked_count(schedule, r, total, minimum=0)
    elif rounding == "floor":
        n = torch.floor(schedule(r) * total + 1e-6).long().clamp(0, total)
    else:
        raise ValueError(f"rounding must be 'ceil' or 'floor', got {rounding!r}")
    counts = tuple(int(v) for v in n)
    if counts[0] != 0 or counts[-1] != total:
        raise ValueError(
            f"the schedule must give gamma(1) = 0 and gamma(0) = 1; counts were {counts}"
        )
    if any(a > b for a, b in zip(counts, counts[1:])):
        raise ValueError(f"the schedule must be non-increasing; counts were {counts}")
    return counts


def _check_chain(counts: tuple[int, ...], total: int) -> None:
    if len(counts) < 2:
        raise ValueError(f"a chain needs n_0 .. n_T with T >= 1, got {counts}")
    if counts[0] != 0 or counts[-1] != total:
        raise ValueError(f"chain counts must run from 0 to L*D = {total}, got {counts}")
    if any(a > b for a, b in zip(counts, counts[1:])):
        raise ValueError(f"chain counts must be non-decreasing, got {counts}")


def enumerate_counts(length: int, depth: int, n: int) -> Int[Tensor, "num length"]:
    """All count vectors ``k`` in ``{0..depth}^length`` with ``sum(k) == n``, lexicographic order.

    Args:
        length: ``L >= 1``.
        depth: ``D >= 1``.
        n: the masked total, ``0 <= n <= L * D``.

    Returns:
        ``[num, length]`` int64; ``num`` is the number of such vectors.

    Raises:
        ValueError: bad sizes, or more than 100 000 candidate vectors (tiny problems only).
    """
    if length < 1 or depth < 1:
        raise ValueError(f"length and depth must be >= 1, got {length}, {depth}")
    if not 0 <= n <= length * depth:
        raise ValueError(f"n must lie in 0..{length * depth} (L*D), got {n}")
    if (depth + 1) ** length > _MAX_VECTORS:
        raise ValueError(
            f"(D+1)^L = {(depth + 1) ** length} count vectors is too many to enumerate "
            f"(limit {_MAX_VECTORS}); the exact process math is for tiny problems"
        )
    rows = [k for k in itertools.product(range(depth + 1), repeat=length) if sum(k) == n]
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), length)


def log_forward_marginal(counts: MaskCounts, depth: int) -> Float[Tensor, " batch"]:
    """``log q(k_t = counts | x_0)``: the multivariate hypergeometric law of ``n = sum(counts)``.

    ``q(k | x_0) = prod_i C(D, k_i) / C(L*D, n)``, with ``n`` each row's own total.

    Args:
        counts: ``[batch, length]`` counts in ``0..depth``.
        depth: ``D``.

    Returns:
        ``[batch]`` float64 log-probabilities.
    """
    _check_counts(counts, depth)
    length = counts.shape[1]
    top = _log_comb(torch.full_like(counts, depth), counts).sum(-1)
    return top - _log_comb(torch.full_like(counts[:, 0], length * depth), counts.sum(-1))


def log_transition(
    counts_next: MaskCounts, counts_prev: MaskCounts, depth: int
) -> Float[Tensor, " batch"]:
    """``log q(k_t = counts_next | k_{t-1} = counts_prev)``, one forward step.

    ``prod_i C(D - k'_i, k_i - k'_i) / C(L*D - n', n - n')``: ``n - n'`` of the ``L*D - n'``
    unmasked slots are masked, uniformly. ``-inf`` unless ``counts_prev <= counts_next``
    elementwise. The step size is each row's ``n - n'`` (0 gives the identity).

    Args:
        counts_next: ``[batch, length]`` counts at ``t``.
        counts_prev: ``[batch, length]`` counts at ``t - 1``.
        depth: ``D``.

    Returns:
        ``[batch]`` float64 log-probabilities.
    """
    _check_counts(counts_next, depth, "counts_next")
    _check_counts(counts_prev, depth, "counts_prev")
    length = counts_next.shape[1]
    n, n_prev = counts_next.sum(-1), counts_prev.sum(-1)
    top = _log_comb(depth - counts_prev, counts_next - counts_prev).sum(-1)
    value = top - _log_comb(length * depth - n_prev, n - n_prev)
    possible = (counts_prev <= counts_next).all(-1)
    return torch.where(possible, value, torch.full_like(value, -math.inf))


def log_posterior(
    counts_prev: MaskCounts, counts_next: MaskCounts, depth: int
) -> Float[Tensor, " batch"]:
    """``log q(k_{t-1} = counts_prev | k_t = counts_next, x_0)``, the forward posterior.

    ``prod_i C(k_i, k'_i) / C(n, n')``: which ``n'`` of the ``n`` masked slots stay masked is
    uniform. Independent of the token values of ``x_0``; ``-inf`` unless ``counts_prev <=
    counts_next`` elementwise.

    Args:
        counts_prev: ``[batch, length]`` counts at ``t - 1`` (the variable).
        counts_next: ``[batch, length]`` counts at ``t`` (the condition).
        depth: ``D`` (for validation only).

    Returns:
        ``[batch]`` float64 log-probabilities.
    """
    _check_counts(counts_next, depth, "counts_next")
    _check_counts(counts_prev, depth, "counts_prev")
    n, n_prev = counts_next.sum(-1), counts_prev.sum(-1)
    value = _log_comb(counts_next, counts_prev).sum(-1) - _log_comb(n, n_prev)
    possible = (counts_prev <= counts_next).all(-1)
    return torch.where(possible, value, torch.full_like(value, -math.inf))


def revealed_mask(counts_next: MaskCounts, counts_prev: MaskCounts, depth: int) -> DepthMask:
    """Slots masked at ``t`` but not at ``t - 1``: depths ``D - k_i .. D - k'_i - 1`` of position
    ``i`` (the *lowest* masked depths are revealed first).

    Args:
        counts_next: ``[batch, length]`` counts at ``t``.
        counts_prev: ``[batch, length]`` counts at ``t - 1``, ``<= counts_next`` elementwise.
        depth: ``D``.

    Returns:
        ``[batch, length, depth]`` boolean.
    """
    if bool((counts_prev > counts_next).any()):
        raise ValueError("counts_prev must not exceed counts_next (masks only grow with t)")
    return depth_mask(counts_next, depth) & ~depth_mask(counts_prev, depth)


def reveal_weights(counts: tuple[int, ...]) -> Float[Tensor, " steps"]:
    """Per-step weights ``w_t = (n_t - n_{t-1}) / n_t`` (``0`` where ``n_t = 0``), ``t = 1..T``.

    ``w_t`` is the probability that a masked slot of ``x_t`` is revealed at step ``t``, *averaged*
    over the masked slots (per slot, see :func:`reveal_probabilities`: coarse depths go first).
    ``L_t = w_t S_t`` for a model whose per-slot losses are balanced (e.g. uniform), not in
    general.

    Args:
        counts: ``(n_0, ..., n_T)``, non-decreasing from 0.

    Returns:
        ``[T]`` float64.
    """
    if len(counts) < 2 or counts[0] != 0 or any(a > b for a, b in zip(counts, counts[1:])):
        raise ValueError(f"counts must be non-decreasing from n_0 = 0 with T >= 1, got {counts}")
    return torch.tensor(
        [(b - a) / b if b > 0 else 0.0 for a, b in zip(counts, counts[1:])], dtype=torch.float64
    )


def reveal_probabilities(
    counts_next: MaskCounts, n_prev: int, depth: int
) -> Float[Tensor, "batch length depth"]:
    """Probability that each slot is revealed by a step from ``k_t = counts_next`` to a total of
    ``n_prev`` masked slots, under the posterior ``q(k_{t-1} | k_t, x_0)``.

    Slot ``(i, j)`` is revealed iff it is masked at ``t`` (``j >= D - k_i``) and not at ``t - 1``
    (``k'_i <= D - 1 - j``); the posterior's marginal ``k'_i`` is hypergeometric (``n_prev`` draws
    from ``n_t = sum(k)`` slots, ``k_i`` of them at position ``i``). Coarser masked depths are
    more likely to be revealed; each row sums to ``n_t - n_prev``.

    Args:
        counts_next: ``[batch, length]`` counts at ``t``.
        n_prev: the masked total at ``t - 1``, ``<= sum(counts_next)`` for every row.
        depth: ``D``.

    Returns:
        ``[batch, length, depth]`` float64 probabilities (0 at unmasked slots).
    """
    _check_counts(counts_next, depth, "counts_next")
    n = counts_next.sum(-1)
    if n_prev < 0 or bool((n < n_prev).any()):
        raise ValueError(f"n_prev must lie in 0..sum(counts_next), got {n_prev}")
    kept = torch.arange(depth + 1)  # the values of k'_i
    k = counts_next[..., None]
    log_pmf = (
        _log_comb(k, kept)
        + _log_comb(n[:, None, None] - k, n_prev - kept)
        - _log_comb(n, torch.full_like(n, n_prev))[:, None, None]
    )
    cdf = log_pmf.exp().cumsum(-1)  # P(k'_i <= c), c = 0 .. D
    levels = torch.arange(depth)
    revealed = cdf[..., depth - 1 - levels]  # P(k'_i <= D - 1 - j)
    return revealed * depth_mask(counts_next, depth)


@frozen(eq=False)
class ELBOTerms:
    """The exact ELBO decomposition of a ``T``-step chain for a batch of data ``x_0``.

    Attributes:
        terms: ``[batch, T]`` float64, ``L_t`` (column ``t - 1``): the expected ``-log
            p_theta(x_0[R_t] | x_t)`` over ``k_t ~ q(k_t | x_0)`` and ``k_{t-1} ~ q(k_{t-1} |
            k_t, x_0)``; column 0 is the reconstruction term, the others are the KL terms.
        simple: ``[batch, T]`` float64, ``S_t``: the expected ``-log p_theta(x_0[M_t] | x_t)``
            over ``k_t ~ q(k_t | x_0)`` (all masked slots).
        weights: ``[T]`` float64, ``w_t = Delta_t / n_t``, the average reveal probability of a
            masked slot (:func:`reveal_weights`).
        counts: ``(n_0, ..., n_T)``.
    """

    terms: Float[Tensor, "batch steps"]
    simple: Float[Tensor, "batch steps"]
    weights: Float[Tensor, " steps"]
    counts: tuple[int, ...] = field(converter=tuple)

    @property
    def negative_elbo(self) -> Float[Tensor, " batch"]:
        """``sum_t L_t`` (the prior term ``KL(q(x_T | x_0) || p(x_T))`` is 0): ``>= -log
        p_theta(x_0)``."""
        return self.terms.sum(-1)

    @property
    def simple_bound(self) -> Float[Tensor, " batch"]:
        """``sum_t S_t = T * E_t[S_t]``: ``>= negative_elbo >= -log p_theta(x_0)``."""
        return self.simple.sum(-1)


def _call_model(
    model: ReverseModel,
    tokens: Tokens,
    counts: Int[Tensor, "pairs length"],
    subset: Bool[Tensor, "pairs length depth"],
) -> Float[Tensor, "batch pairs"]:
    """``log p_theta(tokens[b][subset[p]] | counts[p])`` for every sample ``b`` and row ``p``."""
    batch, pairs = tokens.shape[0], counts.shape[0]
    if pairs == 0:
        return torch.zeros(batch, 0, dtype=torch.float64)
    rows_tokens = tokens[:, None].expand(batch, pairs, *tokens.shape[1:]).flatten(0, 1)
    rows_counts = counts[None].expand(batch, *counts.shape).flatten(0, 1)
    rows_subset = subset[None].expand(batch, *subset.shape).flatten(0, 1)
    out = model(rows_tokens, rows_counts, rows_subset)
    if out.shape != (batch * pairs,):
        raise ValueError(f"the reverse model must return [batch] log-probs, got {tuple(out.shape)}")
    return out.to(torch.float64).reshape(batch, pairs)


def _step_pairs(
    length: int, depth: int, n: int, n_prev: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Count vectors at ``t`` and ``t-1`` and the possible pairs with their log posteriors."""
    now = enumerate_counts(length, depth, n)
    before = enumerate_counts(length, depth, n_prev)
    i, j = torch.meshgrid(torch.arange(len(now)), torch.arange(len(before)), indexing="ij")
    i, j = i.flatten(), j.flatten()
    log_post = log_posterior(before[j], now[i], depth)
    keep = torch.isfinite(log_post)
    return now, before, i[keep], j[keep], log_post[keep]


def elbo_terms(
    model: ReverseModel, tokens: Tokens, counts: tuple[int, ...], *, num_codes: int | None = None
) -> ELBOTerms:
    """Exact ELBO terms ``L_t``, simple terms ``S_t`` and weights of a chain, by enumeration.

    See the module docstring for the definitions and the bounds ``-log p_theta(x_0) <=
    sum_t L_t <= sum_t S_t``.

    Args:
        model: the reverse model (:data:`ReverseModel`).
        tokens: ``[batch, length, depth]`` data ``x_0``.
        counts: ``(n_0, ..., n_T)`` with ``n_0 = 0``, ``n_T = L * D``, non-decreasing
            (e.g. from :func:`count_schedule`).
        num_codes: if given, tokens must lie in ``0..num_codes - 1``.

    Returns:
        :class:`ELBOTerms` with ``[batch, T]`` terms.
    """
    _, length, depth = tokens.shape
    _check_tokens(tokens, num_codes)
    _check_chain(counts, length * depth)
    batch, steps = tokens.shape[0], len(counts) - 1
    terms = torch.zeros(batch, steps, dtype=torch.float64)
    simple = torch.zeros(batch, steps, dtype=torch.float64)
    for t in range(1, steps + 1):
        n, n_prev = counts[t], counts[t - 1]
        if n == 0:
            continue  # nothing masked: both terms are -log p(empty set) = 0
        now = enumerate_counts(length, depth, n)
        log_q = log_forward_marginal(now, depth)
        log_p_all = _call_model(model, tokens, now, depth_mask(now, depth))
        simple[:, t - 1] = -(log_q.exp() * log_p_all).sum(-1)
        if n == n_prev:
            continue  # nothing revealed: L_t = 0
        now, before, i, j, log_post = _step_pairs(length, depth, n, n_prev)
        log_p_rev = _call_model(model, tokens, now[i], revealed_mask(now[i], before[j], depth))
        weight = (log_q[i] + log_post).exp()
        terms[:, t - 1] = -(weight * log_p_rev).sum(-1)
    return ELBOTerms(terms=terms, simple=simple, weights=reveal_weights(counts), counts=counts)


def log_likelihood(
    model: ReverseModel, tokens: Tokens, counts: tuple[int, ...], *, num_codes: int | None = None
) -> Float[Tensor, " batch"]:
    """Exact ``log p_theta(x_0)`` of the reverse chain, summed over all reverse trajectories.

    A trajectory ending at ``x_0`` must show ``x_0``'s values at every revealed slot, so it is a
    sequence of count vectors ``k_T = (D, .., D), .., k_0 = 0`` with probability
    ``prod_t q(k_{t-1} | k_t) p_theta(x_0[R_t] | x_t)``; the sum over them is a forward recursion
    over count vectors (``alpha_{t-1}(k') = sum_k alpha_t(k) q(k' | k) p_theta(x_0[R] | x_t)``).

    Args:
        model: the reverse model (:data:`ReverseModel`).
        tokens: ``[batch, length, depth]`` data ``x_0``.
        counts: ``(n_0, ..., n_T)`` as in :func:`elbo_terms`.
        num_codes: if given, tokens must lie in ``0..num_codes - 1``.

    Returns:
        ``[batch]`` float64.
    """
    _, length, depth = tokens.shape
    _check_tokens(tokens, num_codes)
    _check_chain(counts, length * depth)
    batch = tokens.shape[0]
    alpha = torch.zeros(batch, 1, dtype=torch.float64)  # the single fully masked vector
    for t in range(len(counts) - 1, 0, -1):
        n, n_prev = counts[t], counts[t - 1]
        if n == n_prev:
            continue
        now, before, i, j, log_post = _step_pairs(length, depth, n, n_prev)
        log_p_rev = _call_model(model, tokens, now[i], revealed_mask(now[i], before[j], depth))
        joint = torch.full((batch, len(now), len(before)), -math.inf, dtype=torch.float64)
        joint[:, i, j] = alpha[:, i] + log_post + log_p_rev
        alpha = joint.logsumexp(1)
    return alpha[:, 0]


def training_count_probabilities(
    schedule: MaskSchedule, total: int, *, iterations: int = 60
) -> Float[Tensor, " counts"]:
    """Law of the training path's masked total ``n = clamp(ceil(gamma(r) total), 1, total)``.

    With ``r ~ U(0, 1)`` and the same ``1e-6`` guard as the code path,
    ``P(n >= m) = |{r : gamma(r) > (m - 1 + 1e-6) / total}|`` for ``2 <= m <= total``, the
    largest such ``r`` for a non-increasing ``gamma``, found by bisection in float64
    (``iterations`` halvings). The code path evaluates ``gamma`` in float32; the two differ only
    for ``r`` within float32 rounding of a boundary (probability about ``1e-7``).

    Args:
        schedule: the training schedule ``gamma`` (non-increasing).
        total: ``L * D >= 1``.
        iterations: bisection steps.

    Returns:
        ``[total + 1]`` float64 probabilities of ``n = 0 .. total`` (``P(n = 0) = 0``).
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    grid = schedule(torch.linspace(0.0, 1.0, 1001, dtype=torch.float64))
    if bool((grid[1:] > grid[:-1] + 1e-12).any()):
        raise ValueError("the schedule must be non-increasing in r")
    thresholds = (torch.arange(2, total + 1, dtype=torch.float64) - 1 + 1e-6) / total
    lo = torch.zeros_like(thresholds)
    hi = torch.ones_like(thresholds)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        above = schedule(mid) > thresholds
        lo = torch.where(above, mid, lo)
        hi = torch.where(above, hi, mid)
    tail = torch.cat(  # P(n >= m) for m = 0 .. total + 1
        [torch.ones(2, dtype=torch.float64), lo, torch.zeros(1, dtype=torch.float64)]
    )
    return (tail[:-1] - tail[1:]).clamp_min(0.0)


def training_loss_moments(
    model: ReverseModel,
    tokens: Tokens,
    schedule: MaskSchedule,
    *,
    num_codes: int | None = None,
) -> tuple[Float[Tensor, " batch"], Float[Tensor, " batch"]]:
    """Exact mean and variance of the training path's per-sample loss ``-log p_theta(x_0[M] |
    x_t)``.

    The law of ``k`` is ``rho(n) * MultiHypergeom(k; n)`` with ``rho`` from
    :func:`training_count_probabilities`, as drawn by
    :func:`resgen.diffusion.masking.sample_training_counts`.

    Args:
        model: the reverse model (:data:`ReverseModel`).
        tokens: ``[batch, length, depth]`` data ``x_0``.
        schedule: the training schedule.
        num_codes: if given, tokens must lie in ``0..num_codes - 1``.

    Returns:
        ``(mean, variance)``, each ``[batch]`` float64.
    """
    _, length, depth = tokens.shape
    _check_tokens(tokens, num_codes)
    law = training_count_probabilities(schedule, length * depth)
    first = torch.zeros(tokens.shape[0], dtype=torch.float64)
    second = torch.zeros_like(first)
    for n in range(1, length * depth + 1):
        if float(law[n]) == 0.0:
            continue
        now = enumerate_counts(length, depth, n)
        weight = law[n] * log_forward_marginal(now, depth).exp()
        loss = -_call_model(model, tokens, now, depth_mask(now, depth))
        first += (weight * loss).sum(-1)
        second += (weight * loss**2).sum(-1)
    return first, (second - first**2).clamp_min(0.0)


def _check_tokens(tokens: Tensor, num_codes: int | None) -> None:
    if tokens.ndim != 3 or tokens.shape[1] < 1 or tokens.shape[2] < 1:
        raise ValueError(f"tokens must be [batch, length, depth], got {tuple(tokens.shape)}")
    if num_codes is not None and tokens.numel():
        if int(tokens.min()) < 0 or int(tokens.max()) >= num_codes:
            raise ValueError(f"tokens must lie in 0..{num_codes - 1}")

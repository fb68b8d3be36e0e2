"""Percentile-bootstrap intervals of corpus-level rates (WER, CER, mean speaker similarity).

A corpus WER is a ratio of sums over utterances, ``sum(edits) / sum(reference words)``; a mean
similarity is the same with every denominator 1. How much such a figure owes to *which*
utterances were scored is estimated by drawing the utterances again with replacement, as many
as there are, recomputing the ratio, and reading the spread of those ratios (Bisani & Ney, 2004,
"Bootstrap estimates for confidence intervals in ASR performance evaluation"). On the TTS
demo's 48 targets a WER of 0.30 has the interval 0.23-0.37: rows or runs a few points apart
are not told apart by such an evaluation.

The interval says nothing of the other sources of spread a generated row has (the sampler's
draws, the vocoder's phase, another training run); those need evaluating again.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["ratio_interval"]


def ratio_interval(
    numerators: Float[Tensor, " items"],
    denominators: Float[Tensor, " items"] | None = None,
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``sum(numerators) / sum(denominators)``.

    Args:
        numerators: ``[items]`` each item's numerator (an utterance's edits, or its similarity).
        denominators: ``[items]`` each item's non-negative weight (an utterance's reference
            length); ``None`` for a plain mean (every weight 1).
        level: the interval's coverage, strictly between 0 and 1.
        resamples: bootstrap draws of the items (at least 1).
        seed: seed of the draws: the same inputs and seed always give the same interval.

    Returns:
        ``(low, high)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
        resampled ratios. Draws whose denominators sum to 0 have no ratio and are left out.

    Raises:
        ValueError: no items, tensors that are not 1-D or differ in length, a negative
            denominator, denominators summing to 0, or ``level``/``resamples`` out of range.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    values = torch.as_tensor(numerators, dtype=torch.float64)
    weights = (
        torch.ones_like(values)
        if denominators is None
        else torch.as_tensor(denominators, dtype=torch.float64)
    )
    if values.ndim != 1 or weights.ndim != 1:
        raise ValueError(
            f"numerators and denominators must be 1-D, got shapes {tuple(values.shape)} and "
            f"{tuple(weights.shape)}"
        )
    if len(values) == 0:
        raise ValueError("no items: an interval needs at least one")
    if len(values) != len(weights):
        raise ValueError(f"{len(values)} numerators but {len(weights)} denominators")
    if bool((weights < 0).any()):
        raise ValueError("denominators must be non-negative")
    if float(weights.sum()) == 0.0:
        raise ValueError("the denominators sum to 0: the ratio is undefined")
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(len(values), (resamples, len(values)), generator=generator)
    totals = weights[draws].sum(-1)
    ratios = values[draws].sum(-1)[totals > 0] / totals[totals > 0]
    if len(ratios) == 0:  # only when nearly every weight is 0 and resamples is tiny
        raise ValueError("every draw's denominators sum to 0: use more resamples")
    low, high = torch.quantile(ratios, torch.tensor([(1 - level) / 2, (1 + level) / 2]).double())
    return float(low), float(high)

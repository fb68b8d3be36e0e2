"""Percentile-bootstrap intervals of corpus rates."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import TypeCheckError

from resgen.eval.bootstrap import ratio_interval
from resgen.eval.text import error_rate_interval, utterance_edit_counts, word_error_rate


def test_identical_items_give_a_point() -> None:
    low, high = ratio_interval(torch.full((10,), 3.0), torch.full((10,), 4.0))
    assert low == pytest.approx(0.75) and high == pytest.approx(0.75)


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.tuples(st.integers(0, 20), st.integers(1, 20)), min_size=1, max_size=30),
    seed=st.integers(0, 10),
)
def test_interval_is_reproducible_and_within_the_items_range(items, seed) -> None:
    num = torch.tensor([float(a) for a, _ in items])
    den = torch.tensor([float(b) for _, b in items])
    first = ratio_interval(num, den, seed=seed, resamples=300)
    assert first == ratio_interval(num, den, seed=seed, resamples=300)
    low, high = first
    # a ratio of resampled sums is a weighted mean of the items' own ratios
    ratios = num.double() / den.double()
    assert float(ratios.min()) - 1e-9 <= low <= high <= float(ratios.max()) + 1e-9


def test_interval_narrows_with_more_items_and_widens_with_level() -> None:
    # the same mix of easy and hard utterances, 20 and 320 of them
    pattern_num, pattern_den = (
        torch.tensor([0.0, 1.0, 5.0, 2.0]),
        torch.tensor([8.0, 8.0, 8.0, 8.0]),
    )
    few = ratio_interval(pattern_num.repeat(5), pattern_den.repeat(5))
    many = ratio_interval(pattern_num.repeat(80), pattern_den.repeat(80))
    assert many[1] - many[0] < 0.5 * (few[1] - few[0])
    assert many[0] < 0.25 < many[1]  # the corpus rate, 8 / 32
    wide = ratio_interval(pattern_num.repeat(5), pattern_den.repeat(5), level=0.99)
    assert wide[0] <= few[0] and wide[1] >= few[1] and wide[1] - wide[0] > few[1] - few[0]


def test_plain_mean_without_denominators() -> None:
    values = torch.tensor([0.2, 0.4, 0.6, 0.8])
    low, high = ratio_interval(values)
    assert 0.2 <= low < 0.5 < high <= 0.8


def test_error_rate_interval_brackets_the_wer() -> None:
    refs = ["the cat sat on the mat", "a dog ran", "hello world", "one two three four"]
    hyps = ["the cat sat on a mat", "a dog ran", "yellow word", "one two three four"]
    low, high = error_rate_interval(refs, hyps)
    assert low <= word_error_rate(refs, hyps) <= high and low < high
    counts = utterance_edit_counts(refs, hyps)
    assert [c.errors for c in counts] == [1, 0, 2, 0]
    assert [c.reference_length for c in counts] == [6, 3, 2, 4]
    char_low, char_high = error_rate_interval(refs, hyps, unit="char")
    assert 0.0 <= char_low <= char_high < 1.0


@pytest.mark.parametrize(
    ("num", "den", "kwargs", "message"),
    [
        ([], None, {}, "no items"),
        ([1.0], [-1.0], {}, "non-negative"),
        ([1.0, 2.0], [0.0, 0.0], {}, "sum to 0"),
        ([1.0], None, {"level": 1.0}, "level"),
        ([1.0], None, {"resamples": 0}, "resamples"),
    ],
)
def test_bad_input(num, den, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        ratio_interval(torch.tensor(num), None if den is None else torch.tensor(den), **kwargs)


@pytest.mark.parametrize(("num", "den"), [([1.0, 2.0], [1.0]), ([[1.0]], None)])
def test_shapes_that_do_not_pair_up(num, den) -> None:
    # the shapes' names catch it first under the tests' type checking; ValueError otherwise
    with pytest.raises((ValueError, TypeCheckError)):
        ratio_interval(torch.tensor(num), None if den is None else torch.tensor(den))


def test_error_rate_interval_needs_paired_lists() -> None:
    with pytest.raises(ValueError, match="pair up"):
        error_rate_interval(["a b"], ["a", "b"])

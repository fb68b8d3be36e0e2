"""WER / CER against jiwer, and the English text normaliser."""

from __future__ import annotations

import jiwer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resgen.eval.text import (
    character_error_rate,
    edit_counts,
    error_rate_difference,
    normalize_text,
    number_to_words,
    word_error_rate,
)

# Small vocabularies so that random sentences share words and the alignments are interesting.
words = st.sampled_from(["a", "b", "ab", "ba", "abc", "c", "cab", "the", "cat"])
sentence = st.lists(words, min_size=1, max_size=12).map(" ".join)
maybe_empty = st.lists(words, min_size=0, max_size=12).map(" ".join)
pairs = st.lists(st.tuples(sentence, maybe_empty), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(pairs=pairs)
def test_wer_matches_jiwer(pairs) -> None:
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    expected = jiwer.wer(refs, hyps)
    assert word_error_rate(refs, hyps, normalize=False) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=150, deadline=None)
@given(pairs=pairs)
def test_cer_matches_jiwer(pairs) -> None:
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    expected = jiwer.cer(refs, hyps)
    assert character_error_rate(refs, hyps, normalize=False) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(pairs=pairs)
def test_counts_match_jiwer_totals(pairs) -> None:
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    out = jiwer.process_words(refs, hyps)
    counts = edit_counts(refs, hyps, normalize=False)
    assert counts.errors == out.substitutions + out.deletions + out.insertions
    assert counts.reference_length == out.hits + out.substitutions + out.deletions


def test_known_values() -> None:
    assert word_error_rate(["the cat sat"], ["the cat sat"]) == 0.0
    assert word_error_rate(["the cat sat"], ["the bat sat down"]) == pytest.approx(2 / 3)
    assert word_error_rate(["a b", "c d"], ["a b", ""]) == pytest.approx(2 / 4)
    assert character_error_rate(["abc"], ["abd"]) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Hello, World!", "hello world"),
        ("<s> ten of clubs </s>", "ten of clubs"),
        ("Mr. Dashwood's cold-hearted son", "mister dashwood's cold hearted son"),
        ("It's 42% of 1,000 people", "it's forty two percent of one thousand people"),
        ("She came 3rd; he came 21st.", "she came third he came twenty first"),
        ("Pi is 3.14", "pi is three point one four"),
        ("$5 and -2 degrees", "five dollars and minus two degrees"),
        (
            "In 1990 \u201cquotes\u201d & \u2018single\u2019",
            "in one thousand nine hundred ninety quotes and single",
        ),
        ("  Spaces\tand\nnewlines  ", "spaces and newlines"),
        ("'quoted' don't", "quoted don't"),
    ],
)
def test_normaliser(raw: str, normalised: str) -> None:
    assert normalize_text(raw) == normalised


def test_normaliser_makes_formatting_free() -> None:
    assert word_error_rate(["And mister John, 2 dogs."], ["and Mr John two dogs"]) == 0.0


@pytest.mark.parametrize(
    ("n", "cardinal", "ordinal"),
    [
        (0, "zero", "zeroth"),
        (7, "seven", "seventh"),
        (12, "twelve", "twelfth"),
        (40, "forty", "fortieth"),
        (101, "one hundred one", "one hundred first"),
        (2_000_005, "two million five", "two million fifth"),
        (10**12, "one trillion", "one trillionth"),
    ],
)
def test_number_to_words(n: int, cardinal: str, ordinal: str) -> None:
    assert number_to_words(n) == cardinal
    assert number_to_words(n, ordinal=True) == ordinal


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="pair up"):
        word_error_rate(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        word_error_rate([""], ["a"])
    with pytest.raises(TypeError):
        word_error_rate("a b", "a b")
    with pytest.raises(ValueError):
        number_to_words(-1)


def test_a_paired_wer_difference_reads_the_same_targets_for_both_rows() -> None:
    references = ["the red cat sat", "a blue dog ran far", "one two three"]
    perfect = list(references)
    one_word_off = ["the red hat sat", "a blue dog ran far", "one two three"]
    assert error_rate_difference(references, perfect, perfect) == (0.0, (0.0, 0.0))
    value, (low, high) = error_rate_difference(references, one_word_off, perfect)
    assert value == pytest.approx(1 / 12)
    assert 0.0 <= low <= value <= high <= 1 / 4  # one edit in every draw at most: 1 of >= 4 words

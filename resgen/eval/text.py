"""English text normalisation and word / character error rates.

The normaliser (:func:`normalize_text`, applied to references and hypotheses alike) does, in order:

1. Unicode NFKC, then lower-case; curly quotes become ASCII quotes.
2. Remove sphinx-style sentence markers ``<s>``, ``</s>``, ``<sil>``.
3. Numbers become words: thousands separators (``1,000``) are dropped; ``%`` is read "percent";
   ``$N`` is read "N dollars"; ordinals (``1st``, ``22nd``) become ordinal words ("first",
   "twenty second"); decimals are read digit by digit after "point" (``3.14`` -> "three point one
   four"); integers become cardinal words in the short scale ("one thousand nine hundred ninety");
   a leading ``-`` before a digit is read "minus".
4. ``&`` becomes "and". Apostrophes are kept inside words (``don't``) and dropped elsewhere.
5. Every other non-alphanumeric character (punctuation, symbols, hyphens) becomes a space.
6. Runs of whitespace become one space; leading and trailing spaces are removed.
7. A few spoken-form abbreviations are expanded word by word (:data:`ABBREVIATIONS`: ``mr`` ->
   "mister", ``mrs`` -> "missus", ``dr`` -> "doctor", ``vs`` -> "versus", ``jr`` -> "junior",
   ``sr`` -> "senior", ``st`` is left alone as it is ambiguous), so that an ASR writing "Mr." is
   not penalised against a reference that says "mister".

Error rates are corpus-level, as jiwer computes them: the total Levenshtein edit count
(substitutions + deletions + insertions, each costing 1) over all utterances, divided by the total
reference length. Words are the space-separated tokens of the normalised text; characters are
the characters of the normalised text, spaces included. :func:`error_rate_interval` gives a
percentile-bootstrap interval of either rate over the choice of utterances.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import torch
from attrs import frozen

from resgen.eval.bootstrap import ratio_interval

__all__ = [
    "ABBREVIATIONS",
    "normalize_text",
    "number_to_words",
    "ErrorCounts",
    "utterance_edit_counts",
    "edit_counts",
    "error_rate_interval",
    "error_rate_difference",
    "word_error_rate",
    "character_error_rate",
]

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = (
    (10**15, "quadrillion"),
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (10**3, "thousand"),
)
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int, ordinal: bool = False) -> str:
    """Spell a non-negative integer in English words (short scale, no "and").

    Args:
        n: the integer, ``0 <= n < 10**18``.
        ordinal: spell the ordinal ("twenty first") instead of the cardinal.

    Returns:
        The words, separated by single spaces, e.g. ``1990 -> "one thousand nine hundred
        ninety"``.
    """
    if not 0 <= n < 10**18:
        raise ValueError(f"number_to_words handles 0 <= n < 10**18, got {n}")
    words: list[str] = []
    if n == 0:
        words = ["zero"]
    for value, name in _SCALES:
        if n >= value:
            words += _below_thousand(n // value) + [name]
            n %= value
    if n or not words:
        words += _below_thousand(n)
    if ordinal:
        last = words[-1]
        if last in _ORDINAL_IRREGULAR:
            words[-1] = _ORDINAL_IRREGULAR[last]
        elif last.endswith("y"):
            words[-1] = last[:-1] + "ieth"
        else:
            words[-1] = last + "th"
    return " ".join(words)


ABBREVIATIONS: dict[str, str] = {
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    "vs": "versus",
    "jr": "junior",
    "sr": "senior",
}
"""Word-level expansions applied at the end of :func:`normalize_text`."""

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_MARKERS = re.compile(r"</?s>|<sil>")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DOLLARS = re.compile(r"\$(\d+(?:\.\d+)?)")
_PERCENT = re.compile(r"(\d)\s*%")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_DECIMAL = re.compile(r"(\d+)\.(\d+)")
_NEGATIVE = re.compile(r"(?<![\w.])-(?=\d)")
_INTEGER = re.compile(r"\d+")
_APOSTROPHE = re.compile(r"(?<![a-z0-9])'|'(?![a-z0-9])")
_NON_WORD = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")


def _spell_decimal(match: re.Match[str]) -> str:
    whole, frac = match.group(1), match.group(2)
    return f" {number_to_words(int(whole))} point {' '.join(_ONES[int(d)] for d in frac)} "


def _spell_integer(digits: str) -> str:
    if len(digits) > 18:  # too long to be a quantity: read digit by digit
        return " ".join(_ONES[int(d)] for d in digits)
    return number_to_words(int(digits))


def normalize_text(text: str) -> str:
    """Normalise English text for WER/CER (the steps of the module docstring).

    Args:
        text: raw text, e.g. ``"Mr. Smith paid $1,250.50 on the 3rd!"``.

    Returns:
        Lower-case words separated by single spaces, e.g. ``"mr smith paid one thousand two
        hundred fifty point five zero dollars on the third"``.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    text = _MARKERS.sub(" ", text)
    text = _THOUSANDS.sub("", text)
    text = _DOLLARS.sub(r" \1 dollars ", text)
    text = _PERCENT.sub(r"\1 percent ", text)
    text = _ORDINAL.sub(lambda m: f" {number_to_words(int(m.group(1)), ordinal=True)} ", text)
    text = _DECIMAL.sub(_spell_decimal, text)
    text = _NEGATIVE.sub(" minus ", text)
    text = _INTEGER.sub(lambda m: f" {_spell_integer(m.group(0))} ", text)
    text = text.replace("&", " and ")
    text = _APOSTROPHE.sub(" ", text)
    text = _NON_WORD.sub(" ", text)
    return " ".join(ABBREVIATIONS.get(word, word) for word in text.split())


@frozen
class ErrorCounts:
    """Levenshtein alignment counts of one utterance, or summed over a corpus.

    Attributes:
        substitutions: substituted units.
        deletions: reference units missing from the hypothesis.
        insertions: hypothesis units absent from the reference.
        reference_length: total number of reference units.
    """

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        """Total edits: substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """``errors / reference_length`` (may exceed 1 with many insertions)."""
        if self.reference_length == 0:
            raise ValueError("the references are empty: an error rate is undefined")
        return self.errors / self.reference_length


def _align(ref: Sequence[str], hyp: Sequence[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of a minimum-edit alignment.

    Among alignments of minimal total cost, ties are broken towards more substitutions (then
    deletions), so the split matches the usual backtrace; the total is exact either way.
    """
    # Each cell holds (cost, substitutions, deletions, insertions); tuples compare cost first.
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, r in enumerate(ref, start=1):
        cur = [(i, 0, i, 0)]
        for j, h in enumerate(hyp, start=1):
            c, s, d, n = prev[j - 1]
            diag = (c, s, d, n) if r == h else (c + 1, s + 1, d, n)
            c, s, d, n = prev[j]
            up = (c + 1, s, d + 1, n)
            c, s, d, n = cur[j - 1]
            left = (c + 1, s, d, n + 1)
            cur.append(min(diag, up, left, key=lambda t: (t[0], -t[1], -t[2])))
        prev = cur
    _, s, d, n = prev[-1]
    return s, d, n


def _check_pairs(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise TypeError("references and hypotheses must be sequences of strings, not one str")
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(references)} references but {len(hypotheses)} hypotheses: they must pair up"
        )
    for item in (*references, *hypotheses):
        if not isinstance(item, str):
            raise TypeError(f"expected str transcripts, got {type(item).__name__}")


def utterance_edit_counts(
    references: Sequence[str],
    hypotheses: Sequence[str],
    *,
    unit: str = "word",
    normalize: bool = True,
) -> list[ErrorCounts]:
    """Edit counts of each (reference, hypothesis) pair, in order.

    Args:
        references: reference transcripts, one per utterance.
        hypotheses: recognised transcripts, paired with ``references``.
        unit: ``"word"`` (space-separated tokens) or ``"char"`` (characters, spaces included).
        normalize: apply :func:`normalize_text` first; when False the text is only split on
            whitespace (words) or stripped with inner whitespace runs collapsed (characters).

    Returns:
        One :class:`ErrorCounts` per utterance (its ``reference_length`` may be 0).
    """
    _check_pairs(references, hypotheses)
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    prep = normalize_text if normalize else (lambda t: _SPACES.sub(" ", t).strip())
    counts = []
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_text, hyp_text = prep(ref), prep(hyp)
        if unit == "word":
            ref_units, hyp_units = ref_text.split(), hyp_text.split()
        else:
            ref_units, hyp_units = list(ref_text), list(hyp_text)
        counts.append(ErrorCounts(*_align(ref_units, hyp_units), len(ref_units)))
    return counts


def edit_counts(
    references: Sequence[str],
    hypotheses: Sequence[str],
    *,
    unit: str = "word",
    normalize: bool = True,
) -> ErrorCounts:
    """Corpus-level edit counts between paired references and hypotheses: the sums of
    :func:`utterance_edit_counts` (same arguments).

    Returns:
        Summed substitutions, deletions, insertions and reference length.
    """
    each = utterance_edit_counts(references, hypotheses, unit=unit, normalize=normalize)
    return ErrorCounts(
        sum(c.substitutions for c in each),
        sum(c.deletions for c in each),
        sum(c.insertions for c in each),
        sum(c.reference_length for c in each),
    )


def error_rate_interval(
    references: Sequence[str],
    hypotheses: Sequence[str],
    *,
    unit: str = "word",
    normalize: bool = True,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the corpus WER (``unit="word"``) or CER (``"char"``)
    over the choice of utterances (:func:`~resgen.eval.bootstrap.ratio_interval`).

    Args:
        references: reference transcripts, one per utterance.
        hypotheses: recognised transcripts, paired with ``references``.
        unit: ``"word"`` or ``"char"``.
        normalize: apply :func:`normalize_text` to both sides first (default).
        level: the interval's coverage (0.95: a 95 % interval).
        resamples: bootstrap draws of the utterances.
        seed: seed of the draws (the same inputs always give the same interval).

    Returns:
        ``(low, high)`` bounds of the error rate.

    Raises:
        ValueError: when the lists differ in length or all references are empty.
    """
    each = utterance_edit_counts(references, hypotheses, unit=unit, normalize=normalize)
    return ratio_interval(
        torch.tensor([float(c.errors) for c in each]),
        torch.tensor([float(c.reference_length) for c in each]),
        level=level,
        resamples=resamples,
        seed=seed,
    )


def error_rate_difference(
    references: Sequence[str],
    hypotheses: Sequence[str],
    baseline: Sequence[str],
    *,
    unit: str = "word",
    normalize: bool = True,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """The error rate of ``hypotheses`` minus that of ``baseline`` on the same references, with
    its paired percentile-bootstrap interval: each draw of utterances scores both systems, so
    what the targets share (a hard sentence) cancels out of the difference.

    Args:
        references: reference transcripts, one per utterance.
        hypotheses: one system's transcripts, paired with ``references``.
        baseline: the other system's transcripts, paired with ``references``.
        unit: ``"word"`` or ``"char"``.
        normalize: apply :func:`normalize_text` to all sides first (default).
        level: the interval's coverage (0.95: a 95 % interval).
        resamples: bootstrap draws of the utterances.
        seed: seed of the draws (the same inputs always give the same interval).

    Returns:
        ``(difference, (low, high))``; a negative difference: ``hypotheses`` err less.

    Raises:
        ValueError: when the lists differ in length or all references are empty.
    """
    mine = utterance_edit_counts(references, hypotheses, unit=unit, normalize=normalize)
    theirs = utterance_edit_counts(references, baseline, unit=unit, normalize=normalize)
    edits = torch.tensor([float(a.errors - b.errors) for a, b in zip(mine, theirs, strict=True)])
    lengths = torch.tensor([float(c.reference_length) for c in mine])
    if lengths.sum() == 0:
        raise ValueError("the references are empty: an error rate is undefined")
    interval = ratio_interval(edits, lengths, level=level, resamples=resamples, seed=seed)
    return float(edits.sum() / lengths.sum()), interval


def word_error_rate(
    references: Sequence[str], hypotheses: Sequence[str], *, normalize: bool = True
) -> float:
    """Corpus word error rate: total word edits / total reference words.

    Args:
        references: reference transcripts, one per utterance.
        hypotheses: recognised transcripts, paired with ``references``.
        normalize: apply :func:`normalize_text` to both sides first (default).

    Returns:
        The WER (0 is perfect; may exceed 1).

    Raises:
        ValueError: when the lists differ in length or all references are empty.
    """
    return edit_counts(references, hypotheses, unit="word", normalize=normalize).rate


def character_error_rate(
    references: Sequence[str], hypotheses: Sequence[str], *, normalize: bool = True
) -> float:
    """Corpus character error rate: total character edits / total reference characters.

    Characters are those of the normalised text, single spaces between words included.

    Args:
        references: reference transcripts, one per utterance.
        hypotheses: recognised transcripts, paired with ``references``.
        normalize: apply :func:`normalize_text` to both sides first (default).

    Returns:
        The CER (0 is perfect; may exceed 1).

    Raises:
        ValueError: when the lists differ in length or all references are empty.
    """
    return edit_counts(references, hypotheses, unit="char", normalize=normalize).rate

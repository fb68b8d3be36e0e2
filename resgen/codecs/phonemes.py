"""Text front-end for TTS: English text to phoneme ids, through gruut (offline).

:class:`PhonemeTokenizer` turns text into a sequence of symbols of a fixed
:class:`PhonemeVocabulary`, then into integer ids. The pipeline:

1. **Normalise and check the characters.** Unicode is decomposed (NFKD) and accents are dropped
   (``café`` reads as ``cafe``); curly quotes, dashes and the ellipsis become their ASCII forms.
   Anything left outside ASCII letters, digits, white space and ``. , ! ? ; : ' " - ( ) $ % &``
   raises a :class:`ValueError` that names the characters (gruut would silently drop an emoji and
   return no phonemes for Chinese, which would give a model a wrong, silent input).
2. **Phonemise with gruut** (``lang="en-us"``): numbers, currency, ordinals and abbreviations are
   expanded (``"42"`` reads *forty two*, ``"Dr."`` *Doctor*), known words come from its lexicon and
   unknown words from its grapheme-to-phoneme model. It is deterministic.
3. **Map to symbols.** Each word gives its phonemes, with stress fused into the vowel (``ˈæ``,
   ``ˌæ``, ``æ``); consecutive words are separated by the word-boundary symbol ``_``; punctuation
   becomes a break symbol: ``.`` (full stop), ``?``, ``!`` or ``,`` (every minor break: comma,
   semicolon, colon, ellipsis).

The vocabulary is gruut's en-us inventory (24 consonants, 16 vowels in 3 stress variants each)
plus the padding, word-boundary and break symbols: 78 symbols, id 0 is padding. It is fixed in
this module (:data:`DEFAULT_SYMBOLS`) and can be saved beside a model as JSON, so a trained
model's ids never move when gruut is upgraded.

gruut is imported only when text is first phonemised (install it with ``tools/install_tts.sh``).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from attrs import field, frozen
from jaxtyping import Bool, Int
from torch import Tensor

__all__ = [
    "PAD",
    "WORD_BOUNDARY",
    "BREAKS",
    "DEFAULT_SYMBOLS",
    "SPECIAL_SYMBOLS",
    "ALLOWED_PUNCTUATION",
    "normalize_text",
    "PhonemeVocabulary",
    "PhonemeTokenizer",
]

PAD = "<pad>"
"""Padding symbol (always id 0)."""

WORD_BOUNDARY = "_"
"""Symbol between two consecutive words."""

BREAKS: dict[str, str] = {".": ".", "?": "?", "!": "!"}
"""Major-break punctuation kept as its own symbol; any other break (``, ; : ...``) becomes ``,``."""

_MINOR_BREAK = ","

_CONSONANTS = (
    "p b t d k ɡ t͡ʃ d͡ʒ f v θ ð s z ʃ ʒ h l m n ŋ ɹ w j"  # gruut-ipa en-us, in its order
).split()
_VOWELS = "ɑ æ ɛ i ɪ ɔ ʊ ʌ u ə ɚ eɪ aɪ oʊ ɔɪ aʊ".split()
_PRIMARY, _SECONDARY = "ˈ", "ˌ"

SPECIAL_SYMBOLS: tuple[str, ...] = (PAD, WORD_BOUNDARY, _MINOR_BREAK, ".", "?", "!")
"""Symbols every vocabulary holds, in this order at its start (padding first)."""

DEFAULT_SYMBOLS: tuple[str, ...] = (
    *SPECIAL_SYMBOLS,
    *_CONSONANTS,
    *(f"{stress}{vowel}" for vowel in _VOWELS for stress in ("", _PRIMARY, _SECONDARY)),
)
"""The default vocabulary: specials, gruut's en-us consonants, then each vowel unstressed,
with primary and with secondary stress (78 symbols)."""

ALLOWED_PUNCTUATION = ".,!?;:'\"-()$%&"
"""Punctuation accepted in input text (besides ASCII letters, digits and white space)."""

# Unicode forms that have a plain ASCII reading, applied before the character check.
_ASCII_FORMS = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2033": '"',
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": ", ",
    "\u2015": ", ",
    "\u2026": "...",
    "\u00a0": " ",
}
# Aliases gruut-ipa lists for its en-us phonemes, mapped to the canonical symbol.
_ALIASES = {"tʃ": "t͡ʃ", "dʒ": "d͡ʒ", "g": "ɡ", "r": "ɹ", "ɝ": "ɚ", "e": "eɪ", "o": "oʊ"}


def _check_symbols(symbols: tuple[str, ...]) -> None:
    if len(symbols) < 2 or symbols[0] != PAD:
        raise ValueError(f"a phoneme vocabulary must start with the padding symbol {PAD!r}")
    if len(set(symbols)) != len(symbols):
        dupes = sorted({s for s in symbols if symbols.count(s) > 1})
        raise ValueError(f"duplicate symbols in the phoneme vocabulary: {dupes}")
    missing = [s for s in SPECIAL_SYMBOLS if s not in symbols]
    if missing:
        raise ValueError(f"the phoneme vocabulary lacks the special symbols {missing}")


@frozen
class PhonemeVocabulary:
    """An ordered, fixed set of phoneme symbols; a symbol's id is its position.

    Attributes:
        symbols: the symbols; ``symbols[0]`` is :data:`PAD`, and the word-boundary and break
            symbols must be present.
        language: the gruut language the symbols were made for (``"en-us"``).
    """

    symbols: tuple[str, ...] = field(default=DEFAULT_SYMBOLS, converter=tuple)
    language: str = "en-us"
    _index: dict[str, int] = field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        _check_symbols(self.symbols)
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    def __len__(self) -> int:
        """Number of symbols (the size of an embedding table over the ids)."""
        return len(self.symbols)

    @property
    def pad_id(self) -> int:
        """Id of the padding symbol (0)."""
        return 0

    def __contains__(self, symbol: object) -> bool:
        """Whether ``symbol`` is in the vocabulary."""
        return symbol in self._index

    def id(self, symbol: str) -> int:
        """The id of ``symbol``.

        Raises:
            KeyError: when the symbol is not in the vocabulary (the message names it).
        """
        try:
            return self._index[symbol]
        except KeyError:
            raise KeyError(f"phoneme symbol {symbol!r} is not in the vocabulary") from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (format version, language, symbols)."""
        return {"format": "resgen-phonemes/1", "language": self.language, "symbols": self.symbols}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhonemeVocabulary:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: when ``data`` is not a phoneme vocabulary.
        """
        if not isinstance(data, dict) or data.get("format") != "resgen-phonemes/1":
            raise ValueError("not a resgen phoneme vocabulary (format 'resgen-phonemes/1')")
        symbols = data.get("symbols")
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise ValueError("a phoneme vocabulary's 'symbols' must be a list of strings")
        return cls(tuple(symbols), str(data.get("language", "en-us")))

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON, whole or not at all (see :mod:`resgen.files`)."""
        from resgen.files import atomic_write

        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> PhonemeVocabulary:
        """Read a vocabulary written by :meth:`save`.

        Raises:
            FileNotFoundError: when the file does not exist.
            ValueError: when it is not valid JSON or not a phoneme vocabulary.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no phoneme vocabulary at {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    @classmethod
    def from_gruut_inventory(cls, language: str = "en-us") -> PhonemeVocabulary:
        """Build the vocabulary from gruut-ipa's phoneme inventory of ``language``.

        For en-us this equals the default vocabulary (:data:`DEFAULT_SYMBOLS`, tested); use it to
        build a vocabulary for another gruut language.

        Raises:
            ImportError: when gruut is not installed.
        """
        gruut_ipa = _import_gruut_ipa()
        inventory = gruut_ipa.Phonemes.from_language(language).phonemes
        consonants = [p.text for p in inventory if p.consonant is not None]
        vowels = [p.text for p in inventory if p.consonant is None]
        return cls(
            (
                *SPECIAL_SYMBOLS,
                *consonants,
                *(f"{s}{v}" for v in vowels for s in ("", _PRIMARY, _SECONDARY)),
            ),
            language,
        )


def _import_gruut() -> Any:
    try:
        import gruut
    except ImportError as error:
        raise ImportError(
            "the TTS text front-end needs gruut: run `bash tools/install_tts.sh .venv/bin/python` "
            "or `pip install gruut==2.4.0 gruut-lang-en==2.0.1`"
        ) from error
    return gruut


def _import_gruut_ipa() -> Any:
    _import_gruut()
    import gruut_ipa

    return gruut_ipa


def normalize_text(text: str) -> str:
    """Normalise ``text`` to the characters the front-end accepts, or explain what is wrong.

    Args:
        text: any text.

    Returns:
        The text with accents removed, typographic quotes/dashes/ellipsis in ASCII and runs of
        white space collapsed.

    Raises:
        TypeError: when ``text`` is not a string.
        ValueError: when the text is empty (or only white space), or holds characters the
            front-end cannot read (each one is named with its code point).
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text is empty: there is nothing to phonemise")
    text = "".join(_ASCII_FORMS.get(ch, ch) for ch in text)
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    bad: dict[str, None] = {}
    for ch in text:
        if not ((ch.isascii() and (ch.isalnum() or ch.isspace())) or ch in ALLOWED_PUNCTUATION):
            bad[ch] = None
    if bad:
        named = ", ".join(f"{ch!r} (U+{ord(ch):04X} {unicodedata.name(ch, '?')})" for ch in bad)
        raise ValueError(
            f"text holds characters the English front-end cannot handle: {named}. Accepted: "
            f"ASCII letters and digits, white space and {ALLOWED_PUNCTUATION!r}"
        )
    return " ".join(text.split())


class PhonemeTokenizer:
    """English text to phoneme ids with gruut (offline, deterministic).

    Args:
        vocabulary: the symbol set; default :class:`PhonemeVocabulary` ``()`` (en-us). Pass the
            vocabulary saved with a trained model to reproduce its ids exactly.

    Example:
        >>> tok = PhonemeTokenizer()
        >>> tok.phonemize("Hi, 42!")  # doctest: +SKIP
        ['h', 'ˈaɪ', ',', 'f', 'ˈɔ', 'ɹ', 't', 'i', '_', 't', 'ˈu', '!']
    """

    def __init__(self, vocabulary: PhonemeVocabulary | None = None) -> None:
        self.vocabulary = vocabulary if vocabulary is not None else PhonemeVocabulary()
        self._cache: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        """Size of the vocabulary."""
        return len(self.vocabulary)

    @property
    def pad_id(self) -> int:
        """Id used for padding in :meth:`batch` (0)."""
        return self.vocabulary.pad_id

    def _symbol(self, phoneme: str, word: str) -> str:
        stress = phoneme[0] if phoneme[:1] in (_PRIMARY, _SECONDARY) else ""
        base = phoneme[len(stress) :]
        symbol = stress + _ALIASES.get(base, base)
        if symbol not in self.vocabulary:
            raise ValueError(
                f"gruut gave the phoneme {phoneme!r} for the word {word!r}, which is not in the "
                "phoneme vocabulary"
            )
        return symbol

    def phonemize(self, text: str) -> list[str]:
        """The symbols of ``text``: phonemes, word boundaries and punctuation breaks.

        Args:
            text: English text (numbers, currency and common abbreviations are expanded).

        Returns:
            A non-empty list of vocabulary symbols.

        Raises:
            ValueError: for empty text, characters the front-end cannot handle, or text without
                any pronounceable word (e.g. only punctuation).
        """
        clean = normalize_text(text)
        cached = self._cache.get(clean)
        if cached is not None:
            return list(cached)
        gruut = _import_gruut()
        items: list[tuple[str, list[str]]] = []  # ("word" | "break", symbols)
        for sentence in gruut.sentences(clean, lang=self.vocabulary.language):
            for word in sentence:
                if word.is_break:
                    mark = word.text.strip()
                    items.append(("break", [BREAKS.get(mark, _MINOR_BREAK)]))
                elif word.is_spoken:
                    phonemes = [p for p in (word.phonemes or []) if p.strip()]
                    if not phonemes:
                        raise ValueError(
                            f"gruut found no pronunciation for {word.text!r} in {text!r}; "
                            "spell it out in words"
                        )
                    items.append(("word", [self._symbol(p, word.text) for p in phonemes]))
        if not any(kind == "word" for kind, _ in items):
            raise ValueError(f"text has no pronounceable word: {text!r}")
        while items and items[0][0] == "break":  # a leading break carries no information
            items.pop(0)
        symbols: list[str] = []
        for i, (kind, syms) in enumerate(items):
            if kind == "break" and symbols and symbols[-1] in (_MINOR_BREAK, *BREAKS.values()):
                # ", ." or ". ." -> keep the stronger (major) break
                if symbols[-1] == _MINOR_BREAK:
                    symbols[-1] = syms[0]
                continue
            if i and kind == "word" and items[i - 1][0] == "word":
                symbols.append(WORD_BOUNDARY)
            symbols.extend(syms)
        if len(self._cache) < 100_000:
            self._cache[clean] = tuple(symbols)
        return symbols

    def encode(self, text: str) -> list[int]:
        """Phoneme ids of ``text`` (see :meth:`phonemize`); never contains the padding id.

        Raises:
            ValueError: as :meth:`phonemize`.
        """
        return [self.vocabulary.id(s) for s in self.phonemize(text)]

    def encode_tensor(self, text: str) -> Int[Tensor, " phonemes"]:
        """:meth:`encode` as a ``LongTensor`` ``[phonemes]``."""
        return torch.tensor(self.encode(text), dtype=torch.long)

    def batch(
        self, texts: Sequence[str]
    ) -> tuple[Int[Tensor, "batch phonemes"], Bool[Tensor, "batch phonemes"]]:
        """Encode several texts and pad them to the longest.

        Args:
            texts: one or more texts.

        Returns:
            ``(ids, padding)``: ``ids [batch, phonemes]`` long, padded with :attr:`pad_id` on the
            right, and ``padding [batch, phonemes]``, ``True`` at padded positions.

        Raises:
            ValueError: when ``texts`` is empty, or for any bad text (its index is named).
        """
        if isinstance(texts, str):
            raise TypeError("batch() takes a sequence of texts; use encode() for one text")
        if len(texts) == 0:
            raise ValueError("batch() needs at least one text")
        encoded = []
        for i, text in enumerate(texts):
            try:
                encoded.append(self.encode(text))
            except ValueError as error:
                raise ValueError(f"text {i}: {error}") from error
        longest = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), longest), self.pad_id, dtype=torch.long)
        padding = torch.ones((len(encoded), longest), dtype=torch.bool)
        for row, seq in enumerate(encoded):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            padding[row, : len(seq)] = False
        return ids, padding

    def decode_symbols(self, ids: Sequence[int] | Int[Tensor, " phonemes"]) -> list[str]:
        """The symbols of ``ids`` (padding ids are dropped).

        Args:
            ids: a list of ids or a 1-D integer tensor.

        Raises:
            ValueError: when an id is outside the vocabulary.
        """
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        out = []
        for value in values:
            if not 0 <= int(value) < len(self.vocabulary):
                raise ValueError(
                    f"phoneme id {value} is out of range for a vocabulary of "
                    f"{len(self.vocabulary)} symbols"
                )
            if value != self.pad_id:
                out.append(self.vocabulary.symbols[int(value)])
        return out

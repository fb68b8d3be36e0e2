"""The TTS text front-end: gruut phonemes, the fixed vocabulary, batching and clear errors.

gruut must be installed (``tools/install_tts.sh``, run by ``make setup``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resgen.codecs.phonemes import (
    DEFAULT_SYMBOLS,
    PAD,
    WORD_BOUNDARY,
    PhonemeTokenizer,
    PhonemeVocabulary,
    normalize_text,
)


@pytest.fixture(scope="module")
def tok() -> PhonemeTokenizer:
    return PhonemeTokenizer()


def test_vocabulary_is_gruut_inventory_plus_specials() -> None:
    vocab = PhonemeVocabulary()
    assert vocab.symbols == DEFAULT_SYMBOLS
    assert vocab.symbols[0] == PAD and vocab.pad_id == 0
    assert len(vocab) == 78  # 6 specials + 24 consonants + 16 vowels x 3 stress levels
    # The hard-coded default is exactly what gruut-ipa's en-us inventory gives.
    assert PhonemeVocabulary.from_gruut_inventory("en-us") == vocab


def test_deterministic(tok: PhonemeTokenizer) -> None:
    text = "The quick brown fox jumps over the lazy dog, doesn't it?"
    first = tok.encode(text)
    assert first == tok.encode(text) == PhonemeTokenizer().encode(text)
    assert all(0 < i < len(tok) for i in first)


def test_numbers_and_abbreviations_expanded(tok: PhonemeTokenizer) -> None:
    assert tok.phonemize("42") == tok.phonemize("forty two")
    assert tok.phonemize("I have 42 cats.") == tok.phonemize("I have forty two cats.")
    assert tok.phonemize("Dr. Smith") == tok.phonemize("Doctor Smith")
    symbols = tok.phonemize("42")
    assert symbols == ["f", "ˈɔ", "ɹ", "t", "i", WORD_BOUNDARY, "t", "ˈu"]


def test_punctuation_and_boundaries(tok: PhonemeTokenizer) -> None:
    symbols = tok.phonemize("Hello, world. Really?")
    assert symbols.count(",") == 1 and symbols.count(".") == 1 and symbols[-1] == "?"
    assert WORD_BOUNDARY not in symbols[:3]
    assert tok.phonemize("hi!")[-1] == "!"
    # typographic forms and accents are normalised, not rejected
    assert tok.phonemize("it’s a café") == tok.phonemize("it's a cafe")


def test_round_trip_symbols_and_json(tok: PhonemeTokenizer, tmp_path: Path) -> None:
    text = "She sells sea shells by the sea shore."
    ids = tok.encode(text)
    assert tok.decode_symbols(ids) == tok.phonemize(text)
    assert tok.decode_symbols(tok.encode_tensor(text)) == tok.phonemize(text)
    path = tmp_path / "phonemes.json"
    tok.vocabulary.save(path)
    loaded = PhonemeVocabulary.load(path)
    assert loaded == tok.vocabulary
    assert PhonemeTokenizer(loaded).encode(text) == ids
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["symbols"][0] == PAD and data["language"] == "en-us"


def test_encode_tensor_dtype(tok: PhonemeTokenizer) -> None:
    ids = tok.encode_tensor("a cat")
    assert ids.dtype == torch.long and ids.ndim == 1


def test_batch_padding(tok: PhonemeTokenizer) -> None:
    texts = ["Hi.", "A much longer sentence than the first one."]
    ids, padding = tok.batch(texts)
    assert ids.dtype == torch.long and padding.dtype == torch.bool
    lengths = [len(tok.encode(t)) for t in texts]
    assert ids.shape == padding.shape == (2, max(lengths))
    assert (~padding).sum(dim=1).tolist() == lengths
    assert (ids[padding] == tok.pad_id).all()
    assert (ids[~padding] != tok.pad_id).all()
    assert ids[0, : lengths[0]].tolist() == tok.encode(texts[0])


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_text_is_a_clear_error(tok: PhonemeTokenizer, text: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        tok.encode(text)


@pytest.mark.parametrize(
    ("text", "named"),
    [("hello 日本", "日"), ("cat 🙂 dog", "SMILING FACE"), ("2+2=4", "PLUS SIGN"), ("a # b", "#")],
)
def test_unsupported_characters_are_named(tok: PhonemeTokenizer, text: str, named: str) -> None:
    with pytest.raises(ValueError, match="cannot handle") as info:
        tok.encode(text)
    assert named in str(info.value)


def test_other_bad_input(tok: PhonemeTokenizer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no pronounceable word"):
        tok.encode("--- ...")
    with pytest.raises(ValueError, match="text 1"):
        tok.batch(["fine", ""])
    with pytest.raises(ValueError, match="at least one"):
        tok.batch([])
    with pytest.raises(TypeError):
        normalize_text(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        tok.decode_symbols([len(tok)])
    with pytest.raises(ValueError, match="duplicate"):
        PhonemeVocabulary((PAD, "_", ",", ".", "?", "!", "a", "a"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a resgen phoneme vocabulary"):
        PhonemeVocabulary.load(bad)
    with pytest.raises(FileNotFoundError):
        PhonemeVocabulary.load(tmp_path / "missing.json")

"""Text front-ends: how a sentence becomes the ids and timing a TTS network reads.

The synthesiser front-end needs flite (``tools/install_tts.sh``), like the corpus tests.
"""

from __future__ import annotations

import pytest
import torch

from resgen.codecs.phonemes import SPECIAL_SYMBOLS, PhonemeTokenizer
from resgen.data.speech_corpus.phone_alignments import (
    ALIGNED_LANGUAGE,
    PhoneAlignment,
    phone_vocabulary,
    synthesizer_alignments,
)
from resgen.networks.tts_transformer import spread_text
from resgen.tts.front_ends import PhonemeFrontEnd, SpokenText, SynthesizerFrontEnd, spoken_alignment

TEXT = "Where did Anna play at noon?"


def test_spread_text_places_phonemes_where_they_end() -> None:
    # frame centres 0.05, 0.15, ..., 0.95 of a 10-frame segment
    out = spread_text([(10, torch.tensor([0.12, 0.5, 1.0])), (2, 1)], 13)
    assert out.tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, -1]
    # even ends are the uniform spread
    for frames in range(0, 23):
        for phonemes in range(1, 9):
            even = (torch.arange(phonemes) + 1) / phonemes
            assert torch.equal(
                spread_text([(frames, even)], frames), spread_text([(frames, phonemes)], frames)
            )
    with pytest.raises(ValueError, match="increasing"):
        spread_text([(4, torch.tensor([0.5, 0.4, 1.0]))], 4)


def test_spoken_text_segments() -> None:
    plain = SpokenText(torch.tensor([3, 4, 5]))
    assert plain.segment(7) == (7, 3) and len(plain) == 3
    timed = SpokenText(torch.tensor([3, 4]), torch.tensor([0.4, 1.0]))
    assert timed.segment(5)[1] is timed.ends
    with pytest.raises(ValueError, match="as many ends"):
        SpokenText(torch.tensor([3, 4]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match=">= 1 id"):
        SpokenText(torch.tensor([], dtype=torch.long))


def test_front_ends() -> None:
    alignments = synthesizer_alignments("flite-awb", [TEXT, "Hello there, Clara."])
    vocabulary = phone_vocabulary(alignments)
    assert vocabulary.language == ALIGNED_LANGUAGE
    assert vocabulary.symbols[: len(SPECIAL_SYMBOLS)] == SPECIAL_SYMBOLS
    spoken = SynthesizerFrontEnd(vocabulary)(TEXT)
    assert spoken.ends is not None and float(spoken.ends[-1]) == 1.0
    assert [vocabulary.symbols[i] for i in spoken.ids][:2] == ["pau", "w"]
    with pytest.raises(ValueError, match="not in the training vocabulary"):
        spoken_alignment(PhoneAlignment(["zz"], [0.1]), vocabulary)
    with pytest.raises(ValueError, match="empty"):
        SynthesizerFrontEnd(vocabulary)("   ")
    with pytest.raises(ValueError, match="characters"):
        SynthesizerFrontEnd(vocabulary)("naïve ☃ snowman")
    plain = PhonemeFrontEnd(PhonemeTokenizer())(TEXT)
    assert plain.ends is None and len(plain) > 10

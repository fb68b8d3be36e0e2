"""Text front-ends: how a sentence becomes the :class:`SpokenText` a TTS network reads.

:class:`TextFrontEnd` is the plug point (a protocol: any callable ``str -> SpokenText`` drops in).
:class:`PhonemeFrontEnd` gives gruut phonemes without timing (the main model aligns by itself);
:class:`SynthesizerFrontEnd` gives a synthesiser's phones and their relative timing (the aligned
variant, :mod:`~resgen.data.speech_corpus.phone_alignments`). The learned-alignment front-end,
:class:`~resgen.tts.timing.DurationFrontEnd`, lives beside the aligner it needs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from attrs import frozen
from jaxtyping import Float, Int
from torch import Tensor

from resgen.codecs.phonemes import PhonemeTokenizer, PhonemeVocabulary, normalize_text
from resgen.data.speech_corpus.phone_alignments import PhoneAlignment, synthesizer_alignments

__all__ = [
    "SpokenText",
    "TextFrontEnd",
    "PhonemeFrontEnd",
    "SynthesizerFrontEnd",
    "spoken_alignment",
]


# --------------------------------------------------------------------------- text as spoken
@frozen
class SpokenText:
    """One segment's text as the TTS networks read it.

    Attributes:
        ids: ``[phonemes]`` symbol ids.
        ends: ``[phonemes]`` where each symbol ends, as a fraction of the segment's duration
            (increasing to 1), or ``None`` for text without timing, spread evenly over its frames.
    """

    ids: Int[Tensor, " phonemes"]
    ends: Float[Tensor, " phonemes"] | None = None

    def __attrs_post_init__(self) -> None:
        if self.ids.ndim != 1 or len(self.ids) < 1:
            raise ValueError(f"a text needs a 1-D tensor of >= 1 id, got {tuple(self.ids.shape)}")
        if self.ends is not None and self.ends.shape != self.ids.shape:
            raise ValueError(f"{len(self.ids)} ids need as many ends, got {tuple(self.ends.shape)}")

    def __len__(self) -> int:
        """Number of symbols."""
        return len(self.ids)

    def segment(self, frames: int) -> tuple[int, int | Float[Tensor, " phonemes"]]:
        """``(frames, count or ends)``: this text laid over ``frames`` frames, as
        :func:`~resgen.networks.tts_transformer.spread_text` takes it."""
        return frames, len(self.ids) if self.ends is None else self.ends


@runtime_checkable
class TextFrontEnd(Protocol):
    """Turns a sentence into the :class:`SpokenText` a TTS network of the recipe reads."""

    def __call__(self, text: str) -> SpokenText:
        """The ids (and, for aligned networks, the timing) of ``text``."""
        ...


@frozen
class PhonemeFrontEnd:
    """gruut phonemes, without timing (the main model: it aligns by itself).

    Attributes:
        tokenizer: the phoneme tokenizer of the training vocabulary.
    """

    tokenizer: PhonemeTokenizer

    def __call__(self, text: str) -> SpokenText:
        """``text``'s phoneme ids (``ends`` is ``None``).

        Raises:
            ValueError: empty text or characters the phonemizer cannot read.
        """
        return SpokenText(torch.tensor(self.tokenizer.encode(text), dtype=torch.long))


@frozen
class SynthesizerFrontEnd:
    """A synthesiser's phones and their relative timing (the aligned variant).

    For a sentence outside the corpus the timing comes from ``voice``'s rendering of it; only the
    relative timing is used, stretched over the number of frames the caller chooses.

    Attributes:
        vocabulary: the phone vocabulary of the training run (:func:`phone_vocabulary`).
        voice: the voice of :data:`~resgen.data.speech_corpus.voices.VOICES` that times new
            sentences.
    """

    vocabulary: PhonemeVocabulary
    voice: str = "flite-kal16"

    def __call__(self, text: str) -> SpokenText:
        """``text``'s phones and their end fractions.

        Raises:
            ValueError: empty text, characters the English front-end cannot read
                (:func:`~resgen.codecs.phonemes.normalize_text`), or a phone outside the
                training vocabulary.
        """
        (alignment,) = synthesizer_alignments(self.voice, [normalize_text(text)])
        return spoken_alignment(alignment, self.vocabulary)


def spoken_alignment(alignment: PhoneAlignment, vocabulary: PhonemeVocabulary) -> SpokenText:
    """The :class:`SpokenText` of an alignment: its phones' ids and end fractions.

    Raises:
        ValueError: a phone is not in ``vocabulary`` (the message names it).
    """
    unknown = sorted({p for p in alignment.phones if p not in vocabulary})
    if unknown:
        raise ValueError(f"phones {unknown} are not in the training vocabulary")
    ids = torch.tensor([vocabulary.id(p) for p in alignment.phones], dtype=torch.long)
    return SpokenText(ids, alignment.fractions())

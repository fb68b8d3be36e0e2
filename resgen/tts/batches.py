"""TTS examples: tokenised utterances and padded prompt + target batches.

**Training examples.** A training utterance's tokens with a given prefix: with probability
``pair_prob`` the prefix is another whole utterance of the same speaker, placed before it, and
the text is both transcripts (exactly the inference layout); otherwise it is the first 20-40 % of
the utterance's own frames and the text is its transcript. The kind is drawn once per batch, so
that single utterances are not padded to the length of pairs. Given positions are never masked
and never scored; every other position is masked by the schedule.
"""

from __future__ import annotations

from pathlib import Path

import torch
from attrs import frozen
from jaxtyping import Float, Int
from safetensors.torch import load_file
from torch import Tensor
from tqdm.auto import tqdm

from resgen.codecs.mel_rvqvae import MelRVQVAE
from resgen.data.audio_io import load_audio
from resgen.data.manifest import ManifestRecord
from resgen.networks.tts_transformer import spread_text
from resgen.training.checkpoint import save_tensors
from resgen.tts.front_ends import SpokenText
from resgen.typing import Padding, Tokens

__all__ = [
    "select_rows",
    "Utterance",
    "TTSBatch",
    "pad_batch",
    "pair_batch",
    "training_batch",
    "by_speaker",
    "held_out_batches",
    "load_mels",
    "tokenize",
]


@frozen
class Utterance:
    """One tokenised utterance.

    Attributes:
        record: its manifest record.
        tokens: ``[length, depth]`` codec tokens.
        text: its transcript as the networks read it (phoneme ids, and their timing in the
            aligned variant).
    """

    record: ManifestRecord
    tokens: Int[Tensor, "length depth"]
    text: SpokenText

    @property
    def segment(self) -> tuple[int, int | Float[Tensor, " phonemes"]]:
        """Its text laid over its own frames (a segment of
        :func:`~resgen.networks.tts_transformer.spread_text`)."""
        return self.text.segment(len(self.tokens))


@frozen
class TTSBatch:
    """A right-padded training batch.

    Attributes:
        tokens: ``[batch, length, depth]`` prompt then target tokens.
        padding: ``[batch, length]``, ``True`` after the sequence.
        given: ``[batch, length]``, ``True`` at prompt positions (never masked, never scored).
        phonemes: ``[batch, phonemes]`` ids of the prompt's then the target's text.
        phoneme_padding: ``[batch, phonemes]``, ``True`` at padding.
        frame_text: ``[batch, length]`` phoneme index of each position when each segment's
            text is laid over its frames (``-1`` at padding).
    """

    tokens: Tokens
    padding: Padding
    given: Padding
    phonemes: Int[Tensor, "batch phonemes"]
    phoneme_padding: Padding
    frame_text: Int[Tensor, "batch length"]

    def to(self, device: str | torch.device) -> TTSBatch:
        """This batch on ``device`` (batches are drawn on the CPU, then moved where the
        networks are; a tensor already there is not copied)."""
        return TTSBatch(
            tokens=self.tokens.to(device),
            padding=self.padding.to(device),
            given=self.given.to(device),
            phonemes=self.phonemes.to(device),
            phoneme_padding=self.phoneme_padding.to(device),
            frame_text=self.frame_text.to(device),
        )


def select_rows(batch: TTSBatch, start: int, stop: int) -> TTSBatch:
    """Examples ``start .. stop - 1`` of ``batch`` (one micro-batch of a global batch, see
    :class:`~resgen.training.trainer.BatchPart`); the padding is kept as it is."""
    return TTSBatch(
        tokens=batch.tokens[start:stop],
        padding=batch.padding[start:stop],
        given=batch.given[start:stop],
        phonemes=batch.phonemes[start:stop],
        phoneme_padding=batch.phoneme_padding[start:stop],
        frame_text=batch.frame_text[start:stop],
    )


def pad_batch(
    sequences: list[Int[Tensor, "_ depth"]],
    prompts: list[int],
    texts: list[Int[Tensor, " _"]],
    segments: list[list[tuple[int, int | Tensor]]],
    depth: int,
) -> TTSBatch:
    """Right-pad examples into a :class:`TTSBatch`.

    Args:
        sequences: ``[length_i, depth]`` tokens of each example (prompt then target; the target's
            tokens are placeholders when the batch is to be sampled).
        prompts: positions of each example's given prefix.
        texts: ``[phonemes_i]`` phoneme ids of each example (the prompt's, then the target's).
        segments: each example's text segments as
            :func:`~resgen.networks.tts_transformer.spread_text` lays them over its frames.
        depth: RVQ depth of the tokens.
    """
    batch, longest, words = len(sequences), max(len(s) for s in sequences), max(map(len, texts))
    tokens = torch.zeros(batch, longest, depth, dtype=torch.long)
    padding = torch.ones(batch, longest, dtype=torch.bool)
    given = torch.zeros(batch, longest, dtype=torch.bool)
    phonemes = torch.zeros(batch, words, dtype=torch.long)
    phoneme_padding = torch.ones(batch, words, dtype=torch.bool)
    frame_text = torch.stack([spread_text(parts, longest) for parts in segments])
    for row, (seq, prompt, text) in enumerate(zip(sequences, prompts, texts)):
        tokens[row, : len(seq)] = seq
        padding[row, : len(seq)] = False
        given[row, :prompt] = True
        phonemes[row, : len(text)] = text
        phoneme_padding[row, : len(text)] = False
    return TTSBatch(tokens, padding, given, phonemes, phoneme_padding, frame_text)


def pair_batch(pairs: list[tuple[Utterance, Utterance]]) -> TTSBatch:
    """A batch of ``(prompt, target)`` pairs as the samplers see them: the prompt's tokens given,
    then the target's true tokens, and both texts laid over their frames."""
    if not pairs:
        raise ValueError("pair_batch needs at least one (prompt, target) pair")
    return pad_batch(
        [torch.cat([p.tokens, t.tokens]) for p, t in pairs],
        [len(p.tokens) for p, _ in pairs],
        [torch.cat([p.text.ids, t.text.ids]) for p, t in pairs],
        [[p.segment, t.segment] for p, t in pairs],
        pairs[0][1].tokens.shape[1],
    )


def training_batch(
    utterances: list[Utterance],
    by_speaker: dict[str, list[int]],
    batch_size: int,
    pair_prob: float,
    prompt_fraction: tuple[float, float],
    max_length: int,
    generator: torch.Generator,
) -> TTSBatch:
    """Draw a training batch (the module docstring describes the two kinds of example); its
    examples are all of one kind, pairs with probability ``pair_prob``.

    Args:
        utterances: the training utterances.
        by_speaker: speaker -> indices into ``utterances``.
        batch_size: examples.
        pair_prob: probability that the batch is made of prompt + target pairs of one speaker.
        prompt_fraction: ``(low, high)``: a single utterance's given prefix is a fraction of its
            length drawn uniformly from this range.
        max_length: most positions of one example (longer pairs fall back to single examples).
        generator: source of randomness.
    """
    low, high = prompt_fraction
    # One kind per batch, not per example: a batch mixing pairs (twice as long) with single
    # utterances is padded to its pairs' length. Each example is still a pair with probability
    # ``pair_prob`` (what it saves on the demo corpus: docs/research/tts-experiments.md,
    # "Training time").
    pairs = float(torch.rand((), generator=generator)) < pair_prob
    sequences, prompts, texts, segments = [], [], [], []
    for index in torch.randint(len(utterances), (batch_size,), generator=generator).tolist():
        target = utterances[index]
        mates = by_speaker[target.record.speaker]
        fraction, pick = torch.rand(2, generator=generator).tolist()
        # another of the speaker's utterances, uniformly: the last stands in for the target
        mate = mates[int(pick * (len(mates) - 1))]
        other = utterances[mates[-1] if mate == index else mate]
        pair_length = len(other.tokens) + len(target.tokens)
        if pairs and other is not target and pair_length <= max_length:
            sequences.append(torch.cat([other.tokens, target.tokens]))
            prompts.append(len(other.tokens))
            texts.append(torch.cat([other.text.ids, target.text.ids]))
            segments.append([other.segment, target.segment])
        else:
            seq = target.tokens[:max_length]
            sequences.append(seq)
            prompts.append(int(round((low + (high - low) * fraction) * len(seq))))
            texts.append(target.text.ids)
            segments.append([target.text.segment(len(seq))])
    return pad_batch(sequences, prompts, texts, segments, utterances[0].tokens.shape[1])


def by_speaker(utterances: list[Utterance]) -> dict[str, list[int]]:
    """Speaker -> indices of that speaker's utterances in ``utterances`` (in order)."""
    out: dict[str, list[int]] = {}
    for i, u in enumerate(utterances):
        out.setdefault(u.record.speaker, []).append(i)
    return out


_HELD_OUT_BATCHES = 4
"""Batches of the held-out loss (the same batches at every validation)."""


def held_out_batches(
    held_out: list[Utterance],
    batch_size: int,
    pair_prob: float,
    prompt_fraction: tuple[float, float],
    max_length: int,
    seed: int,
) -> list[TTSBatch]:
    """Fixed batches of held-out utterances, drawn like the training batches (prompt pairs of
    one speaker, or a single utterance with a given prefix; the arguments as for
    :func:`training_batch`); batch ``i`` is drawn with the seed ``seed + 7 + i``, so the same
    ``seed`` gives the same batches at every validation. Empty without utterances."""
    if not held_out:
        return []
    speakers = by_speaker(held_out)
    return [
        training_batch(
            held_out,
            speakers,
            batch_size,
            pair_prob,
            prompt_fraction,
            max_length,
            torch.Generator().manual_seed(seed + 7 + i),
        )
        for i in range(_HELD_OUT_BATCHES)
    ]


def load_mels(
    codec: MelRVQVAE, records: list[ManifestRecord], root: Path
) -> list[Float[Tensor, "frames mels"]]:
    """Log-mels ``[frames, n_mels]`` of each record's audio (relative to ``root``)."""
    mels = []
    for record in records:
        audio, rate = load_audio(root / record.audio)
        mel, _ = codec.frontend(audio[None], sample_rate=rate)
        mels.append(mel[0])
    return mels


def tokenize(
    codec: MelRVQVAE,
    records: list[ManifestRecord],
    mels: list[Tensor],
    texts: dict[str, SpokenText],
    path: Path,
) -> list[Utterance]:
    """Stage 3: tokens of every utterance (cached at ``path``, keyed by utterance id).

    Args:
        codec: the trained codec (on any device; the tokens are cached from the CPU).
        records: every utterance of the corpus.
        mels: their log-mels ``[frames, n_mels]``.
        texts: utterance id -> its text; utterances without one are left out of the result.
        path: the token cache.
    """
    cached = load_file(str(path)) if path.is_file() else {}
    if set(cached) != {r.id for r in records}:
        if len(mels) != len(records):
            # checked before anything is written: a cache is never replaced by a partial one
            raise ValueError(
                f"the token cache {path} does not hold exactly these {len(records)} utterances "
                f"and {len(mels)} mels were given to encode them: pass every utterance's mels "
                "(or every utterance of the run the cache belongs to)"
            )
        cached = {}
        for record, mel in zip(tqdm(records, desc="tokens"), mels, strict=True):
            tokens, _ = codec.encode(mel[None])
            cached[record.id] = tokens[0].cpu().to(torch.int16).contiguous()
        save_tensors(cached, path)
    return [Utterance(r, cached[r.id].long(), texts[r.id]) for r in records if r.id in texts]

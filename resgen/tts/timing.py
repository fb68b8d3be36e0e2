"""The TTS recipe's learned alignment: train a :class:`~resgen.networks.aligner.PhonemeAligner`
on the training utterances, then time every utterance's phonemes with it.

This is the main TTS model's text timing (``TTSSynthConfig(text_alignment="learned")``): it comes
from the corpus' own audio and transcripts, with no outside aligner and no synthesiser timing.
Held-out utterances are aligned with the trained aligner too; the evaluation uses that only for
the prompts (whose audio and transcript a user gives), never for the targets, whose timing comes
from the duration model (:meth:`~resgen.networks.duration.PhonemeDurationModel.ends`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from attrs import frozen
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from resgen.eval.classifier import module_device
from resgen.networks.aligner import PhonemeAligner, even_durations
from resgen.networks.duration import PhonemeDurationModel, PhonemeTiming
from resgen.networks.duration_predictor import PhonemeDurationPredictor
from resgen.training.trainer import BatchPart, StageSpec, batch_generator, run_stage
from resgen.tts.front_ends import SpokenText, TextFrontEnd

__all__ = [
    "pad_pairs",
    "train_aligner",
    "align_all",
    "timed_text",
    "train_duration_predictor",
    "DurationFrontEnd",
]


def pad_pairs(
    texts: list[Int[Tensor, " _"]], mels: list[Float[Tensor, "_ mels"]]
) -> tuple[
    Int[Tensor, "batch phonemes"],
    Bool[Tensor, "batch phonemes"],
    Float[Tensor, "batch frames mels"],
    Bool[Tensor, "batch frames"],
]:
    """Right-pad texts and log-mels: ``(phonemes [b, p], phoneme_padding [b, p],
    mels [b, f, mels], frame_padding [b, f])``."""
    batch, words, frames = len(texts), max(map(len, texts)), max(map(len, mels))
    phonemes = torch.zeros(batch, words, dtype=torch.long)
    phoneme_padding = torch.ones(batch, words, dtype=torch.bool)
    out = torch.zeros(batch, frames, mels[0].shape[-1])
    frame_padding = torch.ones(batch, frames, dtype=torch.bool)
    for row, (text, mel) in enumerate(zip(texts, mels)):
        phonemes[row, : len(text)] = text
        phoneme_padding[row, : len(text)] = False
        out[row, : len(mel)] = mel
        frame_padding[row, : len(mel)] = False
    return phonemes, phoneme_padding, out, frame_padding


def _check(texts: list[Tensor], mels: list[Tensor]) -> None:
    if len(texts) != len(mels) or not texts:
        raise ValueError(f"need as many texts as mels, at least one: {len(texts)} vs {len(mels)}")
    short = [i for i, (t, m) in enumerate(zip(texts, mels)) if len(m) < len(t)]
    if short:
        raise ValueError(f"utterances {short[:5]} have fewer mel frames than phonemes")


def train_aligner(
    texts: list[Int[Tensor, " _"]],
    mels: list[Float[Tensor, "_ mels"]],
    vocabulary: int,
    folder: Path,
    spec: StageSpec,
    *,
    width: int = 128,
    layers: int = 3,
    flat_start: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[PhonemeAligner, list[tuple[int, float]]]:
    """Train the aligner on utterances (resumable, under ``folder``).

    Args:
        texts: ``[phonemes_i]`` phoneme ids of each training utterance.
        mels: ``[frames_i, mels]`` its log-mels.
        vocabulary: phoneme ids.
        folder: the stage's checkpoint folder.
        spec: steps, batch size, learning rate.
        width: the aligner's width.
        layers: its convolution blocks over the phonemes.
        flat_start: first steps trained on even segmentation instead of searched alignments.
        seed: seed of the initialisation and the batches.
        device: where the aligner trains (batches are drawn on the CPU and moved there); the
            returned aligner lives there.

    Returns:
        The aligner (eval mode) and its loss history.
    """
    _check(texts, mels)
    torch.manual_seed(seed)
    aligner = PhonemeAligner(vocabulary, mels[0].shape[-1], width=width, layers=layers)

    def loss_fn(step: int, part: BatchPart | None = None) -> tuple[Tensor, dict[str, float]]:
        gen = batch_generator(seed, step)
        drawn = torch.randint(len(texts), (spec.batch_size,), generator=gen)
        rows = (drawn if part is None else part.rows(drawn)).tolist()  # a micro-batch's rows
        phonemes, phoneme_padding, batch, frame_padding = (
            t.to(device) for t in pad_pairs([texts[i] for i in rows], [mels[i] for i in rows])
        )
        durations = None
        if step < flat_start:
            durations = even_durations(
                (~phoneme_padding).sum(-1), (~frame_padding).sum(-1), phonemes.shape[1]
            )
        return aligner.loss(phonemes, phoneme_padding, batch, frame_padding, durations), {}

    config = {"aligner": {"width": width, "layers": layers, "flat_start": flat_start}}
    result = run_stage(
        "aligner", folder, {"aligner": aligner}, spec, loss_fn, config, device=device
    )
    return aligner.eval(), result.history


@torch.no_grad()
def align_all(
    aligner: PhonemeAligner,
    texts: list[Int[Tensor, " _"]],
    mels: list[Float[Tensor, "_ mels"]],
    batch_size: int = 32,
) -> list[Int[Tensor, " _"]]:
    """Mel frames of each phoneme of each utterance (``[phonemes_i]``, summing to its frames, on
    the CPU; the alignment runs on the aligner's device)."""
    _check(texts, mels)
    device = module_device(aligner)
    out: list[Tensor] = []
    for start in tqdm(range(0, len(texts), batch_size), desc="aligning"):
        part = texts[start : start + batch_size]
        padded = pad_pairs(part, mels[start : start + batch_size])
        durations = aligner.align(*(t.to(device) for t in padded)).cpu()
        out += [d[: len(t)] for d, t in zip(durations, part)]
    return out


def timed_text(ids: Int[Tensor, " phonemes"], durations: Int[Tensor, " phonemes"]) -> SpokenText:
    """The :class:`~resgen.tts.front_ends.SpokenText` of phonemes lasting ``durations``
    frames each (a skipped phoneme, 0 frames, keeps a sliver so that the ends increase)."""
    if durations.shape != ids.shape or (durations < 0).any() or int(durations.sum()) < 1:
        raise ValueError("phoneme durations must be >= 0 frames, at least one frame in all")
    ends = (durations.double() + 1e-3).cumsum(0)
    return SpokenText(ids, (ends / ends[-1]).float())


def train_duration_predictor(
    texts: list[Int[Tensor, " _"]],
    frames: list[Int[Tensor, " _"]],
    duration: PhonemeDurationModel,
    vocabulary: int,
    folder: Path,
    spec: StageSpec,
    *,
    width: int = 128,
    layers: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[PhonemeDurationPredictor, list[tuple[int, float]]]:
    """Train the context-aware duration predictor on aligned utterances (resumable).

    Each utterance's durations are first rescaled so that they sum to what ``duration`` (the
    per-symbol table) says its text takes at the average speaking rate: the predictor learns how
    phonemes share an utterance's time, not how fast its speaker talks.

    Args:
        texts: ``[phonemes_i]`` symbol ids of each training utterance.
        frames: ``[phonemes_i]`` frames of each of its phonemes (the aligner's).
        duration: the fitted duration model (sets each utterance's total).
        vocabulary: symbol ids.
        folder: the stage's checkpoint folder.
        spec: steps, batch size, learning rate.
        width: the predictor's width.
        layers: its convolution blocks.
        seed: seed of the initialisation and the batches.
        device: where the predictor trains (batches are drawn on the CPU and moved there).

    Returns:
        The predictor (eval mode) and its loss history.
    """
    if len(texts) != len(frames) or not texts:
        raise ValueError(
            f"need as many texts as durations, at least one: {len(texts)}, {len(frames)}"
        )
    targets = []
    for ids, each in zip(texts, frames):
        if each.shape != ids.shape or int(each.sum()) < 1:
            raise ValueError("each text needs [phonemes_i] durations of at least one frame in all")
        targets.append(each.double() * (duration.cost_of(ids) / float(each.sum())))
    torch.manual_seed(seed)
    predictor = PhonemeDurationPredictor(vocabulary, width=width, layers=layers)

    def loss_fn(step: int, part: BatchPart | None = None) -> tuple[Tensor, dict[str, float]]:
        rows = torch.randint(len(texts), (spec.batch_size,), generator=batch_generator(seed, step))
        if part is not None:  # one micro-batch of the global batch (several processes)
            rows = part.rows(rows)
        longest = max(len(texts[i]) for i in rows.tolist())
        ids = torch.zeros(len(rows), longest, dtype=torch.long)
        target = torch.zeros(len(rows), longest)
        padding = torch.ones(len(rows), longest, dtype=torch.bool)
        for row, i in enumerate(rows.tolist()):
            n = len(texts[i])
            ids[row, :n], target[row, :n], padding[row, :n] = texts[i], targets[i].float(), False
        return predictor.loss(ids.to(device), padding.to(device), target.to(device)), {}

    config = {"duration_predictor": {"width": width, "layers": layers}}
    result = run_stage(
        "timing", folder, {"predictor": predictor}, spec, loss_fn, config, device=device
    )
    return predictor.eval(), result.history


@frozen
class DurationFrontEnd:
    """A text front-end's symbols, timed by a duration model (the learned-alignment model).

    Attributes:
        symbols: gives the symbol ids (its own timing, if any, is dropped); the demo uses the
            synthesisers' phones (:class:`~resgen.tts.front_ends.SynthesizerFrontEnd`).
        duration: what shares out the time among the phonemes (only the relative timing,
            ``ends``, is used): the context-aware
            :class:`~resgen.networks.duration_predictor.PhonemeDurationPredictor`, or the
            per-symbol :class:`~resgen.networks.duration.PhonemeDurationModel`.
    """

    symbols: TextFrontEnd
    duration: PhonemeTiming

    def __call__(self, text: str) -> SpokenText:
        """``text``'s symbol ids and their predicted end fractions.

        Raises:
            ValueError: as the ``symbols`` front-end (empty text, unreadable characters).
        """
        ids = self.symbols(text).ids
        return SpokenText(ids, self.duration.ends(ids))

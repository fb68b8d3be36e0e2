"""The ``tts-synth`` recipe's training stages: the mel codec, ResGen's TTS network and the
autoregressive baseline.

Both generators train on the very same batches (:func:`~resgen.recipes.tts_data.training_batch`
drawn from the same seeds), for the same steps, and are validated on the same held-out batches.
ResGen's known depths come from its own full-mask guess (:func:`full_mask_guess`) in a
``scheduled_sampling`` share of its batches, so that it learns to correct what its sampler will
feed it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from attrs import fields
from jaxtyping import Float, Int
from torch import Tensor

from resgen.codecs.mel_rvqvae import MelRVQVAE
from resgen.diffusion.ar_loss import ARLoss, ar_loss
from resgen.diffusion.loss import ResGenObjective
from resgen.diffusion.masking import sample_training_counts, split_embeddings, split_on_guess
from resgen.diffusion.mixture import mixture_mean
from resgen.diffusion.schedules import CosineSchedule
from resgen.networks.tts_rq_transformer import TextRQTransformer, TextRQTransformerConfig
from resgen.networks.tts_transformer import (
    TEXT_LABEL,
    TextToSpeechTransformer,
    TTSTransformerConfig,
)
from resgen.recipes.trainer import StageResult, batch_generator, run_stage
from resgen.recipes.tts_config import TTSSynthConfig
from resgen.recipes.tts_data import (
    TTSBatch,
    Utterance,
    by_speaker,
    held_out_batches,
    training_batch,
)
from resgen.typing import Hidden, Latents, MaskCounts, Tokens

__all__ = ["train_codec", "prompted_resgen_loss", "full_mask_guess", "train_resgen", "train_ar"]


def _crop_batch(
    mels: list[Tensor], crop: int, batch_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random crops of at most ``crop`` frames, right-padded: ``([b, crop, mels], [b, crop])``."""
    out = torch.zeros(batch_size, crop, mels[0].shape[-1])
    padding = torch.ones(batch_size, crop, dtype=torch.bool)
    for row, index in enumerate(torch.randint(len(mels), (batch_size,), generator=generator)):
        mel = mels[int(index)]
        start = int(torch.randint(max(1, len(mel) - crop + 1), (1,), generator=generator))
        piece = mel[start : start + crop]
        out[row, : len(piece)] = piece
        padding[row, : len(piece)] = False
    return out, padding


def train_codec(
    config: TTSSynthConfig, mels: list[Tensor], folder: Path
) -> tuple[MelRVQVAE, list[tuple[int, float]]]:
    """Stage 2: train the mel codec on random crops of the training utterances."""
    torch.manual_seed(config.seed)
    codec = MelRVQVAE(config.codec)
    sample = mels[:: max(1, len(mels) // 200)]
    longest = max(len(m) for m in sample)
    stacked = torch.stack([torch.nn.functional.pad(m, (0, 0, 0, longest - len(m))) for m in sample])
    lengths = torch.tensor([len(m) for m in sample])
    codec.fit_normalization(stacked, torch.arange(longest)[None] >= lengths[:, None])
    spec = config.codec_stage

    def loss_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        gen = batch_generator(config.seed, step)
        batch, padding = _crop_batch(mels, config.codec_crop_frames, spec.batch_size, gen)
        loss, out = codec.loss(batch, padding)
        return loss, {"ppl": float(out.perplexity.mean())}

    result = run_stage(
        "codec", folder, {"codec": codec}, spec, loss_fn, {"codec": config.codec.to_dict()}
    )
    return codec.eval(), result.history


def prompted_resgen_loss(
    model: TextToSpeechTransformer,
    codec: MelRVQVAE,
    batch: TTSBatch,
    generator: torch.Generator | None = None,
    objective: ResGenObjective | None = None,
    guess: Tokens | None = None,
) -> Float[Tensor, ""]:
    """ResGen's loss on a batch with given prompt positions (nats per code dimension).

    ``objective`` is the form of the mixture loss (default: the exact NLL).
    Mask counts are drawn by the schedule over the non-prompt real positions only
    (:func:`~resgen.diffusion.masking.sample_training_counts` with the prompt counted as
    padding), so the prompt is always fully visible and never scored. With ``guess``
    (``[batch, length, depth]`` tokens, e.g. :func:`full_mask_guess`) the known depths are read
    from it instead of the data, and the target is what reaches the data from there
    (:func:`~resgen.diffusion.masking.split_on_guess`): scheduled sampling.
    """
    tokens = batch.tokens
    b, length, depth = tokens.shape
    counts = sample_training_counts(
        CosineSchedule(), b, length, depth, padding=batch.padding | batch.given, generator=generator
    )
    with torch.no_grad():
        embeddings = codec.quantizer.embed(tokens)
        if guess is None:
            visible, target = split_embeddings(embeddings, counts)
        else:
            visible, target = split_on_guess(embeddings, codec.quantizer.embed(guess), counts)
    hidden = _hidden(model, batch, visible, counts)
    objective = objective or ResGenObjective()
    return objective(model, hidden, tokens, counts, target, (counts > 0) & ~batch.padding)


def _hidden(
    model: TextToSpeechTransformer, batch: TTSBatch, visible: Latents, counts: MaskCounts
) -> Hidden:
    """The network's hidden states ``[batch, length, width]`` for a batch with its text, from
    the known depths' sum ``visible`` ``[batch, length, dim]`` and the mask ``counts``."""
    return model.text_hidden(
        visible,
        counts,
        torch.full((len(batch.tokens),), TEXT_LABEL, dtype=torch.long),
        batch.padding,
        batch.phonemes,
        batch.phoneme_padding,
        batch.frame_text if model.config.frame_text else None,
    )


@torch.no_grad()
def full_mask_guess(
    model: TextToSpeechTransformer, codec: MelRVQVAE, batch: TTSBatch
) -> Int[Tensor, "batch length depth"]:
    """The network's own tokens for a batch with every non-prompt depth masked: the mixture
    mean quantised by the codec, the prompt's tokens kept (what a deterministic first sampling
    step chooses). Returns ``[batch, length, depth]`` tokens."""
    tokens = batch.tokens
    counts = torch.where(batch.given | batch.padding, 0, tokens.shape[2])
    visible, _ = split_embeddings(codec.quantizer.embed(tokens), counts)
    mean = mixture_mean(model.mixture(_hidden(model, batch, visible, counts)))
    guess = codec.quantizer.quantize_from(mean, 0).tokens
    return torch.where(batch.given[..., None], tokens, guess)


def _mean_loss(
    batches: list[TTSBatch], loss: Callable[[TTSBatch, torch.Generator], Tensor]
) -> Callable[[], float] | None:
    """The held-out loss: ``loss`` averaged over ``batches``, each with its own fixed seed (for
    the masking), so successive validations differ only by the network."""
    if not batches:
        return None
    return lambda: float(
        np.mean([float(loss(b, torch.Generator().manual_seed(i))) for i, b in enumerate(batches)])
    )


def train_resgen(
    config: TTSSynthConfig,
    codec: MelRVQVAE,
    train: list[Utterance],
    vocabulary: int,
    max_length: int,
    max_phonemes: int,
    folder: Path,
    held_out: list[Utterance] | None = None,
) -> tuple[TextToSpeechTransformer, StageResult]:
    """Stage 4: train ResGen's TTS network; returns it and its stage result (loss history,
    seconds, and the loss on ``held_out`` utterances, never trained on, every checkpoint)."""
    torch.manual_seed(config.seed + 2)
    net_config = TTSTransformerConfig(
        length=max_length,
        depth=codec.depth,
        dim=codec.quantizer.dim,
        vocabulary=vocabulary,
        max_phonemes=max_phonemes,
        text_dropout=config.text_dropout,
        frame_text=config.frame_text,
        **{
            **config.network,
            "components": config.objective.head_components(
                config.network.get("components", fields(TTSTransformerConfig).components.default),
                codec.quantizer.codes,
            ),
        },
    )
    model = TextToSpeechTransformer(net_config)
    spec, speakers = config.generator_stage, by_speaker(train)

    def batch_loss(batch: TTSBatch, gen: torch.Generator, guess: Tensor | None = None) -> Tensor:
        return prompted_resgen_loss(model, codec, batch, gen, config.objective, guess)

    def loss_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        gen = batch_generator(config.seed + 2, step)
        batch = training_batch(train, speakers, spec.batch_size, config, max_length, gen)
        own = config.scheduled_sampling > 0 and (
            float(torch.rand((), generator=gen)) < config.scheduled_sampling
        )
        return batch_loss(batch, gen, full_mask_guess(model, codec, batch) if own else None), {}

    result = run_stage(
        "resgen",
        folder,
        {"resgen": model},
        spec,
        loss_fn,
        {"network": net_config.to_dict()},
        validate=_mean_loss(held_out_batches(config, held_out or [], max_length), batch_loss),
    )
    return model.eval(), result


def train_ar(
    config: TTSSynthConfig,
    codec: MelRVQVAE,
    train: list[Utterance],
    vocabulary: int,
    max_length: int,
    max_phonemes: int,
    folder: Path,
    held_out: list[Utterance] | None = None,
) -> tuple[TextRQTransformer, StageResult]:
    """Stage 5: train the autoregressive baseline on the same batches as ResGen (and validate
    it on the same held-out batches)."""
    torch.manual_seed(config.seed + 3)
    net_config = TextRQTransformerConfig(
        length=max_length,
        depth=codec.depth,
        codes=codec.codes,
        vocabulary=vocabulary,
        max_phonemes=max_phonemes,
        text_dropout=config.text_dropout,
        frame_text=config.frame_text,
        **config.ar_network,
    )
    model = TextRQTransformer(net_config)
    spec, speakers = config.generator_stage, by_speaker(train)

    def batch_loss(batch: TTSBatch) -> ARLoss:
        labels = torch.full((len(batch.tokens),), TEXT_LABEL, dtype=torch.long)
        bound = model.bind(
            batch.phonemes,
            batch.phoneme_padding,
            batch.frame_text if config.frame_text else None,
        )
        return ar_loss(bound, batch.tokens, labels, padding=batch.padding)

    def loss_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        gen = batch_generator(config.seed + 2, step)  # the very batches ResGen sees
        batch = training_batch(train, speakers, spec.batch_size, config, max_length, gen)
        out = batch_loss(batch)
        return out.loss, {"acc": out.accuracy}

    result = run_stage(
        "ar",
        folder,
        {"ar": model},
        spec,
        loss_fn,
        {"network": net_config.to_dict()},
        validate=_mean_loss(
            held_out_batches(config, held_out or [], max_length), lambda b, _: batch_loss(b).loss
        ),
    )
    return model.eval(), result

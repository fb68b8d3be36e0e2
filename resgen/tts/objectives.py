"""The ``tts-synth`` recipe's training stages: the mel codec, ResGen's TTS network and the
autoregressive baseline.

Both generators train on the very same batches (:func:`~resgen.tts.batches.training_batch`
drawn from the same seeds), for the same steps, and are validated on the same held-out batches.
ResGen's known depths come from its own full-mask guess (:func:`full_mask_guess`) in a
``scheduled_sampling`` share of its batches, so that it learns to correct what its sampler will
feed it.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from resgen.codecs.mel_rvqvae import MelRVQVAE
from resgen.diffusion.loss import ResGenObjective
from resgen.diffusion.masking import sample_training_counts, split_embeddings, split_on_guess
from resgen.diffusion.mixture import mixture_mean
from resgen.diffusion.schedules import CosineSchedule
from resgen.networks.tts_transformer import (
    TEXT_LABEL,
    TextToSpeechTransformer,
)
from resgen.tts.batches import TTSBatch
from resgen.typing import Hidden, Latents, MaskCounts, Tokens

__all__ = ["prompted_resgen_loss", "full_mask_guess"]


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
        CosineSchedule(),
        b,
        length,
        depth,
        padding=batch.padding | batch.given,
        generator=generator,
        device=tokens.device,
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
        torch.full((len(batch.tokens),), TEXT_LABEL, dtype=torch.long, device=batch.tokens.device),
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

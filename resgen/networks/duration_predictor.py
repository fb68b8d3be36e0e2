"""Phoneme timing in context: how long each phoneme lasts given its neighbours.

:class:`~resgen.networks.duration.PhonemeDurationModel` gives each symbol one cost wherever it
stands. Real speech stretches and squeezes phonemes by context: a vowel before a voiced
consonant, the last syllable before a pause, a stop in a cluster. :class:`PhonemeDurationPredictor`
is FastSpeech's duration predictor: phoneme embeddings, residual 1-D convolutions over the
phonemes (:class:`~resgen.networks.frame_conv.FrameConvStack`), and one log-duration per
phoneme, trained by squared error on ``log(1 + frames)`` from an aligner's durations.

It says *how the time of an utterance is shared* among its phonemes
(:meth:`PhonemeDurationPredictor.ends`); how much time there is in all stays the duration
model's business (the prompt's speaking rate).
Both kinds of model satisfy :class:`~resgen.networks.duration.PhonemeTiming`, the plug point a
text front-end takes.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from resgen.networks.duration import ends_of
from resgen.networks.frame_conv import FrameConvStack

__all__ = ["PhonemeDurationPredictor"]


class PhonemeDurationPredictor(nn.Module):
    """Log-duration of every phoneme from its context.

    Args:
        vocabulary: number of symbol ids (id 0 is padding in a batch, as everywhere here).
        width: embedding and convolution width.
        layers: residual convolution blocks over the phonemes.
        kernel: odd kernel size of each convolution, in phonemes.
        dropout: dropout on the features before the output (training only).
    """

    def __init__(
        self,
        vocabulary: int,
        width: int = 128,
        layers: int = 3,
        kernel: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if vocabulary < 1 or width < 1:
            raise ValueError(f"vocabulary and width must be >= 1, got {vocabulary}, {width}")
        self.embed = nn.Embedding(vocabulary, width)
        self.context = FrameConvStack(width, layers, kernel)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(width, 1)

    def forward(
        self,
        ids: Int[Tensor, "batch phonemes"],
        padding: Bool[Tensor, "batch phonemes"] | None = None,
    ) -> Float[Tensor, "batch phonemes"]:
        """Predicted ``log(1 + frames)`` of each phoneme ``[batch, phonemes]`` (padding
        ``[batch, phonemes]``, ``True`` where there is no phoneme, never changes the others)."""
        h = self.context(self.embed(ids), padding)
        return self.out(self.dropout(self.norm(h)))[..., 0]

    def loss(
        self,
        ids: Int[Tensor, "batch phonemes"],
        padding: Bool[Tensor, "batch phonemes"],
        frames: Float[Tensor, "batch phonemes"],
    ) -> Float[Tensor, ""]:
        """Mean squared error of the predicted ``log(1 + frames)`` over the real phonemes.

        Args:
            ids: ``[batch, phonemes]`` symbol ids.
            padding: ``[batch, phonemes]``, ``True`` at padding.
            frames: ``[batch, phonemes]`` each phoneme's duration (>= 0, e.g. an aligner's
                frames, rescaled to the average speaking rate).
        """
        if (frames[~padding] < 0).any():
            raise ValueError("phoneme durations must be >= 0")
        error = (self(ids, padding) - frames.log1p()) ** 2
        return error[~padding].mean()

    @torch.no_grad()
    def durations(self, ids: Int[Tensor, " phonemes"]) -> Float[Tensor, " phonemes"]:
        """Predicted frames ``[phonemes]`` of each phoneme of one text (eval mode, >= 0), on
        ``ids``' device (the network runs on its own)."""
        if ids.ndim != 1 or len(ids) < 1:
            raise ValueError(f"durations needs a 1-D text of >= 1 id, got {tuple(ids.shape)}")
        was_training = self.training
        self.eval()
        weight = self.embed.weight
        out = self(ids[None].long().to(weight.device))[0].expm1().clamp_min(0.0)
        self.train(was_training)
        return out.to(ids.device)

    def ends(self, ids: Int[Tensor, " phonemes"]) -> Float[Tensor, " phonemes"]:
        """Where each symbol of ``ids`` ends, as a fraction of the whole (increasing to 1)."""
        return ends_of(self.durations(ids))

"""A phoneme encoder whose output is the text prefix of text-conditioned generators."""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor, nn

from resgen.networks.transformer import Transformer
from resgen.typing import Hidden, Padding

__all__ = ["PhonemeEncoder"]


class PhonemeEncoder(nn.Module):
    """Phoneme ids ``[batch, phonemes]`` -> contextual embeddings ``[batch, phonemes, width]``.

    A token embedding, a learned position table and a small bidirectional transformer (its adaLN
    is driven by one learned vector, as there is no other condition). Row ``null_id`` stands for
    "no text", used when the text condition is dropped for classifier-free guidance.

    Args:
        vocabulary: number of phoneme ids (the padding id 0 included).
        width: embedding width (the generator's width).
        layers: transformer blocks.
        heads: attention heads.
        max_phonemes: longest phoneme sequence.
        dropout: residual dropout of the transformer's blocks (training only).
    """

    def __init__(
        self,
        vocabulary: int,
        width: int,
        layers: int,
        heads: int,
        max_phonemes: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.vocabulary, self.max_phonemes = vocabulary, max_phonemes
        self.tokens = nn.Embedding(vocabulary + 1, width)  # + the null-text row
        nn.init.normal_(self.tokens.weight, std=0.02)  # same scale as the position table
        self.position = nn.Parameter(torch.randn(1, max_phonemes, width) * 0.02)
        self.condition = nn.Parameter(torch.zeros(1, width))
        self.transformer = (
            Transformer(width, layers, heads, dropout=dropout) if layers > 0 else None
        )

    @property
    def null_id(self) -> int:
        """The id of the "no text" symbol."""
        return self.vocabulary

    def forward(self, phonemes: Int[Tensor, "batch phonemes"], padding: Padding) -> Hidden:
        """Encode ``phonemes`` (``padding`` ``[batch, phonemes]`` is ``True`` at padding)."""
        length = phonemes.shape[1]
        if length > self.max_phonemes:
            raise ValueError(
                f"{length} phonemes exceed the encoder's maximum of {self.max_phonemes}"
            )
        if phonemes.numel() and (phonemes.min() < 0 or phonemes.max() > self.vocabulary):
            raise ValueError(f"phoneme ids must lie in 0..{self.vocabulary}")
        x = self.tokens(phonemes) + self.position[:, :length]
        if self.transformer is not None:
            x = self.transformer(x, self.condition.expand(x.shape[0], -1), padding)
        return x

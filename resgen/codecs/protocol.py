"""The ``Codec`` plug point: anything that turns data into RVQ tokens and back."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from resgen.quantizers.residual_vq import ResidualVQ
from resgen.typing import Codebooks, Padding, Tokens

__all__ = ["Codec", "SequenceCodec", "QuantizerShape"]


@runtime_checkable
class Codec(Protocol):
    """A modality codec: ``encode(data) -> tokens [batch, length, depth]`` and ``decode`` back.

    Generators only touch a codec through this interface and its quantizer's codebooks, so a
    user's own codec drops in without subclassing.
    """

    @property
    def depth(self) -> int:
        """RVQ depth D of the tokens."""
        ...

    @property
    def length(self) -> int:
        """Token positions L per item (for fixed-size data)."""
        ...

    @property
    def quantizer(self) -> ResidualVQ:
        """The residual quantizer whose codebooks define the token embeddings."""
        ...

    def encode(self, data: Tensor) -> Tokens:
        """Tokens ``[batch, length, depth]`` of a batch of data."""
        ...

    def decode(self, tokens: Tokens) -> Tensor:
        """Data reconstructed from tokens ``[batch, length, depth]``."""
        ...


@runtime_checkable
class SequenceCodec(Protocol):
    """A codec for variable-length data (speech): everything travels with a padding mask.

    ``encode(data, padding) -> (tokens [batch, length, depth], token_padding [batch, length])`` and
    ``decode(tokens, token_padding) -> (data, data_padding)``; padded positions never change the
    output at real positions. :class:`~resgen.codecs.mel_rvqvae.MelRVQVAE` is one.
    """

    @property
    def depth(self) -> int:
        """RVQ depth D of the tokens."""
        ...

    @property
    def frame_rate(self) -> float:
        """Token positions per second of data."""
        ...

    @property
    def quantizer(self) -> ResidualVQ:
        """The residual quantizer whose codebooks define the token embeddings."""
        ...

    def encode(self, data: Tensor, padding: Tensor | None = None) -> tuple[Tokens, Padding]:
        """Tokens and their padding mask for a padded batch of data."""
        ...

    def decode(self, tokens: Tokens, padding: Padding | None = None) -> tuple[Tensor, Tensor]:
        """Data and its padding mask reconstructed from tokens."""
        ...


class QuantizerShape:
    """The token shape a codec reads from its residual quantizer, written once for the bundled
    codecs (:class:`~resgen.codecs.ImageRVQVAE`, :class:`~resgen.codecs.MelRVQVAE`): a subclass
    provides :attr:`quantizer` and gets ``depth``, ``codes`` and ``codebooks``."""

    quantizer: ResidualVQ

    @property
    def depth(self) -> int:
        """RVQ depth D of the tokens."""
        return self.quantizer.depth

    @property
    def codes(self) -> int:
        """Codebook size K per depth."""
        return self.quantizer.codes

    @property
    def codebooks(self) -> Codebooks:
        """The quantizer's codebooks ``[depth, codes, dim]`` (a view; do not modify)."""
        return self.quantizer.get_codebooks()

"""The ``Codec`` plug point: anything that turns data into RVQ tokens and back."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from resgen.quantizers.residual_vq import ResidualVQ
from resgen.typing import Tokens

__all__ = ["Codec"]


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

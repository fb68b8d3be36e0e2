"""Residual vector quantizers and their nearest-code ops."""

from resgen.quantizers.ops import NearestCode, nearest_code
from resgen.quantizers.residual_vq import (
    QuantizerOutput,
    ResidualQuantization,
    ResidualVQ,
    ResidualVQConfig,
)

__all__ = [
    "NearestCode",
    "nearest_code",
    "QuantizerOutput",
    "ResidualQuantization",
    "ResidualVQ",
    "ResidualVQConfig",
]

"""Learned modules: transformer blocks, conditioning, heads, and the ResGen network."""

from resgen.networks.conditioning import ClassEmbedding
from resgen.networks.heads import Head, MixtureOfGaussiansHead
from resgen.networks.masked_transformer import MaskedRVQTransformer, MaskedTransformerConfig
from resgen.networks.transformer import AdaLNBlock, Transformer

__all__ = [
    "AdaLNBlock",
    "ClassEmbedding",
    "Head",
    "MaskedRVQTransformer",
    "MaskedTransformerConfig",
    "MixtureOfGaussiansHead",
    "Transformer",
]

"""Learned modules: transformer blocks, conditioning, heads, and the generators.

:class:`MaskedRVQTransformer` is ResGen's network; :class:`MaskedTokenTransformer` (token-level
masked prediction) and :class:`RQTransformer` (autoregressive) are the paper's baselines on the
same tokens; :class:`PhonemeEncoder` turns text into a conditioning prefix and
:class:`PhonemeDurationModel` says how long it takes to speak, :class:`PhonemeDurationPredictor`
how each phoneme shares that time in context; :class:`PhonemeAligner` learns where each phoneme
lies in recorded speech.
"""

from resgen.networks.aligner import PhonemeAligner
from resgen.networks.conditioning import ClassEmbedding
from resgen.networks.duration import PhonemeDurationModel, PhonemeTiming
from resgen.networks.duration_predictor import PhonemeDurationPredictor
from resgen.networks.frame_conv import FrameConvStack
from resgen.networks.heads import Head, MixtureOfGaussiansHead
from resgen.networks.masked_transformer import (
    MaskedBackbone,
    MaskedRVQTransformer,
    MaskedTransformerConfig,
)
from resgen.networks.rq_transformer import RQTransformer, RQTransformerConfig
from resgen.networks.text_encoder import PhonemeEncoder
from resgen.networks.token_head import (
    MaskedTokenTransformer,
    MaskedTokenTransformerConfig,
    TokenHead,
    TokenLogits,
)
from resgen.networks.transformer import AdaLNBlock, Transformer
from resgen.networks.tts_rq_transformer import TextRQTransformer, TextRQTransformerConfig
from resgen.networks.tts_transformer import TextToSpeechTransformer, TTSTransformerConfig

__all__ = [
    "AdaLNBlock",
    "ClassEmbedding",
    "FrameConvStack",
    "Head",
    "MaskedBackbone",
    "MaskedRVQTransformer",
    "MaskedTokenTransformer",
    "MaskedTokenTransformerConfig",
    "MaskedTransformerConfig",
    "MixtureOfGaussiansHead",
    "PhonemeAligner",
    "PhonemeDurationModel",
    "PhonemeDurationPredictor",
    "PhonemeTiming",
    "PhonemeEncoder",
    "RQTransformer",
    "RQTransformerConfig",
    "TokenHead",
    "TextRQTransformer",
    "TextRQTransformerConfig",
    "TextToSpeechTransformer",
    "TokenLogits",
    "Transformer",
    "TTSTransformerConfig",
]

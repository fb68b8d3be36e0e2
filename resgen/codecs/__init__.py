"""Modality codecs: data <-> RVQ tokens."""

from resgen.codecs.image_rvqvae import ImageCodecConfig, ImageCodecOutput, ImageRVQVAE
from resgen.codecs.mel import LogMelSpectrogram, MelConfig
from resgen.codecs.mel_rvqvae import MelCodecConfig, MelCodecOutput, MelRVQVAE
from resgen.codecs.protocol import Codec, SequenceCodec
from resgen.codecs.vocoder import GriffinLimVocoder, Vocoder

__all__ = [
    "Codec",
    "ImageCodecConfig",
    "ImageCodecOutput",
    "ImageRVQVAE",
    "GriffinLimVocoder",
    "LogMelSpectrogram",
    "MelCodecConfig",
    "MelCodecOutput",
    "MelConfig",
    "MelRVQVAE",
    "SequenceCodec",
    "Vocoder",
]

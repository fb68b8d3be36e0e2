"""Modality codecs: data <-> RVQ tokens."""

from resgen.codecs.image_rvqvae import ImageCodecConfig, ImageCodecOutput, ImageRVQVAE
from resgen.codecs.protocol import Codec

__all__ = ["Codec", "ImageCodecConfig", "ImageCodecOutput", "ImageRVQVAE"]

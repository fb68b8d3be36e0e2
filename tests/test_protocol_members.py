"""Every plug-point protocol is met by the bundled classes, as Python >= 3.12 checks it.

From 3.12 on, ``isinstance(obj, SomeProtocol)`` looks members up with ``inspect.getattr_static``,
which does not see an ``nn.Module``'s submodules (they live in ``_modules``). The beartype hook of
the test suite runs such checks at every annotated call, so a protocol member that a class only
provides as a submodule breaks on 3.12 while passing on 3.11. This test reproduces the 3.12 lookup
on any version.
"""

from __future__ import annotations

import inspect
import typing

import pytest

from resgen.codecs import ImageCodecConfig, ImageRVQVAE
from resgen.codecs.mel_rvqvae import MelCodecConfig, MelRVQVAE
from resgen.codecs.protocol import Codec, SequenceCodec
from resgen.diffusion.ar_loss import AutoregressiveModel
from resgen.diffusion.ar_sampler import ARSamplingModel, DepthQuantizer
from resgen.diffusion.loss import EmbeddingModel, TokenEmbedder
from resgen.diffusion.sampler import SamplingModel, SamplingQuantizer
from resgen.diffusion.token_loss import TokenLogitsModel
from resgen.diffusion.token_sampler import TokenSamplingModel
from resgen.networks import (
    MaskedRVQTransformer,
    MaskedTokenTransformer,
    MaskedTokenTransformerConfig,
    MaskedTransformerConfig,
    RQTransformer,
    RQTransformerConfig,
)
from resgen.quantizers import ResidualVQ, ResidualVQConfig

_SHAPE = {"length": 4, "depth": 2, "num_classes": 2, "width": 16, "layers": 1, "heads": 2}


def _objects() -> dict[str, object]:
    return {
        "quantizer": ResidualVQ(ResidualVQConfig(dim=4, codes=8, depth=2)),
        "image_codec": ImageRVQVAE(ImageCodecConfig(hidden=8, latent_dim=4, codes=8, depth=2)),
        "mel_codec": MelRVQVAE(MelCodecConfig(hidden=8, latent_dim=4, codes=8, depth=2)),
        "resgen": MaskedRVQTransformer(MaskedTransformerConfig(dim=4, **_SHAPE)),
        "token": MaskedTokenTransformer(MaskedTokenTransformerConfig(dim=4, codes=8, **_SHAPE)),
        "ar": RQTransformer(RQTransformerConfig(codes=8, depth_layers=1, **_SHAPE)),
    }


PAIRS = [
    (Codec, "image_codec"),
    (SequenceCodec, "mel_codec"),
    (SamplingQuantizer, "quantizer"),
    (DepthQuantizer, "quantizer"),
    (TokenEmbedder, "quantizer"),
    (SamplingModel, "resgen"),
    (EmbeddingModel, "resgen"),
    (TokenSamplingModel, "token"),
    (TokenLogitsModel, "token"),
    (ARSamplingModel, "ar"),
    (AutoregressiveModel, "ar"),
]


@pytest.mark.parametrize(("protocol", "name"), PAIRS, ids=[p.__name__ for p, _ in PAIRS])
def test_protocol_members_are_found_statically(protocol: type, name: str) -> None:
    obj = _objects()[name]
    missing = []
    for member in sorted(typing._get_protocol_attrs(protocol)):
        try:
            inspect.getattr_static(obj, member)
        except AttributeError:
            missing.append(member)
    assert not missing, f"{type(obj).__name__} lacks {missing} of {protocol.__name__} statically"
    assert isinstance(obj, protocol)

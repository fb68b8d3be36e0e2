"""The image RVQ-VAE: shapes, the Codec protocol, and clear errors."""

from __future__ import annotations

import pytest
import torch

from resgen.codecs import Codec, ImageCodecConfig, ImageRVQVAE


@pytest.fixture(scope="module")
def codec() -> ImageRVQVAE:
    torch.manual_seed(0)
    model = ImageRVQVAE(ImageCodecConfig(hidden=16, latent_dim=4, codes=16, depth=3))
    model.train()
    model(torch.rand(8, 1, 28, 28) * 2 - 1)  # k-means initialisation of the codebooks
    return model.eval()


def test_round_trip_shapes(codec: ImageRVQVAE) -> None:
    assert isinstance(codec, Codec)
    images = torch.rand(5, 1, 28, 28) * 2 - 1
    tokens = codec.encode(images)
    assert tokens.shape == (5, codec.length, codec.depth) == (5, 49, 3)
    assert tokens.dtype == torch.long and int(tokens.max()) < 16
    decoded = codec.decode(tokens)
    assert decoded.shape == images.shape
    assert float(decoded.abs().max()) <= 1.0
    # Decoding the tokens equals decoding the quantized latents of the forward pass.
    out = codec(images)
    assert torch.equal(out.tokens, tokens)
    assert torch.allclose(out.reconstruction.clamp(-1, 1), decoded, atol=1e-5)


def test_loss_backpropagates_to_encoder(codec: ImageRVQVAE) -> None:
    codec.train()
    loss, _ = codec.loss(torch.rand(4, 1, 28, 28) * 2 - 1)
    loss.backward()
    assert codec.encoder[0].weight.grad is not None
    assert float(codec.encoder[0].weight.grad.abs().sum()) > 0
    codec.eval()


def test_bad_inputs_are_named(codec: ImageRVQVAE) -> None:
    with pytest.raises(ValueError, match=r"expected images of shape \[batch, 1, 28, 28\]"):
        codec.encode(torch.zeros(2, 3, 28, 28))
    # Under the test suite's shape checker the annotation refuses it first; both errors name it.
    with pytest.raises(TypeError, match="floating point|parameter 'images'"):
        codec.encode(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match="token out of range"):
        codec.decode(torch.full((1, 49, 3), 16))
    with pytest.raises(ValueError, match="depth 3"):
        codec.decode(torch.zeros(1, 49, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="integer|parameter 'tokens'"):
        codec.decode(torch.zeros(1, 49, 3))
    with pytest.raises(ValueError, match="49 token positions"):
        codec.decode(torch.zeros(1, 50, 3, dtype=torch.long))


def test_config_validates() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        ImageCodecConfig(image_size=30)


def test_partial_decode_uses_the_first_depths(codec: ImageRVQVAE) -> None:
    images = torch.rand(2, 1, 28, 28) * 2 - 1
    tokens = codec.encode(images)
    shallow = codec.decode(tokens[..., :1], partial=True)
    assert shallow.shape == images.shape
    with pytest.raises(ValueError):
        codec.decode(tokens[..., :1])

"""A small convolutional RVQ-VAE for grayscale images (28x28 -> a 7x7 grid of RVQ tokens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from attrs import asdict, field, frozen, validators
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

from resgen.codecs.protocol import QuantizerShape
from resgen.quantizers.residual_vq import ResidualVQ, ResidualVQConfig
from resgen.typing import Images, Tokens

__all__ = ["ImageCodecConfig", "ImageCodecOutput", "ImageRVQVAE"]

_pos = validators.gt(0)


@frozen
class ImageCodecConfig:
    """Configuration of :class:`ImageRVQVAE`.

    Attributes:
        image_size: height = width of the images (divisible by 4).
        channels: image channels.
        hidden: convolution channels.
        latent_dim: code dimension C.
        codes: codebook size K per depth.
        depth: RVQ depth D.
        commitment_weight: weight of the quantizer's commitment loss.
    """

    image_size: int = field(default=28, validator=_pos)
    channels: int = field(default=1, validator=_pos)
    hidden: int = field(default=64, validator=_pos)
    latent_dim: int = field(default=16, validator=_pos)
    codes: int = field(default=256, validator=_pos)
    depth: int = field(default=8, validator=_pos)
    commitment_weight: float = field(default=0.25, validator=validators.ge(0.0))

    def __attrs_post_init__(self) -> None:
        if self.image_size % 4:
            raise ValueError(f"image_size must be divisible by 4, got {self.image_size}")

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


@frozen
class ImageCodecOutput:
    """What :meth:`ImageRVQVAE.forward` returns.

    Attributes:
        reconstruction: ``[batch, channels, height, width]`` decoded images.
        tokens: ``[batch, length, depth]`` tokens.
        commitment_loss: scalar commitment loss of the quantizer.
        perplexity: ``[depth]`` codebook perplexity per depth.
    """

    reconstruction: Images
    tokens: Tokens
    commitment_loss: Float[Tensor, ""]
    perplexity: Float[Tensor, " depth"]


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(8, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ImageRVQVAE(QuantizerShape, nn.Module):
    """Convolutional encoder (two stride-2 stages) -> residual VQ -> mirrored decoder.

    A ``28x28`` image becomes a ``7x7`` grid, i.e. ``length = 49`` token positions (row-major) of
    ``depth`` tokens each. Images are expected in ``[-1, 1]``.

    Args:
        config: an :class:`ImageCodecConfig`.
    """

    def __init__(self, config: ImageCodecConfig) -> None:
        super().__init__()
        self.config = config
        h, c = config.hidden, config.channels
        self.encoder = nn.Sequential(
            # No residual block at full resolution: it would dominate the cost on a CPU.
            nn.Conv2d(c, h, 4, stride=2, padding=1),
            _ResBlock(h),
            nn.Conv2d(h, h, 4, stride=2, padding=1),
            _ResBlock(h),
            nn.GroupNorm(8, h),
            nn.SiLU(),
            nn.Conv2d(h, config.latent_dim, 1),
        )
        self.rvq = ResidualVQ(
            ResidualVQConfig(
                dim=config.latent_dim,
                codes=config.codes,
                depth=config.depth,
                commitment_weight=config.commitment_weight,
            )
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(config.latent_dim, h, 3, padding=1),
            _ResBlock(h),
            nn.ConvTranspose2d(h, h, 4, stride=2, padding=1),
            _ResBlock(h),
            nn.GroupNorm(8, h),
            nn.SiLU(),
            nn.ConvTranspose2d(h, c, 4, stride=2, padding=1),
        )

    # ---- the Codec protocol
    @property
    def grid(self) -> tuple[int, int]:
        """Latent grid ``(height, width)``."""
        side = self.config.image_size // 4
        return side, side

    @property
    def length(self) -> int:
        """Token positions per image (``grid`` height times width)."""
        return self.grid[0] * self.grid[1]

    @property
    def quantizer(self) -> ResidualVQ:
        """The residual quantizer (its codebooks embed tokens for the generators)."""
        return self.rvq

    def _check_images(self, images: Tensor) -> None:
        c, s = self.config.channels, self.config.image_size
        if images.ndim != 4 or images.shape[1:] != (c, s, s):
            raise ValueError(
                f"expected images of shape [batch, {c}, {s}, {s}], got {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [-1, 1], got {images.dtype}")

    def _latents(self, images: Images) -> Float[Tensor, "batch length dim"]:
        self._check_images(images)
        return rearrange(self.encoder(images), "b c h w -> b (h w) c")

    def _image(self, latents: Float[Tensor, "batch length dim"]) -> Images:
        side = self.grid[0]
        return self.decoder(rearrange(latents, "b (h w) c -> b c h w", h=side))

    def forward(self, images: Images) -> ImageCodecOutput:
        """Encode, quantize (updating codebooks in training mode) and decode ``images``."""
        out = self.rvq(self._latents(images))
        return ImageCodecOutput(
            reconstruction=self._image(out.quantized),
            tokens=out.tokens,
            commitment_loss=out.commitment_loss,
            perplexity=out.perplexity,
        )

    @torch.no_grad()
    def encode(self, images: Images) -> Tokens:
        """Tokens ``[batch, length, depth]`` of ``images`` ``[batch, channels, size, size]``."""
        return self.rvq.encode(self._latents(images))

    @torch.no_grad()
    def decode(self, tokens: Tokens, *, partial: bool = False) -> Images:
        """Images ``[batch, channels, size, size]`` in ``[-1, 1]`` from tokens
        ``[batch, length, depth]``; with ``partial``, from the first ``d <= depth`` depths only."""
        if tokens.ndim == 3 and tokens.shape[1] != self.length:
            raise ValueError(f"expected {self.length} token positions, got {tokens.shape[1]}")
        return self._image(self.rvq.decode(tokens, partial=partial)).clamp(-1.0, 1.0)

    def loss(self, images: Images) -> tuple[Float[Tensor, ""], ImageCodecOutput]:
        """Training loss ``mse(reconstruction, images) + commitment`` and the forward output."""
        out = self(images)
        return F.mse_loss(out.reconstruction, images) + out.commitment_loss, out

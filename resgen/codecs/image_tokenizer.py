"""An RQ-VAE for RGB images of any power-of-two size: ``n`` stride-2 stages down to a small grid.

With five stages a 256x256 image becomes the 8x8 grid of ResGen's ImageNet models (64
positions); the codebook layout follows the RQ-VAE lineage ResGen compares with (one codebook of
16,384 codes of dimension 256 shared by every depth; see ``docs/guides/training-at-scale.md``).
The encoder and decoder are plain convolution stacks (a residual block per stage), smaller than
RQ-VAE's: a starting point that trains on one GPU, or a way to read a tokenizer of this shape
that a user trained elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from attrs import asdict, field, frozen, validators
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

from resgen.codecs.image_rvqvae import ImageCodecOutput, _ResBlock
from resgen.codecs.protocol import QuantizerShape
from resgen.quantizers.residual_vq import ResidualVQ, ResidualVQConfig
from resgen.typing import Images, Tokens

__all__ = ["ImageTokenizerConfig", "ImageTokenizer"]

_pos = validators.gt(0)


@frozen
class ImageTokenizerConfig:
    """Configuration of :class:`ImageTokenizer`.

    Attributes:
        image_size: height = width of the images (divisible by ``2 ** len(widths)``).
        channels: image channels.
        widths: convolution channels after each stride-2 stage (multiples of 8); their number
            is the number of stages, the grid's side is ``image_size / 2 ** len(widths)``.
        latent_dim: code dimension C.
        codes: codebook size K.
        depth: RVQ depth D.
        shared_codebook: one codebook for every depth (RQ-VAE's layout).
        commitment_weight: weight of the quantizer's commitment loss.
    """

    image_size: int = field(default=256, validator=_pos)
    channels: int = field(default=3, validator=_pos)
    widths: tuple[int, ...] = field(default=(64, 128, 128, 256, 256), converter=tuple)
    latent_dim: int = field(default=256, validator=_pos)
    codes: int = field(default=16384, validator=_pos)
    depth: int = field(default=8, validator=_pos)
    shared_codebook: bool = True
    commitment_weight: float = field(default=0.25, validator=validators.ge(0.0))

    def __attrs_post_init__(self) -> None:
        if not self.widths or any(w <= 0 or w % 8 for w in self.widths):
            raise ValueError(f"widths must be positive multiples of 8, got {self.widths}")
        if self.image_size % 2 ** len(self.widths):
            raise ValueError(
                f"image_size {self.image_size} is not divisible by 2**{len(self.widths)}"
            )

    @property
    def side(self) -> int:
        """The latent grid's side."""
        return self.image_size // 2 ** len(self.widths)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fields."""
        out = asdict(self)
        out["widths"] = list(self.widths)
        return out


class ImageTokenizer(QuantizerShape, nn.Module):
    """Encoder (stride-2 stages) -> residual VQ -> mirrored decoder; images in ``[-1, 1]``.

    Args:
        config: an :class:`ImageTokenizerConfig`.
    """

    def __init__(self, config: ImageTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        down: list[nn.Module] = [nn.Conv2d(config.channels, widths[0], 3, padding=1)]
        previous = widths[0]
        for width in widths:
            down += [nn.Conv2d(previous, width, 4, stride=2, padding=1), _ResBlock(width)]
            previous = width
        down += [nn.GroupNorm(8, previous), nn.SiLU(), nn.Conv2d(previous, config.latent_dim, 1)]
        self.encoder = nn.Sequential(*down)
        self.rvq = ResidualVQ(
            ResidualVQConfig(
                dim=config.latent_dim,
                codes=config.codes,
                depth=config.depth,
                shared_codebook=config.shared_codebook,
                commitment_weight=config.commitment_weight,
            )
        )
        up: list[nn.Module] = [nn.Conv2d(config.latent_dim, widths[-1], 3, padding=1)]
        for width, following in zip(widths[::-1], (*widths[-2::-1], widths[0]), strict=True):
            up += [_ResBlock(width), nn.ConvTranspose2d(width, following, 4, stride=2, padding=1)]
        up += [nn.GroupNorm(8, widths[0]), nn.SiLU()]
        up += [nn.Conv2d(widths[0], config.channels, 3, padding=1)]
        self.decoder = nn.Sequential(*up)

    @property
    def grid(self) -> tuple[int, int]:
        """Latent grid ``(height, width)``."""
        return self.config.side, self.config.side

    @property
    def length(self) -> int:
        """Token positions per image."""
        return self.config.side**2

    @property
    def quantizer(self) -> ResidualVQ:
        """The residual quantizer (its codebooks embed tokens for the generators)."""
        return self.rvq

    def _latents(self, images: Images) -> Float[Tensor, "batch length dim"]:
        c, s = self.config.channels, self.config.image_size
        if images.ndim != 4 or images.shape[1:] != (c, s, s):
            raise ValueError(
                f"expected images of shape [batch, {c}, {s}, {s}], got {tuple(images.shape)}"
            )
        return rearrange(self.encoder(images), "b c h w -> b (h w) c")

    def _image(self, latents: Float[Tensor, "batch length dim"]) -> Images:
        return self.decoder(rearrange(latents, "b (h w) c -> b c h w", h=self.config.side))

    def forward(self, images: Images) -> ImageCodecOutput:
        """Encode, quantize (updating codebooks in training mode) and decode ``images``
        ``[batch, channels, size, size]``."""
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
    def decode(self, tokens: Tokens) -> Images:
        """Images ``[batch, channels, size, size]`` in ``[-1, 1]`` from tokens
        ``[batch, length, depth]``."""
        if tokens.ndim != 3 or tokens.shape[1] != self.length:
            raise ValueError(f"expected tokens [batch, {self.length}, depth], got {tokens.shape}")
        return self._image(self.rvq.decode(tokens)).clamp(-1.0, 1.0)

    def loss(self, images: Images) -> tuple[Float[Tensor, ""], ImageCodecOutput]:
        """Training loss ``mse(reconstruction, images) + commitment`` and the forward output."""
        out = self(images)
        return F.mse_loss(out.reconstruction, images) + out.commitment_loss, out

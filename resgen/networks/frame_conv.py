"""Residual 1-D convolutions over a sequence of frame features.

The text-to-speech networks add to each speech position the phoneme spread there
(:func:`~resgen.networks.tts_transformer.gather_frames`): the same vector on every frame of a
phoneme. A few convolutions over those frames give each position its neighbours and where it
sits inside its phoneme, the local context that attention over the whole sequence learns slowly
on a small corpus (see the TTS guide's "What the generators lacked").
"""

from __future__ import annotations

from einops import rearrange
from jaxtyping import Bool, Float
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["FrameConvStack"]


class FrameConvStack(nn.Module):
    """``layers`` pre-norm residual blocks ``x + conv(gelu(norm(x)))`` along the frames.

    Padded frames are zeroed before every convolution and in the output, so they never change
    the real frames' result.

    Args:
        width: feature width (channels in and out).
        layers: residual blocks (>= 1).
        kernel: odd kernel size of each convolution, in frames.
    """

    def __init__(self, width: int, layers: int, kernel: int = 5) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd number, got {kernel}")
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers))
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, kernel, padding=kernel // 2) for _ in range(layers)
        )

    def forward(
        self,
        x: Float[Tensor, "batch length width"],
        padding: Bool[Tensor, "batch length"] | None = None,
    ) -> Float[Tensor, "batch length width"]:
        """Features ``[batch, length, width]`` with their neighbours mixed in (``padding``
        ``[batch, length]`` is ``True`` at frames that hold nothing; they come out as 0)."""
        keep = 1.0 if padding is None else rearrange(~padding, "b l -> b l 1").to(x.dtype)
        x = x * keep
        for norm, conv in zip(self.norms, self.convs):
            h = F.gelu(norm(x)) * keep
            x = x + rearrange(conv(rearrange(h, "b l w -> b w l")), "b w l -> b l w") * keep
        return x

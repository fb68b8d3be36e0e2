"""A 1-D convolutional RVQ-VAE over log-mel spectrograms, for variable-length speech.

``[batch, frames, n_mels]`` log-mels (62.5 frames/s by default) become ``[batch, length, depth]``
RVQ tokens at ``frames / downsample`` positions (15.625 tokens/s by default), with right padding
carried through as boolean masks at every resolution.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from attrs import asdict, field, frozen, validators
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from resgen.codecs.mel import LogMelSpectrogram, MelConfig, lengths_to_padding, padding_to_lengths
from resgen.codecs.protocol import QuantizerShape
from resgen.codecs.vocoder import GriffinLimVocoder, Vocoder
from resgen.quantizers import distributed as rvq_dist
from resgen.quantizers.residual_vq import ResidualVQ, ResidualVQConfig
from resgen.typing import Padding, Tokens

__all__ = ["MelCodecConfig", "MelCodecOutput", "MelRVQVAE"]

_pos = validators.gt(0)

LogMels = Float[Tensor, "batch frames mels"]
FramePadding = Bool[Tensor, "batch frames"]


def _power_of_two(_: object, attribute: object, value: int) -> None:
    if value < 1 or value & (value - 1):
        raise ValueError(f"{attribute.name} must be a power of two (1, 2, 4, 8, ...), got {value}")


@frozen
class MelCodecConfig:
    """Configuration of :class:`MelRVQVAE`.

    Attributes:
        mel: the log-mel front-end (:class:`~resgen.codecs.mel.MelConfig`; 16 kHz, hop 256, 80
            bins by default).
        hidden: convolution channels.
        latent_dim: code dimension C.
        codes: codebook size K per depth.
        depth: RVQ depth D (16 by default; 32 as in CLaM-TTS's Mel-VAE also works).
        downsample: mel frames per token position, a power of two (one stride-2 convolution per
            factor 2). 4 gives 62.5 / 4 = 15.625 token positions per second.
        commitment_weight: weight of the quantizer's commitment loss.
        dropout_prob: quantizer dropout probability (train to decode from depth prefixes too).
        reconstruction_loss: ``"l1"`` or ``"l2"``, on normalised log-mels of real frames.
    """

    mel: MelConfig = field(factory=MelConfig, validator=validators.instance_of(MelConfig))
    hidden: int = field(default=256, validator=_pos)
    latent_dim: int = field(default=32, validator=_pos)
    codes: int = field(default=1024, validator=_pos)
    depth: int = field(default=16, validator=_pos)
    downsample: int = field(default=4, validator=_power_of_two)
    commitment_weight: float = field(default=0.25, validator=validators.ge(0.0))
    dropout_prob: float = field(default=0.0, validator=[validators.ge(0.0), validators.le(1.0)])
    reconstruction_loss: Literal["l1", "l2"] = field(
        default="l1", validator=validators.in_(("l1", "l2"))
    )

    @property
    def frame_rate(self) -> float:
        """Token positions (latent frames) per second."""
        return self.mel.frame_rate / self.downsample

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fields (the mel config nested as a dict)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MelCodecConfig:
        """Inverse of :meth:`to_dict`.

        Args:
            data: a dict as written by :meth:`to_dict`.
        """
        data = dict(data)
        mel = data.pop("mel", None)
        return cls(mel=MelConfig(**mel) if isinstance(mel, dict) else MelConfig(), **data)


@frozen
class MelCodecOutput:
    """What :meth:`MelRVQVAE.forward` returns.

    Attributes:
        reconstruction: ``[batch, frames, n_mels]`` decoded log-mels (padded frames hold the
            silence value ``mel.silence``).
        tokens: ``[batch, length, depth]`` tokens (0 at padded positions).
        commitment_loss: scalar commitment loss of the quantizer (real positions only).
        perplexity: ``[depth]`` codebook perplexity per depth (real positions only).
        latent_padding: ``[batch, length]``, ``True`` at padded token positions.
    """

    reconstruction: LogMels
    tokens: Tokens
    commitment_loss: Float[Tensor, ""]
    perplexity: Float[Tensor, " depth"]
    latent_padding: Padding


def _keep(lengths: Int[Tensor, " batch"], total: int) -> Float[Tensor, "batch 1 total"]:
    """``[batch, 1, total]`` float mask, 1 at the first ``lengths[b]`` positions."""
    return rearrange(~lengths_to_padding(lengths, total), "b t -> b 1 t").float()


class _ChannelNorm(nn.Module):
    """LayerNorm over channels of each frame of ``[batch, channels, time]``: it never mixes
    frames, so padded frames cannot leak into real ones through it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return rearrange(self.norm(rearrange(x, "b c t -> b t c")), "b t c -> b c t")


class _ResBlock(nn.Module):
    """Pre-norm residual block of dilated 3-tap convolutions; the input of every convolution is
    zeroed at padded frames."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 3)) -> None:
        super().__init__()
        self.norms = nn.ModuleList(_ChannelNorm(channels) for _ in dilations)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, 3, padding=d, dilation=d) for d in dilations
        )

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        for norm, conv in zip(self.norms, self.convs):
            x = x + conv(F.silu(norm(x)) * keep)
        return x


class _Encoder(nn.Module):
    def __init__(self, n_mels: int, hidden: int, latent_dim: int, stages: int) -> None:
        super().__init__()
        self.stem = nn.Conv1d(n_mels, hidden, 7, padding=3)
        self.blocks = nn.ModuleList(_ResBlock(hidden) for _ in range(stages + 1))
        self.downs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, 4, stride=2, padding=1) for _ in range(stages)
        )
        self.norm = _ChannelNorm(hidden)
        self.head = nn.Conv1d(hidden, latent_dim, 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``[b, mels, T]`` (T a multiple of ``2**stages``) -> ``[b, latent, T / 2**stages]``."""
        keep = _keep(lengths, x.shape[-1])
        x = self.stem(x * keep)
        x = self.blocks[0](x, keep)
        for down, block in zip(self.downs, self.blocks[1:]):
            x = down(x * keep)
            lengths = torch.div(lengths + 1, 2, rounding_mode="floor")  # ceil(lengths / 2)
            keep = _keep(lengths, x.shape[-1])
            x = block(x, keep)
        return self.head(F.silu(self.norm(x)))


class _Decoder(nn.Module):
    def __init__(self, n_mels: int, hidden: int, latent_dim: int, stages: int) -> None:
        super().__init__()
        self.stem = nn.Conv1d(latent_dim, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(_ResBlock(hidden) for _ in range(stages + 1))
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(hidden, hidden, 4, stride=2, padding=1) for _ in range(stages)
        )
        self.norm = _ChannelNorm(hidden)
        self.head = nn.Conv1d(hidden, n_mels, 7, padding=3)

    def forward(self, z: Tensor, lengths: Tensor) -> Tensor:
        """``[b, latent, L]`` -> ``[b, mels, L * 2**stages]``."""
        keep = _keep(lengths, z.shape[-1])
        x = self.stem(z * keep)
        x = self.blocks[0](x, keep)
        for up, block in zip(self.ups, self.blocks[1:]):
            x = up(x * keep)
            lengths = lengths * 2
            keep = _keep(lengths, x.shape[-1])
            x = block(x, keep)
        return self.head(F.silu(self.norm(x)) * keep)


class MelRVQVAE(QuantizerShape, nn.Module):
    """Log-mel RVQ-VAE: 1-D conv encoder (stride-2 downsampling) -> residual VQ -> mirrored
    decoder (transposed-conv upsampling).

    **Variable length.** Batches are right-padded; ``padding`` is ``True`` at padded frames. Every
    convolution's input is zeroed at padded frames and the only normalisation is per frame (a
    LayerNorm over channels), so the values in padded frames never change the result at real
    frames, and an utterance codes the same alone or in a padded batch. Inputs are padded up to a
    multiple of ``downsample`` frames; an utterance of ``n`` real frames gets
    ``ceil(n / downsample)`` real token positions (:meth:`latent_padding`), and decoding ``m``
    real positions gives ``m * downsample`` real frames.

    **Normalisation.** Log-mels are standardised per mel bin with statistics kept as buffers
    (``mel_mean``, ``mel_std``). Set them with :meth:`fit_normalization` on a sample of the
    training data; otherwise the first call in training mode fits them on its batch (all-reduced
    under ``torch.distributed``), the way the quantizer's k-means initialisation works. Until
    then they are the identity. The reconstruction loss is measured on the standardised scale,
    so every mel bin weighs the same.

    Args:
        config: a :class:`MelCodecConfig`.
    """

    def __init__(self, config: MelCodecConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else MelCodecConfig()
        n_mels, stages = config.mel.n_mels, int(math.log2(config.downsample))
        self.frontend = LogMelSpectrogram(config.mel)
        self.encoder = _Encoder(n_mels, config.hidden, config.latent_dim, stages)
        self.rvq = ResidualVQ(
            ResidualVQConfig(
                dim=config.latent_dim,
                codes=config.codes,
                depth=config.depth,
                commitment_weight=config.commitment_weight,
                dropout_prob=config.dropout_prob,
            )
        )
        self.decoder = _Decoder(n_mels, config.hidden, config.latent_dim, stages)
        self.register_buffer("mel_mean", torch.zeros(n_mels))
        self.register_buffer("mel_std", torch.ones(n_mels))
        self.register_buffer("normalization_fitted", torch.tensor(False))

    # ------------------------------------------------------------------ properties
    @property
    def quantizer(self) -> ResidualVQ:
        """The residual quantizer (its codebooks embed tokens for the generators)."""
        return self.rvq

    @property
    def frame_rate(self) -> float:
        """Token positions (latent frames) per second."""
        return self.config.frame_rate

    @property
    def mel_frame_rate(self) -> float:
        """Mel frames per second."""
        return self.config.mel.frame_rate

    @property
    def sample_rate(self) -> int:
        """Sample rate of the audio, in Hz."""
        return self.config.mel.sample_rate

    @property
    def hop(self) -> int:
        """Audio samples per mel frame."""
        return self.config.mel.hop

    @property
    def downsample(self) -> int:
        """Mel frames per token position."""
        return self.config.downsample

    @property
    def samples_per_token(self) -> int:
        """Audio samples per token position (``hop * downsample``)."""
        return self.hop * self.downsample

    @property
    def n_mels(self) -> int:
        """Mel bins."""
        return self.config.mel.n_mels

    # ------------------------------------------------------------------ padding
    def latent_padding(self, frame_padding: FramePadding) -> Padding:
        """Token-level padding of a frame-level right padding.

        Args:
            frame_padding: ``[batch, frames]``, ``True`` at padded mel frames.

        Returns:
            ``[batch, ceil(frames / downsample)]``, ``True`` at token positions with no real
            frame (an utterance of ``n`` real frames has ``ceil(n / downsample)`` real positions).
        """
        lengths = padding_to_lengths(frame_padding, "frame padding")
        f = self.downsample
        total = -(-frame_padding.shape[1] // f)
        return lengths_to_padding(torch.div(lengths + f - 1, f, rounding_mode="floor"), total)

    def _prepare(self, mels: Tensor, padding: Tensor | None) -> tuple[Tensor, Tensor, Tensor, int]:
        """Check the input; return mels padded to a multiple of ``downsample`` frames, the real
        frame lengths, the padded frame mask, and the original frame count."""
        n_mels = self.n_mels
        if mels.ndim != 3 or mels.shape[-1] != n_mels:
            raise ValueError(
                f"expected log-mels of shape [batch, frames, {n_mels}] (channels-last, "
                f"{n_mels} mel bins), got {tuple(mels.shape)}"
            )
        if not mels.is_floating_point():
            raise TypeError(f"log-mels must be floating point, got {mels.dtype}")
        mels = mels.to(device=self.mel_mean.device, dtype=self.mel_mean.dtype)
        batch, frames, _ = mels.shape
        if padding is None:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=mels.device)
        else:
            if padding.shape != (batch, frames):
                raise ValueError(
                    f"padding must have shape {(batch, frames)}, got {tuple(padding.shape)}"
                )
            lengths = padding_to_lengths(padding.to(mels.device))
        f = self.downsample
        if batch and int(lengths.min()) < f:
            short = int(lengths.argmin())
            raise ValueError(
                f"utterance {short} has {int(lengths[short])} real mel frames, shorter than one "
                f"latent frame ({f} mel frames = {f * self.hop} samples = "
                f"{1000 * f * self.hop / self.sample_rate:.0f} ms at {self.sample_rate} Hz)"
            )
        x = mels
        total = -(-frames // f) * f
        pad = self._frame_pad(lengths, total)
        # Whatever the pad holds (even NaN) is replaced here, before any arithmetic.
        x = F.pad(x, (0, 0, 0, total - frames)).masked_fill(pad, 0.0)
        if not bool(torch.isfinite(x).all()):
            raise ValueError("log-mels contain NaN or infinite values at real frames")
        return x, lengths, pad, frames

    @staticmethod
    def _frame_pad(lengths: Tensor, total: int) -> Tensor:
        return rearrange(lengths_to_padding(lengths, total), "b t -> b t 1")

    # ------------------------------------------------------------------ normalisation
    @torch.no_grad()
    def fit_normalization(
        self, mels: LogMels, padding: FramePadding | None = None, *, min_std: float = 1e-2
    ) -> None:
        """Set the per-bin mean and standard deviation from the real frames of ``mels``.

        Under an initialised ``torch.distributed`` process group the sums are all-reduced, so
        every rank gets the same statistics.

        Args:
            mels: ``[batch, frames, n_mels]`` log-mels (a representative sample of the data).
            padding: ``[batch, frames]``, ``True`` at padded frames (excluded).
            min_std: floor on the standard deviation of a bin.
        """
        x, lengths, pad, _ = self._prepare(mels, padding)
        x = x.double()
        stats = torch.cat([x.sum((0, 1)), (x * x).sum((0, 1)), lengths.sum()[None].double()])
        if rvq_dist.is_distributed():
            stats = rvq_dist.all_reduce_sum(stats)
        n_mels = self.n_mels
        count = stats[-1]
        mean = stats[:n_mels] / count
        var = (stats[n_mels : 2 * n_mels] / count - mean * mean).clamp_min(0.0)
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(var.sqrt().clamp_min(min_std))
        self.normalization_fitted.fill_(True)

    def normalize(self, mels: LogMels) -> LogMels:
        """Standardise log-mels ``[batch, frames, n_mels]`` per bin."""
        return (mels - self.mel_mean) / self.mel_std

    def denormalize(self, mels: LogMels) -> LogMels:
        """Undo :meth:`normalize` on ``[batch, frames, n_mels]``."""
        return mels * self.mel_std + self.mel_mean

    # ------------------------------------------------------------------ networks
    def _latents(
        self, x: Tensor, lengths: Tensor
    ) -> tuple[Float[Tensor, "batch length dim"], Int[Tensor, " batch"]]:
        z = self.encoder(rearrange(self.normalize(x), "b t m -> b m t"), lengths)
        f = self.downsample
        return rearrange(z, "b c l -> b l c"), torch.div(lengths + f - 1, f, rounding_mode="floor")

    def _mels(self, z: Tensor, latent_lengths: Tensor) -> Tensor:
        """Normalised log-mels ``[b, L * downsample, mels]`` of latents ``[b, L, c]``."""
        x = self.decoder(rearrange(z, "b l c -> b c l"), latent_lengths)
        return rearrange(x, "b m t -> b t m")

    def forward(self, mels: LogMels, padding: FramePadding | None = None) -> MelCodecOutput:
        """Encode, quantize (updating codebooks in training mode) and decode ``mels``.

        Args:
            mels: ``[batch, frames, n_mels]`` log-mels.
            padding: ``[batch, frames]`` right padding, ``True`` at padded frames.

        Returns:
            A :class:`MelCodecOutput`; its reconstruction has the input's ``frames``.
        """
        x, lengths, pad, frames = self._prepare(mels, padding)
        if self.training and not bool(self.normalization_fitted):
            self.fit_normalization(mels, padding)
        z, latent_lengths = self._latents(x, lengths)
        latent_padding = lengths_to_padding(latent_lengths, z.shape[1])
        out = self.rvq(z, padding=latent_padding)
        recon = self.denormalize(self._mels(out.quantized, latent_lengths))
        recon = recon.masked_fill(pad, self.config.mel.silence)[:, :frames]
        return MelCodecOutput(
            reconstruction=recon,
            tokens=out.tokens.masked_fill(rearrange(latent_padding, "b l -> b l 1"), 0),
            commitment_loss=out.commitment_loss,
            perplexity=out.perplexity,
            latent_padding=latent_padding,
        )

    def loss(
        self, mels: LogMels, padding: FramePadding | None = None
    ) -> tuple[Float[Tensor, ""], MelCodecOutput]:
        """Training loss: reconstruction (L1 or L2 on standardised log-mels, real frames only)
        plus the quantizer's commitment loss.

        Args:
            mels: ``[batch, frames, n_mels]`` log-mels.
            padding: ``[batch, frames]`` right padding, ``True`` at padded frames.

        Returns:
            ``(loss, output)``: the scalar loss and the :class:`MelCodecOutput`.
        """
        out = self(mels, padding)
        target = mels.to(out.reconstruction)
        diff = (out.reconstruction - target) / self.mel_std
        per_frame = diff.abs() if self.config.reconstruction_loss == "l1" else diff.square()
        if padding is None:
            recon = per_frame.mean()
        else:
            # masked_fill, not a product: the pad may hold anything, NaN included.
            padding = padding.to(per_frame.device)
            per_frame = per_frame.masked_fill(rearrange(padding, "b t -> b t 1"), 0.0)
            recon = per_frame.sum() / ((~padding).sum() * self.n_mels)
        return recon + out.commitment_loss, out

    # ------------------------------------------------------------------ the codec interface
    @torch.no_grad()
    def encode(self, mels: LogMels, padding: FramePadding | None = None) -> tuple[Tokens, Padding]:
        """Tokens of a right-padded batch of log-mels (no codebook update, whatever the mode).

        Args:
            mels: ``[batch, frames, n_mels]`` log-mels.
            padding: ``[batch, frames]``, ``True`` at padded frames (default: none).

        Returns:
            ``(tokens, latent_padding)``: ``[batch, length, depth]`` int64 tokens (0 at padded
            positions) with ``length = ceil(frames / downsample)``, and ``[batch, length]``
            ``True`` at padded positions.

        Raises:
            ValueError: wrong mel bins, non-right padding, or an utterance shorter than one
                latent frame (``downsample`` mel frames).
        """
        x, lengths, _, _ = self._prepare(mels, padding)
        z, latent_lengths = self._latents(x, lengths)
        latent_padding = lengths_to_padding(latent_lengths, z.shape[1])
        tokens = self.rvq.encode(z).masked_fill(rearrange(latent_padding, "b l -> b l 1"), 0)
        return tokens, latent_padding

    @torch.no_grad()
    def decode(
        self, tokens: Tokens, latent_padding: Padding | None = None, *, partial: bool = False
    ) -> tuple[LogMels, FramePadding]:
        """Log-mels of tokens.

        Args:
            tokens: ``[batch, length, depth]`` (values at padded positions are ignored).
            latent_padding: ``[batch, length]``, ``True`` at padded positions (default: none).
            partial: accept the tokens of the first ``d <= depth`` depths only and decode their
                partial sum, a coarser approximation of the same latent (a lower bitrate; train
                with ``dropout_prob > 0`` for a decoder that has seen such sums).

        Returns:
            ``(mels, frame_padding)``: ``[batch, length * downsample, n_mels]`` log-mels (padded
            frames hold ``mel.silence``) and ``[batch, length * downsample]`` ``True`` at padded
            frames.
        """
        self.rvq.check_tokens(tokens, partial=partial)
        batch, length, _ = tokens.shape
        device = self.mel_mean.device
        tokens = tokens.to(device)
        if latent_padding is None:
            lengths = torch.full((batch,), length, dtype=torch.long, device=device)
        else:
            if latent_padding.shape != (batch, length):
                raise ValueError(
                    f"latent_padding must have shape {(batch, length)}, "
                    f"got {tuple(latent_padding.shape)}"
                )
            latent_padding = latent_padding.to(device)
            lengths = padding_to_lengths(latent_padding, "latent_padding")
            tokens = tokens.masked_fill(rearrange(latent_padding, "b l -> b l 1"), 0)
        z = self.rvq.decode(tokens, partial=partial)
        frame_lengths = lengths * self.downsample
        mels = self.denormalize(self._mels(z, lengths))
        frame_padding = lengths_to_padding(frame_lengths, mels.shape[1])
        mels = mels.masked_fill(rearrange(frame_padding, "b t -> b t 1"), self.config.mel.silence)
        return mels, frame_padding

    @torch.no_grad()
    def encode_waveform(
        self,
        waveform: Float[Tensor, "batch samples"],
        lengths: Int[Tensor, " batch"] | None = None,
        sample_rate: int | None = None,
    ) -> tuple[Tokens, Padding]:
        """Tokens of a right-padded batch of mono waveforms (front-end, then :meth:`encode`).

        Args:
            waveform: ``[batch, samples]`` audio at :attr:`sample_rate`.
            lengths: ``[batch]`` real samples per row (default: all).
            sample_rate: the audio's rate, checked when given (resample with
                ``torchaudio.functional.resample`` otherwise).

        Returns:
            ``(tokens [batch, length, depth], latent_padding [batch, length])``.
        """
        mels, padding = self.frontend(waveform.to(self.mel_mean.device), lengths, sample_rate)
        return self.encode(mels, padding)

    @torch.no_grad()
    def decode_waveform(
        self,
        tokens: Tokens,
        latent_padding: Padding | None = None,
        vocoder: Vocoder | None = None,
    ) -> tuple[Float[Tensor, "batch samples"], Int[Tensor, " batch"]]:
        """Audio of tokens: :meth:`decode`, then a vocoder.

        Args:
            tokens: ``[batch, length, depth]``.
            latent_padding: ``[batch, length]``, ``True`` at padded positions.
            vocoder: a :class:`~resgen.codecs.vocoder.Vocoder` at :attr:`sample_rate`
                (default: a 32-iteration :class:`~resgen.codecs.vocoder.GriffinLimVocoder`).

        Returns:
            ``(waveform, lengths)``: ``[batch, length * samples_per_token]`` audio and
            ``[batch]`` real samples per row.
        """
        if vocoder is None:
            vocoder = GriffinLimVocoder(self.config.mel).to(self.mel_mean.device)
        if int(vocoder.sample_rate) != self.sample_rate:
            raise ValueError(
                f"the vocoder produces {vocoder.sample_rate} Hz audio but the codec's mels are "
                f"at {self.sample_rate} Hz"
            )
        mels, frame_padding = self.decode(tokens, latent_padding)
        wave = vocoder(mels, frame_padding)
        lengths = (~frame_padding).sum(-1) * self.hop
        return wave, lengths.clamp_max(wave.shape[-1])

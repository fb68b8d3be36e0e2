"""Log-mel front-end: waveform ``[batch, samples]`` -> log-mel ``[batch, frames, mels]`` + padding.

Variable-length batches are right-padded: ``lengths[b]`` real samples, then anything. Samples
beyond a waveform's length are zeroed before the analysis and the STFT pads both ends with zeros
(``center=True``, constant padding), so every real frame of an utterance is the same whether it is
analysed alone or inside a padded batch, whatever the pad holds.

Frame convention: a waveform of ``n`` samples has ``1 + n // hop`` frames (frame ``t`` is centred
on sample ``t * hop``); a vocoder turns ``T`` frames back into ``T * hop`` samples.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from attrs import asdict, field, frozen, validators
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

__all__ = [
    "MelConfig",
    "MelFraming",
    "LogMelSpectrogram",
    "lengths_to_padding",
    "padding_to_lengths",
]

_pos = validators.gt(0)


def _optional_positive_float(_: object, attribute: object, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value}")


@frozen
class MelConfig:
    """Configuration of the log-mel analysis (:class:`LogMelSpectrogram`).

    The defaults give 62.5 mel frames per second of 16 kHz audio, 80 mel bins over 0-8 kHz.

    Attributes:
        sample_rate: the only sample rate accepted, in Hz.
        n_fft: FFT size (``n_fft // 2 + 1`` linear frequency bins).
        win_length: Hann window length in samples (``<= n_fft``).
        hop: hop length in samples between frames.
        n_mels: mel bins.
        f_min: lowest mel filter edge in Hz.
        f_max: highest mel filter edge in Hz (``None``: the Nyquist frequency).
        log_floor: magnitudes are clamped to at least this before the natural log, so silence is
            ``log(log_floor)``.
        mel_scale: ``"slaney"`` or ``"htk"`` mel scale.
        norm: ``"slaney"`` (area-normalised filters) or ``None``.
    """

    sample_rate: int = field(default=16000, validator=_pos)
    n_fft: int = field(default=1024, validator=_pos)
    win_length: int = field(default=1024, validator=_pos)
    hop: int = field(default=256, validator=_pos)
    n_mels: int = field(default=80, validator=_pos)
    f_min: float = field(default=0.0, validator=validators.ge(0.0))
    f_max: float | None = field(default=8000.0, validator=_optional_positive_float)
    log_floor: float = field(default=1e-5, validator=_pos)
    mel_scale: Literal["slaney", "htk"] = field(
        default="slaney", validator=validators.in_(("slaney", "htk"))
    )
    norm: Literal["slaney"] | None = field(
        default="slaney", validator=validators.in_(("slaney", None))
    )

    def __attrs_post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.fmax > self.sample_rate / 2:
            raise ValueError(
                f"f_max ({self.f_max}) must not exceed the Nyquist frequency "
                f"({self.sample_rate / 2})"
            )
        if self.f_min >= self.fmax:
            raise ValueError(f"f_min ({self.f_min}) must be below f_max ({self.fmax})")

    @property
    def fmax(self) -> float:
        """``f_max`` with ``None`` resolved to the Nyquist frequency."""
        return float(self.f_max) if self.f_max is not None else self.sample_rate / 2

    @property
    def n_freqs(self) -> int:
        """Linear frequency bins of the STFT (``n_fft // 2 + 1``)."""
        return self.n_fft // 2 + 1

    @property
    def frame_rate(self) -> float:
        """Mel frames per second (``sample_rate / hop``)."""
        return self.sample_rate / self.hop

    @property
    def filterbank(self) -> dict[str, Any]:
        """The mel filterbank's settings, as torchaudio's mel-scale functions name them
        (``n_mels``, ``sample_rate``, ``f_min``, ``f_max``, ``norm``, ``mel_scale``): the analysis
        and the vocoder's inverse must use the very same filters."""
        return {
            "n_mels": self.n_mels,
            "sample_rate": self.sample_rate,
            "f_min": self.f_min,
            "f_max": self.fmax,
            "norm": self.norm,
            "mel_scale": self.mel_scale,
        }

    @property
    def silence(self) -> float:
        """The log-mel value of silence (``log(log_floor)``), used to fill padded frames."""
        return math.log(self.log_floor)

    def frames(self, samples: int) -> int:
        """Number of frames of a waveform of ``samples`` samples (``1 + samples // hop``)."""
        return 1 + samples // self.hop

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


def lengths_to_padding(lengths: Int[Tensor, " batch"], total: int) -> Bool[Tensor, "batch length"]:
    """Right-padding mask from lengths.

    Args:
        lengths: ``[batch]`` number of real (leading) positions of each row.
        total: the padded length.

    Returns:
        ``[batch, total]``, ``True`` at padded positions (``index >= lengths[b]``).
    """
    return torch.arange(total, device=lengths.device)[None, :] >= lengths[:, None]


def padding_to_lengths(
    padding: Bool[Tensor, "batch length"], name: str = "padding"
) -> Int[Tensor, " batch"]:
    """Lengths of a right-padding mask, checking that it is one.

    Args:
        padding: ``[batch, length]``, ``True`` at padded positions; each row must be real
            positions followed by padded ones.
        name: what to call the mask in the error message.

    Returns:
        ``[batch]`` int64 number of real positions per row.

    Raises:
        ValueError: if a row has a real position after a padded one (left or inner padding).
    """
    if padding.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = padded), got {padding.dtype}")
    lengths = (~padding).sum(-1)
    expected = lengths_to_padding(lengths, padding.shape[-1])
    if not torch.equal(expected, padding):
        bad = int((expected != padding).any(-1).nonzero()[0, 0])
        raise ValueError(
            f"{name} must be right padding (real positions first, then padded ones); "
            f"row {bad} is not"
        )
    return lengths


class MelFraming(nn.Module):
    """What the log-mel analysis and a vocoder share: one :class:`MelConfig` (``config``), its
    sample rate and hop, and the Hann window of its STFT (a buffer, not saved).

    Args:
        config: a :class:`MelConfig` (default: ``MelConfig()``).
    """

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else MelConfig()
        self.register_buffer("window", torch.hann_window(self.config.win_length), persistent=False)

    @property
    def sample_rate(self) -> int:
        """Sample rate of the audio, in Hz."""
        return self.config.sample_rate

    @property
    def hop(self) -> int:
        """Audio samples per mel frame."""
        return self.config.hop


class LogMelSpectrogram(MelFraming):
    """Waveform ``[batch, samples]`` -> natural-log magnitude mel spectrogram ``[batch, frames,
    n_mels]`` (channels-last) and its frame padding mask.

    The mel filterbank comes from ``torchaudio.functional.melscale_fbanks`` (built once, at
    construction); the analysis itself is ``torch.stft`` of a Hann window, magnitude (power 1),
    filterbank, ``log(clamp(mel, log_floor))``. No further normalisation is applied (a codec
    normalises per mel bin itself). Padded frames hold :attr:`MelConfig.silence`.

    Args:
        config: a :class:`MelConfig`.
    """

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__(config)
        from torchaudio.functional import melscale_fbanks

        fbank = melscale_fbanks(n_freqs=self.config.n_freqs, **self.config.filterbank)
        self.register_buffer("fbank", fbank, persistent=False)  # [n_freqs, n_mels]

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.config.frame_rate

    def check_sample_rate(self, sample_rate: int | None) -> None:
        """Raise a clear error unless ``sample_rate`` is ``None`` or the configured rate.

        Args:
            sample_rate: the caller's sample rate in Hz, or ``None`` (trusted to match).
        """
        if sample_rate is not None and int(sample_rate) != self.config.sample_rate:
            raise ValueError(
                f"sample rate {sample_rate} Hz is not supported: this front-end takes "
                f"{self.config.sample_rate} Hz audio. Resample first, e.g. "
                f"torchaudio.functional.resample(waveform, orig_freq={sample_rate}, "
                f"new_freq={self.config.sample_rate})"
            )

    def frame_lengths(self, lengths: Int[Tensor, " batch"]) -> Int[Tensor, " batch"]:
        """Real frames of waveforms of ``lengths`` samples (``1 + lengths // hop``).

        Args:
            lengths: ``[batch]`` samples per waveform.

        Returns:
            ``[batch]`` frames per waveform.
        """
        return 1 + torch.div(lengths, self.config.hop, rounding_mode="floor")

    def forward(
        self,
        waveform: Float[Tensor, "batch samples"],
        lengths: Int[Tensor, " batch"] | None = None,
        sample_rate: int | None = None,
    ) -> tuple[Float[Tensor, "batch frames mels"], Bool[Tensor, "batch frames"]]:
        """Log-mel spectrogram of a right-padded batch of mono waveforms.

        Args:
            waveform: ``[batch, samples]`` mono audio at ``config.sample_rate``.
            lengths: ``[batch]`` real samples per row, each in ``1..samples`` (default: all).
            sample_rate: the audio's sample rate, checked against the configuration when given.

        Returns:
            ``(log_mel, padding)``: ``[batch, frames, n_mels]`` with ``frames = 1 + samples //
            hop``, and ``[batch, frames]`` ``True`` at padded frames (row ``b`` has
            ``1 + lengths[b] // hop`` real frames).

        Raises:
            ValueError: wrong sample rate, shape, or lengths out of range.
        """
        self.check_sample_rate(sample_rate)
        if waveform.ndim != 2:
            raise ValueError(
                f"expected a mono waveform of shape [batch, samples], got {tuple(waveform.shape)}"
            )
        if not waveform.is_floating_point():
            raise TypeError(f"waveform must be floating point, got {waveform.dtype}")
        batch, samples = waveform.shape
        if samples == 0:
            raise ValueError("waveform has no samples")
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.long, device=waveform.device)
        else:
            if lengths.shape != (batch,):
                raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
            lengths = lengths.to(device=waveform.device, dtype=torch.long)
            if batch and (int(lengths.min()) < 1 or int(lengths.max()) > samples):
                raise ValueError(
                    f"lengths must lie in 1..{samples} (the waveform's samples), "
                    f"got min {int(lengths.min())} and max {int(lengths.max())}"
                )
        cfg = self.config
        x = waveform.float().masked_fill(lengths_to_padding(lengths, samples), 0.0)
        spec = torch.stft(
            x,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop,
            win_length=cfg.win_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        ).abs()  # [batch, n_freqs, frames]
        mel = torch.einsum("bft,fm->btm", spec, self.fbank)
        log_mel = torch.log(mel.clamp_min(cfg.log_floor))
        padding = lengths_to_padding(self.frame_lengths(lengths), log_mel.shape[1])
        log_mel = log_mel.masked_fill(rearrange(padding, "b t -> b t 1"), cfg.silence)
        return log_mel, padding

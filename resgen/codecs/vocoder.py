"""Vocoders: log-mel ``[batch, frames, mels]`` -> waveform ``[batch, samples]``.

:class:`Vocoder` is the plug point (a neural vocoder drops in without subclassing);
:class:`GriffinLimVocoder` is the default, with no learned weights.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from einops import rearrange
from jaxtyping import Bool, Float
from torch import Tensor

from resgen.codecs.mel import MelConfig, MelFraming, lengths_to_padding, padding_to_lengths

__all__ = ["Vocoder", "GriffinLimVocoder"]


@runtime_checkable
class Vocoder(Protocol):
    """Turns the log-mel spectrograms of :class:`~resgen.codecs.mel.LogMelSpectrogram` back into
    audio.

    Contract: ``T`` frames (of which the unpadded ones are real) become ``T * hop`` samples at
    :attr:`sample_rate`; the samples of padded frames are silent (zero).
    """

    @property
    def sample_rate(self) -> int:
        """Sample rate of the returned audio, in Hz."""
        ...

    def __call__(
        self,
        log_mel: Float[Tensor, "batch frames mels"],
        padding: Bool[Tensor, "batch frames"] | None = None,
    ) -> Float[Tensor, "batch samples"]:
        """Waveforms ``[batch, frames * hop]`` of log-mels ``[batch, frames, mels]`` (padding
        ``[batch, frames]``, ``True`` at padded frames)."""
        ...


class GriffinLimVocoder(MelFraming):
    """Griffin-Lim phase reconstruction from log-mels (torchaudio; no learned weights).

    Undoes the front-end step by step: ``exp`` of the log-mel (values at the log floor stay a
    negligible magnitude), a non-negative least-squares-style inversion of the mel filterbank
    (``torchaudio.transforms.InverseMelScale``: the minimum-norm solution, clamped at 0), then
    ``iterations`` rounds of fast Griffin-Lim (``torchaudio.functional.griffinlim``, momentum
    ``momentum``) on the linear magnitude spectrogram. The front-end applies no normalisation
    beyond the mel filterbank's own (``norm``), which the inversion uses as well.

    The random initial phase comes from ``seed`` (the same mels give the same audio on every call,
    and torch's global random state is left as it was), from the global generator when ``seed`` is
    ``None``, or is zero with ``rand_init=False``. The phase matters to a listener and to a speech
    recogniser (how much WER it moves on the TTS demo: ``docs/research/tts-experiments.md``,
    "Metrics"), hence a fixed seed by default.

    Args:
        config: the :class:`~resgen.codecs.mel.MelConfig` of the front-end that made the mels.
        iterations: Griffin-Lim iterations (more is slower and cleaner; 32 is usually enough).
        momentum: fast Griffin-Lim momentum in ``[0, 1)``.
        rand_init: random (``True``) or zero initial phase.
        seed: seed of the random initial phase (``None``: torch's global generator).
    """

    def __init__(
        self,
        config: MelConfig | None = None,
        iterations: int = 32,
        momentum: float = 0.99,
        rand_init: bool = True,
        seed: int | None = 0,
    ) -> None:
        from torchaudio.transforms import InverseMelScale

        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        super().__init__(config)
        self.iterations = iterations
        self.momentum = momentum
        self.rand_init = rand_init
        self.seed = seed
        self.inverse_mel = InverseMelScale(n_stft=self.config.n_freqs, **self.config.filterbank)

    def extra_repr(self) -> str:
        return f"iterations={self.iterations}, momentum={self.momentum}, seed={self.seed}"

    @torch.no_grad()
    def forward(
        self,
        log_mel: Float[Tensor, "batch frames mels"],
        padding: Bool[Tensor, "batch frames"] | None = None,
    ) -> Float[Tensor, "batch samples"]:
        """Waveforms of a right-padded batch of log-mels.

        Args:
            log_mel: ``[batch, frames, n_mels]`` natural-log mel magnitudes.
            padding: ``[batch, frames]``, ``True`` at padded frames (default: none).

        Returns:
            ``[batch, frames * hop]`` float32 audio; samples from ``real_frames * hop`` on are 0.
        """
        from torchaudio.functional import griffinlim

        cfg = self.config
        if log_mel.ndim != 3 or log_mel.shape[-1] != cfg.n_mels:
            raise ValueError(
                f"expected log-mels of shape [batch, frames, {cfg.n_mels}], "
                f"got {tuple(log_mel.shape)}"
            )
        batch, frames, _ = log_mel.shape
        mel = torch.exp(log_mel.float())
        if padding is not None:
            lengths = padding_to_lengths(padding.to(log_mel.device))
            mel = mel.masked_fill(rearrange(padding, "b t -> b t 1"), 0.0)
        else:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=log_mel.device)
        linear = self.inverse_mel(rearrange(mel, "b t m -> b m t"))  # [batch, n_freqs, frames]
        # One silent frame more, so that the STFT of ``frames * hop`` samples has the same number
        # of frames (``1 + samples // hop``) as the magnitudes Griffin-Lim is asked to match.
        linear = torch.nn.functional.pad(linear, (0, 1))
        device = linear.device
        with torch.random.fork_rng(
            devices=[] if device.type == "cpu" else [device],
            enabled=self.seed is not None,
            device_type=device.type,
        ):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            wave = griffinlim(
                linear,
                window=self.window,
                n_fft=cfg.n_fft,
                hop_length=cfg.hop,
                win_length=cfg.win_length,
                power=1.0,
                n_iter=self.iterations,
                momentum=self.momentum,
                length=frames * cfg.hop,
                rand_init=self.rand_init,
            )
        return wave.masked_fill(lengths_to_padding(lengths * cfg.hop, wave.shape[-1]), 0.0)

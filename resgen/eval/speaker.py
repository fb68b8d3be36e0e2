"""Speaker similarity: speaker embeddings behind the :class:`SpeakerEncoder` protocol.

:class:`ResemblyzerEncoder` is Resemblyzer's GE2E speaker encoder (a 3-layer LSTM over 40-channel
log-mel frames, 256-d output; weights ``pretrained.pt`` inside the ``resemblyzer`` wheel). Its
preprocessing is Resemblyzer's own ``preprocess_wav``: resample to 16 kHz, normalise the volume
to -30 dBFS, and remove silences longer than about 0.2 s with WebRTC VAD. The utterance
embedding is the L2-normalised mean of the embeddings of 1.6 s windows with 50 % overlap. The
similarity of two utterances is the cosine of their embeddings (:func:`cosine_similarity`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from resgen.data.audio_io import resample

__all__ = ["SpeakerEncoder", "ResemblyzerEncoder", "cosine_similarity", "speaker_similarity"]


@runtime_checkable
class SpeakerEncoder(Protocol):
    """Maps one utterance to a speaker embedding.

    Attributes:
        name: identifies the encoder (reported beside the similarity).
    """

    name: str

    def embed(self, audio: Float[Tensor, " samples"], sample_rate: int) -> Float[Tensor, " emb"]:
        """The speaker embedding of a mono ``[samples]`` waveform at ``sample_rate`` Hz."""
        ...


class ResemblyzerEncoder:
    """Resemblyzer's pretrained GE2E speaker encoder (256-d, L2-normalised), offline.

    Args:
        device: where the LSTM runs.
    """

    name: str = "resemblyzer-ge2e"
    sample_rate: int = 16_000

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._encoder = None

    def _resemblyzer(self):
        if self._encoder is None:
            try:
                from resemblyzer import VoiceEncoder
            except ImportError as err:
                raise ModuleNotFoundError(
                    "resemblyzer is not installed: run `bash tools/install_eval.sh "
                    ".venv/bin/python` (resemblyzer==0.1.4 --no-deps with webrtcvad-wheels)"
                ) from err
            self._encoder = VoiceEncoder(self.device, verbose=False)
        return self._encoder

    def embed(self, audio: Float[Tensor, " samples"], sample_rate: int) -> Float[Tensor, " 256"]:
        """Embed one utterance.

        Args:
            audio: ``[samples]`` mono waveform in ``[-1, 1]``.
            sample_rate: its rate in Hz (resampled to 16 kHz).

        Returns:
            ``[256]`` float32 unit-norm embedding.

        Raises:
            ValueError: on empty or non-finite audio, or audio with no voiced part.
        """
        if audio.ndim != 1 or audio.numel() == 0:
            raise ValueError(f"audio must be a non-empty mono [samples], got {list(audio.shape)}")
        if not torch.isfinite(audio).all():
            raise ValueError("audio contains NaN or infinity")
        from resemblyzer import preprocess_wav

        wav = resample(audio.detach().cpu(), sample_rate, self.sample_rate).numpy()
        wav = preprocess_wav(wav.astype(np.float32), source_sr=self.sample_rate)
        if wav.size == 0:
            raise ValueError("no voiced audio left after silence removal")
        emb = self._resemblyzer().embed_utterance(wav)
        return torch.from_numpy(np.asarray(emb, dtype=np.float32))


def cosine_similarity(a: Float[Tensor, " emb"], b: Float[Tensor, " emb"]) -> float:
    """Cosine similarity of two embeddings, in float64.

    Args:
        a: ``[emb]`` first embedding.
        b: ``[emb]`` second embedding.

    Returns:
        ``a.b / (|a| |b|)`` in ``[-1, 1]``.
    """
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    norm = a64.norm() * b64.norm()
    if norm == 0:
        raise ValueError("cosine similarity of a zero vector is undefined")
    return float((a64 @ b64) / norm)


def speaker_similarity(
    encoder: SpeakerEncoder,
    audio: Float[Tensor, " samples"],
    reference: Float[Tensor, " ref_samples"],
    sample_rate: int,
    reference_rate: int | None = None,
) -> float:
    """Cosine similarity of the speaker embeddings of two utterances.

    Args:
        encoder: any :class:`SpeakerEncoder`.
        audio: ``[samples]`` generated (or test) utterance.
        reference: ``[ref_samples]`` reference utterance of the target speaker.
        sample_rate: rate of ``audio``.
        reference_rate: rate of ``reference`` (default: ``sample_rate``).

    Returns:
        The similarity in ``[-1, 1]`` (higher is more alike).
    """
    ref_rate = sample_rate if reference_rate is None else reference_rate
    return cosine_similarity(encoder.embed(audio, sample_rate), encoder.embed(reference, ref_rate))

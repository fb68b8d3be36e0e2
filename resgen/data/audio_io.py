"""Reading audio and transcripts for the speech evaluators.

Audio is returned as a mono float32 waveform in ``[-1, 1]`` and its sample rate. Files are read with
``soundfile`` when it is installed (WAV, FLAC, OGG, ...), otherwise with the standard library's
``wave`` (integer PCM WAV only). Multi-channel audio is averaged to mono.
"""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from resgen.files import atomic_write

__all__ = [
    "AUDIO_SUFFIXES",
    "list_audio",
    "load_audio",
    "write_wav",
    "resample",
    "read_transcripts",
    "match_audio_files",
]

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
_SPHINX_LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<id>[^()\s]+)\)\s*$")


def list_audio(directory: str | Path) -> list[Path]:
    """Audio files of a folder (not recursive), sorted by name.

    Args:
        directory: the folder.

    Returns:
        Paths whose suffix is one of :data:`AUDIO_SUFFIXES`.

    Raises:
        NotADirectoryError: when ``directory`` is not a folder.
        ValueError: when it holds no audio file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"not a folder of audio files: {directory}")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {directory}")
    return files


def _read_wave(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as f:
        width, channels, rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
        raw = f.readframes(f.getnframes())
    if width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        dtype = np.int16 if width == 2 else np.int32
        data = np.frombuffer(raw, dtype).astype(np.float32) / float(np.iinfo(dtype).max + 1)
    else:
        raise ValueError(f"{path}: unsupported {8 * width}-bit WAV (install soundfile)")
    return data.reshape(-1, channels), rate


def _read(path: Path) -> tuple[np.ndarray, int]:
    """``([samples, channels], rate)`` of a file, with soundfile when it is installed."""
    try:
        import soundfile
    except ImportError:
        return _read_wave(path)
    return soundfile.read(str(path), dtype="float32", always_2d=True)


def load_audio(path: str | Path) -> tuple[Float[Tensor, " samples"], int]:
    """Read an audio file as a mono float32 waveform.

    Args:
        path: the file.

    Returns:
        ``([samples], sample_rate)``; values in ``[-1, 1]``.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it is not a readable audio file or holds no samples.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no audio file at {path}")
    try:
        data, rate = _read(path)
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - each back-end has its own errors for a bad file
        raise ValueError(
            f"{path} is not a readable audio file ({type(error).__name__}: {error})"
        ) from error
    if data.shape[0] == 0:
        raise ValueError(f"{path} holds no audio samples")
    return torch.from_numpy(np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)), int(rate)


def write_wav(path: str | Path, audio: Float[Tensor, " samples"], sample_rate: int) -> None:
    """Write a mono waveform in ``[-1, 1]`` as a 16-bit PCM WAV (peak-limited to 0.99), whole or
    not at all (:func:`~resgen.files.atomic_write`)."""
    audio = audio.detach().float().cpu()
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    pcm = (audio.numpy() * 32767.0).round().astype("<i2")

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(sample_rate)
            handle.writeframes(pcm.tobytes())

    atomic_write(path, write)


def resample(
    audio: Float[Tensor, " samples"], rate: int, target_rate: int
) -> Float[Tensor, " new_samples"]:
    """Resample a mono waveform (windowed-sinc, :func:`torchaudio.functional.resample`).

    Args:
        audio: ``[samples]`` waveform.
        rate: its sample rate.
        target_rate: the wanted rate.

    Returns:
        ``[new_samples]`` float32 waveform (the input itself when the rates are equal).
    """
    if rate <= 0 or target_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} -> {target_rate}")
    audio = audio.to(torch.float32)
    if rate == target_rate:
        return audio
    import torchaudio.functional

    return torchaudio.functional.resample(audio, rate, target_rate)


def read_transcripts(path: str | Path) -> dict[str, str]:
    """Read reference transcripts, one utterance per line.

    Two line formats are accepted (blank lines are skipped):

    * sphinx style, ``text (ID)`` (e.g. ``<s> he was not ... </s> (utt-0880)``; the ``<s>``
      markers are removed later by the text normaliser);
    * Kaldi style, ``ID text`` (the first whitespace-separated token is the ID).

    Args:
        path: the transcript file (UTF-8).

    Returns:
        ``{ID: text}``, in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: on a duplicate ID, an empty file, or a file that is not UTF-8 text.
    """
    transcripts: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a UTF-8 text file of transcripts ({error})") from error
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        match = _SPHINX_LINE.match(line)
        if match:
            utt_id, text = match.group("id"), match.group("text")
        else:
            utt_id, _, text = line.partition(" ")
        if utt_id in transcripts:
            raise ValueError(f"{path}:{number}: duplicate utterance ID {utt_id!r}")
        transcripts[utt_id] = text.strip()
    if not transcripts:
        raise ValueError(f"{path} holds no transcripts")
    return transcripts


def _first(names: list[str], shown: int = 10) -> str:
    return ", ".join(names[:shown]) + (" ..." if len(names) > shown else "")


def match_audio_files(directory: str | Path, transcripts: dict[str, str]) -> list[tuple[str, Path]]:
    """Pair each transcript ID with the audio file of that name (without suffix) in a folder.

    Args:
        directory: folder of audio files.
        transcripts: ``{ID: text}`` as from :func:`read_transcripts`.

    Returns:
        ``(ID, path)`` pairs in transcript order.

    Raises:
        ValueError: when some ID has no audio file, or some audio file no transcript (it would
            be left out of the score silently); up to 10 of them are named.
    """
    files = {p.stem: p for p in list_audio(directory)}
    missing = [utt_id for utt_id in transcripts if utt_id not in files]
    if missing:
        raise ValueError(
            f"{len(missing)} transcript IDs have no audio in {directory}: {_first(missing)}"
        )
    untranscribed = [name for name in files if name not in transcripts]
    if untranscribed:
        raise ValueError(
            f"{len(untranscribed)} audio files of {directory} have no transcript: "
            f"{_first(untranscribed)}"
        )
    return [(utt_id, files[utt_id]) for utt_id in transcripts]

"""The manifest format of a speech corpus on disk: ``manifest.jsonl`` (one
:class:`ManifestRecord` per utterance) and ``splits.json``.

The synthetic corpus (:func:`resgen.data.speech_corpus.builder.build_corpus`) and LibriTTS
(:func:`resgen.data.libritts.write_libritts_manifest`) both write it, so one training path
reads both (:func:`read_manifest`).
"""

from __future__ import annotations

import json
import wave
from collections.abc import Sequence
from pathlib import Path

from attrs import asdict, field, frozen, validators

from resgen.files import atomic_write

__all__ = ["ManifestRecord", "write_manifest", "write_splits", "read_manifest", "wav_info"]


# =========================================================================== manifest
@frozen
class ManifestRecord:
    """One line of ``manifest.jsonl``.

    Attributes:
        id: utterance id (unique in the manifest).
        audio: path of the WAV, relative to the manifest's folder (POSIX separators).
        text: the transcript.
        phonemes: its phoneme symbols (:class:`resgen.codecs.phonemes.PhonemeTokenizer`).
        speaker: speaker id (a pseudo-speaker of the synthetic corpus).
        base_voice: the real person behind the speaker (equal to ``speaker`` for real data).
        duration: seconds of audio.
        split: ``"train"`` or ``"test"``.
    """

    id: str
    audio: str
    text: str
    phonemes: tuple[str, ...] = field(converter=tuple)
    speaker: str
    base_voice: str
    duration: float
    split: str = field(default="train", validator=validators.in_(("train", "test")))

    def to_json(self) -> str:
        """The record as one JSON line (no newline)."""
        data = asdict(self)
        data["phonemes"] = list(self.phonemes)
        return json.dumps(data, ensure_ascii=False)


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_manifest(records: Sequence[ManifestRecord], path: str | Path) -> Path:
    """Write ``records`` as JSON lines, atomically.

    Args:
        records: the utterances (ids must be unique).
        path: the ``manifest.jsonl`` to write.

    Returns:
        ``path``.

    Raises:
        ValueError: on a repeated id.
    """
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:10]
        raise ValueError(f"repeated utterance ids in the manifest: {dupes}")
    path = Path(path)
    _atomic_write_text(path, "".join(r.to_json() + "\n" for r in records))
    return path


def write_splits(records: Sequence[ManifestRecord], path: str | Path) -> Path:
    """Write ``splits.json``: per split, its speakers, base voices, utterance ids and hours.

    Args:
        records: the manifest's records.
        path: the file to write (atomically).

    Returns:
        ``path``.
    """
    info = {}
    for split in ("train", "test"):
        chosen = [r for r in records if r.split == split]
        info[split] = {
            "speakers": sorted({r.speaker for r in chosen}),
            "base_voices": sorted({r.base_voice for r in chosen}),
            "utterances": [r.id for r in chosen],
            "hours": round(sum(r.duration for r in chosen) / 3600, 4),
        }
    path = Path(path)
    _atomic_write_text(path, json.dumps(info, indent=1) + "\n")
    return path


def read_manifest(path: str | Path) -> list[ManifestRecord]:
    """Read a ``manifest.jsonl`` written by :func:`write_manifest`.

    Args:
        path: the manifest.

    Returns:
        The records, in file order (``audio`` stays relative: resolve it against
        ``Path(path).parent``).

    Raises:
        FileNotFoundError: when the manifest does not exist.
        ValueError: on a malformed line (its number is named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(ManifestRecord(**json.loads(line)))
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not a manifest record: {error}") from error
    return records


def wav_info(path: str | Path) -> tuple[int, int, float]:
    """``(sample_rate, channels, seconds)`` of a PCM WAV file, from its header.

    Raises:
        ValueError: when the file is not a readable PCM WAV.
    """
    try:
        with wave.open(str(path), "rb") as handle:
            rate, channels, frames = (
                handle.getframerate(),
                handle.getnchannels(),
                handle.getnframes(),
            )
    except (wave.Error, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable PCM WAV: {error}") from error
    return rate, channels, frames / rate

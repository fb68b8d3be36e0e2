"""LibriTTS-style speech folders: the full-scale data path of the TTS recipe.

The layout is LibriTTS's (``openslr.org/60``)::

    root/[subset/]<speaker>/<chapter>/<speaker>_<chapter>_<paragraph>_<sentence>.wav
                                      <speaker>_<chapter>_<paragraph>_<sentence>.normalized.txt
                                      <speaker>_<chapter>_<paragraph>_<sentence>.original.txt

:func:`load_libritts` lists the utterances (the normalised transcript is preferred, the original
one is the fallback); :func:`write_libritts_manifest` writes the same ``manifest.jsonl`` format
(:mod:`resgen.data.manifest`) as the synthetic corpus, so one training path reads both. The data
itself is not downloaded by the library: point ``root`` at a copy you have.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path

from attrs import field, frozen

from resgen.data.manifest import ManifestRecord, wav_info, write_manifest, write_splits

__all__ = ["Utterance", "load_libritts", "write_libritts_manifest"]


def _non_empty(instance: object, attribute: object, value: str) -> None:
    if not value:
        raise ValueError(f"{getattr(attribute, 'name', 'value')} must not be empty")


@frozen
class Utterance:
    """One utterance of a LibriTTS-style folder.

    Attributes:
        path: the WAV file.
        text: its transcript (normalised when available).
        speaker: speaker id (the first folder level).
        chapter: chapter id (the second folder level).
        id: utterance id (the file name without ``.wav``).
    """

    path: Path = field(converter=Path)
    text: str = field(validator=_non_empty)
    speaker: str = field(validator=_non_empty)
    chapter: str = field(validator=_non_empty)
    id: str = field(validator=_non_empty)


def _transcript(wav: Path) -> str | None:
    stem = wav.name[: -len(".wav")]
    for suffix in (".normalized.txt", ".original.txt"):
        candidate = wav.with_name(stem + suffix)
        if candidate.is_file():
            text = " ".join(candidate.read_text(encoding="utf-8").split())
            if not text:
                raise ValueError(f"the transcript {candidate} is empty")
            return text
    return None


def load_libritts(root: str | Path, subset: str | Sequence[str] | None = None) -> list[Utterance]:
    """List the utterances of a LibriTTS-style folder.

    Args:
        root: the folder holding ``<speaker>/<chapter>/`` folders, or their parent when
            ``subset`` is given.
        subset: one or more subset folders under ``root`` (e.g. ``"train-clean-100"``); ``None``
            reads ``root`` itself.

    Returns:
        The utterances, sorted by speaker, chapter and id.

    Raises:
        FileNotFoundError: when ``root`` (or a subset folder) does not exist.
        ValueError: when no utterance is found, a file name does not follow
            ``<speaker>_<chapter>_...``, or WAV files have no transcript (they are named).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LibriTTS root folder not found: {root}")
    names = [subset] if isinstance(subset, str) else list(subset or [])
    folders = [root / name for name in names] if names else [root]
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"LibriTTS subset folder not found: {folder}")
    utterances: list[Utterance] = []
    missing: list[str] = []
    for folder in folders:
        for wav in sorted(folder.glob("*/*/*.wav")):
            speaker, chapter = wav.parent.parent.name, wav.parent.name
            utt_id = wav.name[: -len(".wav")]
            parts = utt_id.split("_")
            if len(parts) < 3 or parts[0] != speaker or parts[1] != chapter:
                raise ValueError(
                    f"{wav}: the file name should be {speaker}_{chapter}_<utterance>.wav "
                    "(LibriTTS layout <speaker>/<chapter>/<speaker>_<chapter>_<utterance>.wav)"
                )
            text = _transcript(wav)
            if text is None:
                missing.append(str(wav))
                continue
            utterances.append(Utterance(wav, text, speaker, chapter, utt_id))
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ValueError(
            f"{len(missing)} WAV files have no transcript (.normalized.txt or .original.txt): "
            f"{shown}"
        )
    if not utterances:
        raise ValueError(
            f"no utterances under {', '.join(map(str, folders))}: expected "
            "<speaker>/<chapter>/<speaker>_<chapter>_<utterance>.wav files"
        )
    return sorted(utterances, key=lambda u: (u.speaker, u.chapter, u.id))


def write_libritts_manifest(
    utterances: Sequence[Utterance],
    out_dir: str | Path,
    *,
    test_speakers: Collection[str] = (),
    skip_bad_text: bool = False,
) -> Path:
    """Write ``manifest.jsonl`` and ``splits.json`` for LibriTTS utterances.

    The records have the synthetic corpus's format
    (:class:`~resgen.data.speech_corpus.builder.ManifestRecord`): audio paths relative to
    ``out_dir``, phonemes from
    :class:`~resgen.codecs.phonemes.PhonemeTokenizer`, ``base_voice`` equal to the speaker.

    Args:
        utterances: from :func:`load_libritts`.
        out_dir: folder of the manifest (created); the audio is not copied.
        test_speakers: speakers of the test split (zero-shot: never in training).
        skip_bad_text: skip, with one warning, utterances whose text the front-end rejects
            (otherwise the first one is an error that names it).

    Returns:
        The manifest's path.

    Raises:
        ValueError: for an empty ``utterances``, an unknown test speaker, or (unless
            ``skip_bad_text``) a transcript the front-end cannot read.
    """
    from resgen.codecs.phonemes import PhonemeTokenizer

    if not utterances:
        raise ValueError("no utterances to write")
    speakers = {u.speaker for u in utterances}
    unknown = sorted(set(test_speakers) - speakers)
    if unknown:
        raise ValueError(f"test speakers {unknown} have no utterances")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = PhonemeTokenizer()
    records, skipped = [], []
    for utt in utterances:
        try:
            phonemes = tokenizer.phonemize(utt.text)
        except ValueError as error:
            if not skip_bad_text:
                raise ValueError(f"{utt.id} ({utt.path}): {error}") from error
            skipped.append(utt.id)
            continue
        _, _, seconds = wav_info(utt.path)
        records.append(
            ManifestRecord(
                id=utt.id,
                audio=Path(os.path.relpath(utt.path.resolve(), out.resolve())).as_posix(),
                text=utt.text,
                phonemes=phonemes,
                speaker=utt.speaker,
                base_voice=utt.speaker,
                duration=round(seconds, 4),
                split="test" if utt.speaker in test_speakers else "train",
            )
        )
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} utterances whose text the front-end cannot read: "
            f"{', '.join(skipped[:5])}",
            stacklevel=2,
        )
    manifest = write_manifest(records, out / "manifest.jsonl")
    write_splits(records, out / "splits.json")
    tokenizer.vocabulary.save(out / "phonemes.json")
    return manifest

"""Phone durations from the synthesisers of the TTS corpus (the *aligned* variant's text).

The TTS recipe's main model learns alignment by itself. Its aligned variant
(``TTSSynthConfig(text_alignment="synthesizer")``) instead reads where each phone lies in time
from the synthesiser that spoke it: flite prints its segments with their end times (``-psdur``)
and festival saves them (``utt.save.segs``). Both use the CMU phone set (``pau`` for silence),
so one phone vocabulary serves every voice. No aligner looks at the audio.

The timing belongs to the synthesiser's own rendering of the text, so it is exact for the corpus
audio: the pitch shift of a pseudo-speaker keeps durations and its tempo change divides them by
the tempo factor. hibari-tts gives no durations; its utterances have no alignment and the aligned
variant leaves them out.

:func:`corpus_alignments` computes the alignment of every utterance of a corpus once and caches
it next to the manifest (``alignments.jsonl``, keyed by the corpus's configuration hash).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from attrs import field, frozen
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from resgen.codecs.phonemes import (
    SPECIAL_SYMBOLS,
    PhonemeVocabulary,
)
from resgen.data.manifest import ManifestRecord
from resgen.data.speech_corpus.voices import VOICES, Voice, run_program, scheme_string

__all__ = [
    "PhoneAlignment",
    "AlignmentUnavailableError",
    "synthesizer_alignments",
    "speaker_voice",
    "corpus_alignments",
    "phone_vocabulary",
    "ALIGNED_LANGUAGE",
]

ALIGNED_LANGUAGE = "cmu-phones"
"""``language`` of the phone vocabulary of the aligned variant (synthesiser phones, not gruut)."""

_CACHE = "alignments.jsonl"
_TAG = re.compile(r"^p(?P<pitch>[+-]\d+)-t(?P<tempo>\d+(?:\.\d+)?)$")


class AlignmentUnavailableError(RuntimeError):
    """The synthesiser of a voice does not report phone durations (hibari-tts)."""


def _floats(values: Iterable[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _check_ends(instance: PhoneAlignment, attribute: object, ends: tuple[float, ...]) -> None:
    if len(ends) != len(instance.phones) or not ends:
        raise ValueError(f"{len(instance.phones)} phones need as many end times, got {len(ends)}")
    if ends[0] <= 0 or any(b <= a for a, b in zip(ends, ends[1:])):
        raise ValueError(f"phone end times must be positive and increasing, got {ends}")


@frozen
class PhoneAlignment:
    """The phones of one utterance and where each ends.

    Attributes:
        phones: CMU phone symbols in order (``"pau"`` is a pause).
        ends: end time of each phone in seconds, increasing; the first phone starts at 0.
    """

    phones: tuple[str, ...] = field(converter=tuple)
    ends: tuple[float, ...] = field(converter=_floats, validator=_check_ends)

    @property
    def duration(self) -> float:
        """Seconds from the first phone's start to the last one's end."""
        return self.ends[-1]

    def stretched(self, factor: float) -> PhoneAlignment:
        """The same phones with every time multiplied by ``factor`` (> 0)."""
        if factor <= 0:
            raise ValueError(f"a stretch factor must be > 0, got {factor}")
        return PhoneAlignment(self.phones, tuple(t * factor for t in self.ends))

    def fractions(self) -> Float[Tensor, " phones"]:
        """``[phones]`` end of each phone as a fraction of the duration (the last is 1): what
        :func:`~resgen.networks.tts_transformer.spread_text` takes for an aligned segment."""
        return torch.tensor(self.ends, dtype=torch.float32) / self.ends[-1]

    def to_dict(self) -> dict[str, list]:
        """A JSON-ready dict (``phones``, ``ends``)."""
        return {"phones": list(self.phones), "ends": [round(t, 4) for t in self.ends]}


def _parse_flite(output: str, text: str) -> PhoneAlignment:
    """flite ``-psdur`` prints ``phone:end phone:end ...`` on one line."""
    pairs = [item.rsplit(":", 1) for item in output.split()]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise RuntimeError(f"flite printed no segments for {text!r}: {output[:200]!r}")
    return PhoneAlignment([p for p, _ in pairs], [float(t) for _, t in pairs])


def _parse_festival_segs(content: str, text: str) -> PhoneAlignment:
    """An ESPS label file (``utt.save.segs``): a header up to ``#``, then ``end colour phone``."""
    _, _, body = content.partition("#\n")
    rows = [line.split() for line in body.splitlines() if line.strip()]
    if not rows or any(len(r) != 3 for r in rows):
        raise RuntimeError(f"festival saved no segments for {text!r}")
    return PhoneAlignment([r[2] for r in rows], [float(r[0]) for r in rows])


def synthesizer_alignments(
    voice: str | Voice, texts: Sequence[str], *, timeout_s: float = 60.0
) -> list[PhoneAlignment]:
    """The phones and phone end times the synthesiser of ``voice`` gives each of ``texts``.

    Args:
        voice: a voice of :data:`~resgen.data.speech_corpus.voices.VOICES` (or its name).
        texts: sentences.
        timeout_s: seconds allowed per sentence.

    Returns:
        One :class:`PhoneAlignment` per text, timed as the voice speaks it unchanged.

    Raises:
        AlignmentUnavailableError: the voice's engine gives no durations (hibari-tts).
        SynthesizerNotFoundError: flite or festival is not installed.
        RuntimeError: the synthesiser failed.
    """
    voice = VOICES[voice] if isinstance(voice, str) else voice
    if voice.engine == "flite":
        return [
            _parse_flite(
                run_program(
                    ["flite", "-voice", voice.voice_id, "-psdur", "-t", text, "-o", "none"],
                    timeout_s,
                    f"flite ({voice.voice_id})",
                ),
                text,
            )
            for text in texts
        ]
    if voice.engine == "festival":
        if not texts:
            return []
        with tempfile.TemporaryDirectory() as folder:
            segs = [Path(folder) / f"{i}.segs" for i in range(len(texts))]
            lines = [f"({voice.voice_id})"]
            for text, path in zip(texts, segs):
                utterance = f"(utt.synth (Utterance Text {scheme_string(text)}))"
                lines.append(f"(utt.save.segs {utterance} {scheme_string(str(path))})")
            script = Path(folder) / "align.scm"
            script.write_text("\n".join(lines) + "\n", encoding="utf-8")
            run_program(
                ["festival", "--batch", str(script)],
                timeout_s * max(1, len(texts)),
                f"festival ({voice.voice_id})",
            )
            return [
                _parse_festival_segs(p.read_text(encoding="utf-8"), t) for p, t in zip(segs, texts)
            ]
    raise AlignmentUnavailableError(f"{voice.name} ({voice.engine}) reports no phone durations")


def speaker_voice(speaker: str) -> tuple[Voice, float] | None:
    """The corpus voice and tempo factor of a pseudo-speaker name such as
    ``"flite-rms-p+300-t0.90"``; ``None`` for a speaker that is not one (e.g. LibriTTS)."""
    for name, voice in VOICES.items():
        if not speaker.startswith(name + "-"):
            continue
        tag = speaker[len(name) + 1 :]
        if tag == "orig":
            return voice, 1.0
        match = _TAG.match(tag)
        if match:
            return voice, float(match["tempo"])
    return None


def _corpus_hash(corpus_dir: Path) -> str | None:
    stamp = corpus_dir / "corpus.json"
    if not stamp.is_file():
        return None
    return json.loads(stamp.read_text(encoding="utf-8")).get("hash")


def corpus_alignments(
    corpus_dir: str | Path, records: Iterable[ManifestRecord], *, verbose: bool = True
) -> dict[str, PhoneAlignment]:
    """Alignment of every utterance of a synthetic corpus whose synthesiser gives durations.

    Computed once (flite and festival run again on the texts, without audio) and cached in
    ``corpus_dir/alignments.jsonl``; the cache is rebuilt when the corpus's hash changes or it
    lacks one of ``records``.

    Args:
        corpus_dir: the corpus folder (with its ``corpus.json`` stamp).
        records: its manifest records.
        verbose: show a progress bar.

    Returns:
        ``{utterance id: PhoneAlignment}`` in the corpus audio's time (tempo applied); records of
        hibari-tts or of unknown speakers are absent.
    """
    corpus_dir = Path(corpus_dir)
    groups: dict[str, list[tuple[ManifestRecord, float]]] = {}
    for record in records:
        found = speaker_voice(record.speaker)
        if found is not None and found[0].engine in ("flite", "festival"):
            groups.setdefault(found[0].name, []).append((record, found[1]))
    wanted = [record.id for members in groups.values() for record, _ in members]
    digest = _corpus_hash(corpus_dir)
    cache = corpus_dir / _CACHE
    if digest is not None and cache.is_file():
        lines = cache.read_text(encoding="utf-8").splitlines()
        if lines and json.loads(lines[0]).get("hash") == digest:
            stored = {
                (row := json.loads(line))["id"]: PhoneAlignment(row["phones"], row["ends"])
                for line in lines[1:]
            }
            if all(k in stored for k in wanted):
                return {k: stored[k] for k in wanted}
    chunks = [
        (name, members[start : start + 60])
        for name, members in groups.items()
        for start in range(0, len(members), 60)
    ]
    bar = tqdm(total=len(wanted), desc="alignments", disable=not verbose)

    def align(job: tuple[str, list[tuple[ManifestRecord, float]]]) -> list[PhoneAlignment]:
        timed = synthesizer_alignments(job[0], [record.text for record, _ in job[1]])
        bar.update(len(job[1]))
        return timed

    # two synthesiser processes at a time: the work is in them, one per core
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(align, chunks))
    bar.close()
    out: dict[str, PhoneAlignment] = {}
    for (_, chunk), timed in zip(chunks, results):
        for (record, tempo), alignment in zip(chunk, timed):
            # rounded as the cache stores it, so a resumed run reads the very same timing
            out[record.id] = PhoneAlignment(**alignment.stretched(1.0 / tempo).to_dict())
    rows = [json.dumps({"hash": digest})]
    rows += [json.dumps({"id": k, **v.to_dict()}) for k, v in out.items()]
    tmp = cache.with_name(f".{cache.name}.tmp")
    tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    os.replace(tmp, cache)
    return out


def phone_vocabulary(alignments: Iterable[PhoneAlignment]) -> PhonemeVocabulary:
    """The phone vocabulary of the aligned variant: the specials, then every phone, sorted."""
    phones = sorted({p for a in alignments for p in a.phones} - set(SPECIAL_SYMBOLS))
    return PhonemeVocabulary((*SPECIAL_SYMBOLS, *phones), language=ALIGNED_LANGUAGE)

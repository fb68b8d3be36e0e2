"""The aligned variant's text: synthesiser phone timing and its cache.

Needs flite, festival and sox (``tools/install_tts.sh``), like the corpus tests.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest
import torch

from resgen.data.manifest import read_manifest
from resgen.data.speech_corpus.builder import CORPUS_PRESETS, CorpusConfig, build_corpus
from resgen.data.speech_corpus.phone_alignments import (
    PhoneAlignment,
    corpus_alignments,
    speaker_voice,
    synthesizer_alignments,
)
from resgen.data.speech_corpus.voices import VOICES

TEXT = "Where did Anna play at noon?"


def test_phone_alignment_checks_and_stretches() -> None:
    a = PhoneAlignment(["pau", "hh", "ay"], [0.2, 0.3, 0.8])
    assert a.duration == 0.8
    assert a.stretched(2.0).ends == (0.4, 0.6, 1.6)
    torch.testing.assert_close(a.fractions(), torch.tensor([0.25, 0.375, 1.0]))
    with pytest.raises(ValueError, match="increasing"):
        PhoneAlignment(["a", "b"], [0.3, 0.3])
    with pytest.raises(ValueError, match="end times"):
        PhoneAlignment(["a", "b"], [0.3])
    with pytest.raises(ValueError, match="> 0"):
        a.stretched(0.0)


def _wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as handle:
        return handle.getnframes() / handle.getframerate()


@pytest.mark.parametrize("voice", ["flite-rms", "festival-ked"])
def test_synthesizer_timing_matches_its_audio(voice: str, tmp_path: Path) -> None:
    (alignment,) = synthesizer_alignments(voice, [TEXT])
    assert alignment.phones[0] == alignment.phones[-1] == "pau"
    assert {"n", "uw", "p", "l"} <= set(alignment.phones)
    # the same synthesiser's audio of the sentence lasts as long as its phones (within 3 %)
    config = CorpusConfig(
        voices=(voice, "flite-kal16"),
        optional_voices=(),
        variants=CORPUS_PRESETS["smoke"].variants,
        utterances_per_speaker=2,
        test_bases=(VOICES[voice].base,),
    )
    corpus = build_corpus(tmp_path, config)
    records = read_manifest(corpus)
    timed = corpus_alignments(tmp_path, records, verbose=False)
    assert set(timed) == {r.id for r in records}
    for record in records:
        seconds = _wav_seconds(tmp_path / record.audio)
        assert abs(timed[record.id].duration - seconds) < 0.03 * seconds + 0.15, record.id


def test_corpus_alignments_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CORPUS_PRESETS["smoke"]
    manifest = build_corpus(tmp_path, config)
    records = read_manifest(manifest)
    first = corpus_alignments(tmp_path, records, verbose=False)
    assert (tmp_path / "alignments.jsonl").is_file()
    header = json.loads((tmp_path / "alignments.jsonl").read_text().splitlines()[0])
    assert header["hash"] == json.loads((tmp_path / "corpus.json").read_text())["hash"]

    def no_synthesis(*args: object, **kw: object) -> None:
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(
        "resgen.data.speech_corpus.phone_alignments.synthesizer_alignments", no_synthesis
    )
    again = corpus_alignments(tmp_path, records, verbose=False)
    assert {k: v.to_dict() for k, v in again.items()} == {k: v.to_dict() for k, v in first.items()}
    # tempo 0.9 slows speech down: its phones last 1/0.9 as long as the original's would
    slow = next(r for r in records if r.speaker.endswith("t0.90"))
    voice, tempo = speaker_voice(slow.speaker)
    assert tempo == pytest.approx(0.9)
    monkeypatch.undo()
    (plain,) = synthesizer_alignments(voice, [slow.text])
    assert first[slow.id].duration == pytest.approx(plain.duration / 0.9, rel=1e-3)


def test_speaker_voice_names() -> None:
    voice, tempo = speaker_voice("flite-rms-p+300-t0.90")
    assert voice.name == "flite-rms" and tempo == pytest.approx(0.9)
    assert speaker_voice("festival-slt-hts-orig")[0].name == "festival-slt-hts"
    assert speaker_voice("hibari-heart-orig")[0].engine == "hibari"
    assert speaker_voice("1034") is None  # a LibriTTS speaker

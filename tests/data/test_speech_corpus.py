"""The sentence grammar and the synthetic speech corpus (smoke size).

flite and sox must be installed (``tools/install_tts.sh``, run by ``make setup``).
"""

from __future__ import annotations

import json
import shutil
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from resgen.data.manifest import ManifestRecord, read_manifest
from resgen.data.speech_corpus.builder import CORPUS_PRESETS, CorpusConfig, Variant, build_corpus
from resgen.data.speech_corpus.grammar import SentenceGrammar
from resgen.data.speech_corpus.voices import VOICES, SynthesizerNotFoundError

SMOKE = CORPUS_PRESETS["smoke"]


# ------------------------------------------------------------------------ grammar
def test_grammar_is_seeded_and_deterministic() -> None:
    first = SentenceGrammar(seed=3).generate(50)
    assert first == SentenceGrammar(seed=3).generate(50)
    assert len(set(first)) == 50
    assert SentenceGrammar(seed=4).generate(50) != first
    assert SentenceGrammar(seed=3).generate(20) == first[:20]


def test_grammar_uses_only_its_vocabulary() -> None:
    grammar = SentenceGrammar(seed=0)
    vocabulary = grammar.vocabulary()
    assert 300 <= len(vocabulary) <= 2000
    for sentence in grammar.generate(1000):
        words = grammar.words(sentence)
        assert grammar.min_words <= len(words) <= grammar.max_words
        assert set(words) <= vocabulary, set(words) - vocabulary
        assert sentence[0].isupper() and sentence[-1] in ".?!"
        assert not any(ch.isdigit() for ch in sentence)


def test_grammar_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_words"):
        SentenceGrammar(min_words=10, max_words=5)
    with pytest.raises(ValueError, match=">= 0"):
        SentenceGrammar().generate(-1)


# ------------------------------------------------------------------------ config
def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown voices"):
        CorpusConfig(voices=("flite-nobody",))
    with pytest.raises(ValueError, match="test_bases"):
        CorpusConfig(voices=("flite-awb", "flite-rms"), test_bases=("slt",))
    with pytest.raises(ValueError, match="at least one"):
        CorpusConfig(voices=("flite-awb", "flite-rms"), test_bases=("awb", "rms"))
    with pytest.raises(ValueError, match="differ"):
        CorpusConfig(variants=(Variant(), Variant()))
    with pytest.raises(ValueError):
        CorpusConfig(workers=3)
    # same person, different synthesiser: one base speaker
    assert VOICES["flite-slt"].base == VOICES["festival-slt-hts"].base
    assert VOICES["flite-kal16"].base == VOICES["festival-kal"].base


def test_demo_preset_size() -> None:
    demo = CORPUS_PRESETS["demo"]
    assert len(demo.voices) * len(demo.variants) == 24
    assert demo.utterances_per_speaker == 200
    assert demo.test_bases == ("rms", "ked")


# ------------------------------------------------------------------------ the build
@pytest.fixture(scope="module")
def smoke_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("corpus")
    tick = time.perf_counter()
    manifest = build_corpus(out, SMOKE)
    seconds = time.perf_counter() - tick
    print(f"smoke corpus: {seconds:.1f} s")
    return manifest, seconds


def _read_wav(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path), "rb") as handle:
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
        return data.astype(np.float32) / 32768.0, handle.getframerate(), handle.getnchannels()


def test_manifest_fields_and_audio(smoke_corpus: tuple[Path, float]) -> None:
    manifest, _ = smoke_corpus
    records = read_manifest(manifest)
    speakers = len(SMOKE.voices) * len(SMOKE.variants)
    assert len(records) == speakers * SMOKE.utterances_per_speaker
    raw = json.loads(manifest.read_text(encoding="utf-8").splitlines()[0])
    assert set(raw) == {
        "id",
        "audio",
        "text",
        "phonemes",
        "speaker",
        "base_voice",
        "duration",
        "split",
    }
    assert len({r.speaker for r in records}) == speakers
    for record in records:
        assert isinstance(record, ManifestRecord)
        path = manifest.parent / record.audio
        assert not Path(record.audio).is_absolute() and path.is_file()
        audio, rate, channels = _read_wav(path)
        assert rate == 16000 and channels == 1
        assert abs(len(audio) / rate - record.duration) < 1e-3
        assert 0.5 < record.duration < 15
        assert np.sqrt(np.mean(audio**2)) > 0.01  # not silent
        assert record.phonemes and record.text


def test_split_is_zero_shot(smoke_corpus: tuple[Path, float]) -> None:
    manifest, _ = smoke_corpus
    records = read_manifest(manifest)
    train = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    assert train and test
    # test speakers are whole base voices, pitch/tempo variants included
    assert {r.base_voice for r in test} == set(SMOKE.test_bases)
    assert not {r.base_voice for r in train} & {r.base_voice for r in test}
    assert not {r.speaker for r in train} & {r.speaker for r in test}
    # sentences never cross the split
    assert not {r.text for r in train} & {r.text for r in test}
    splits = json.loads((manifest.parent / "splits.json").read_text())
    assert set(splits["test"]["utterances"]) == {r.id for r in test}
    assert set(splits["train"]["speakers"]) == {r.speaker for r in train}


def test_speakers_are_voices_times_variants(smoke_corpus: tuple[Path, float]) -> None:
    manifest, _ = smoke_corpus
    records = read_manifest(manifest)
    expected = {f"{v}-{variant.tag}" for v in SMOKE.voices for variant in SMOKE.variants}
    assert {r.speaker for r in records} == expected
    for r in records:
        voice = next(v for v in SMOKE.voices if r.speaker.startswith(v + "-"))
        assert r.base_voice == VOICES[voice].base


def test_cache_reuse_is_instant(smoke_corpus: tuple[Path, float], tmp_path: Path) -> None:
    manifest, _ = smoke_corpus
    before = manifest.stat().st_mtime_ns
    tick = time.perf_counter()
    assert build_corpus(manifest.parent, SMOKE) == manifest
    assert time.perf_counter() - tick < 0.5
    assert manifest.stat().st_mtime_ns == before
    # another configuration in the same folder is refused, not silently mixed
    other = CorpusConfig(
        voices=SMOKE.voices,
        optional_voices=(),
        variants=SMOKE.variants,
        test_bases=("rms",),
        utterances_per_speaker=1,
    )
    with pytest.raises(ValueError, match="another configuration"):
        build_corpus(manifest.parent, other)


def test_interrupted_build_resumes(smoke_corpus: tuple[Path, float], tmp_path: Path) -> None:
    manifest, _ = smoke_corpus
    copy = tmp_path / "copy"
    shutil.copytree(manifest.parent, copy)
    (copy / "corpus.json").unlink()  # as if killed before the end
    victim = copy / read_manifest(manifest)[0].audio
    victim.unlink()
    kept = copy / read_manifest(manifest)[1].audio
    kept_mtime = kept.stat().st_mtime_ns
    build_corpus(copy, SMOKE)
    assert victim.is_file() and kept.stat().st_mtime_ns == kept_mtime
    assert (copy / "corpus.json").is_file()


def test_missing_synthesiser_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import resgen.data.speech_corpus.builder as corpus

    real_which = shutil.which
    monkeypatch.setattr(
        corpus.shutil, "which", lambda name: None if name == "flite" else real_which(name)
    )
    with pytest.raises(SynthesizerNotFoundError, match="apt-get install flite"):
        build_corpus(tmp_path / "c", SMOKE)
    # an optional voice is skipped with a warning instead
    config = CorpusConfig(
        voices=("flite-awb", "festival-ked"),
        optional_voices=("flite-awb",),
        variants=(Variant(),),
        test_bases=("ked",),
        utterances_per_speaker=1,
    )
    with pytest.warns(UserWarning, match="flite-awb"), pytest.raises(SynthesizerNotFoundError):
        build_corpus(tmp_path / "d", config)  # ... and then no training speaker is left

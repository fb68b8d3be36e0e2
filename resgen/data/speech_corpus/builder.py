"""The builder of the embedded multi-speaker speech corpus of the TTS recipe, synthesised offline.

Everything comes from installed packages, nothing downloads:

* **Texts** come from :class:`~resgen.data.speech_corpus.grammar.SentenceGrammar`, a seeded
  grammar over an everyday-English vocabulary written for this project (people, things,
  places, verbs, adjectives, adverbs, times and number words in a dozen sentence templates).
  No text is copied from a text source.
* **Voices** (:data:`~resgen.data.speech_corpus.voices.VOICES`) are Debian's flite voices
  (kal16, awb, rms, slt), festival's diphone and HTS voices (ked, kal, slt) and hibari-tts's
  bundled neural voice (af_heart). They are six real people: kal and slt are the same person
  in flite and festival, so each voice carries a ``base`` speaker and the train/test split
  holds out whole base speakers.
* **Pseudo-speakers** multiply each voice by pitch and tempo changes (:class:`Variant`, applied
  with sox), e.g. 8 voices x 3 variants = 24 speakers.
* Audio is resampled to 16 kHz mono 16-bit WAV and peak-normalised.

:func:`build_corpus` writes ``wavs/<speaker>/<id>.wav``, ``manifest.jsonl`` (one JSON object per
utterance: :class:`~resgen.data.manifest.ManifestRecord`), ``splits.json``, the phoneme
vocabulary ``phonemes.json`` and a stamp ``corpus.json`` holding a hash of the configuration.
Run again with the same configuration it returns at once; an interrupted build resumes (each
WAV is written to a temporary file and renamed). The split is zero-shot: test speakers are
whole base speakers never heard in training (all their pitch/tempo variants included), and test
sentences never occur in training.

The same manifest format is written for LibriTTS by :mod:`resgen.data.libritts`, so one
training path reads both (:func:`~resgen.data.manifest.read_manifest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from attrs import asdict, field, frozen, validators

from resgen.data.manifest import (
    ManifestRecord,
    _atomic_write_text,
    wav_info,
    write_manifest,
    write_splits,
)
from resgen.data.speech_corpus.grammar import SentenceGrammar
from resgen.data.speech_corpus.voices import (
    VOICES,
    SynthesizerNotFoundError,
    Voice,
    available_voices,
    run_program,
    scheme_string,
)

__all__ = ["Variant", "CorpusConfig", "CORPUS_PRESETS", "CORPUS_FORMAT", "build_corpus"]

CORPUS_FORMAT = "resgen-tts-corpus/1"
"""Version tag of the corpus layout; part of the configuration hash."""


# =========================================================================== configuration
@frozen
class Variant:
    """A pseudo-speaker transform of a voice: a pitch shift and a tempo change (sox).

    Attributes:
        pitch_cents: pitch shift in cents (100 = one semitone); formants are kept.
        tempo: speaking-rate factor (> 1 is faster); pitch is kept.
    """

    pitch_cents: float = field(default=0.0, validator=[validators.ge(-1200), validators.le(1200)])
    tempo: float = field(default=1.0, validator=[validators.gt(0.5), validators.lt(2.0)])

    @property
    def tag(self) -> str:
        """A short name, e.g. ``"p+300-t0.90"`` (``"orig"`` for the identity)."""
        if self.pitch_cents == 0 and self.tempo == 1.0:
            return "orig"
        return f"p{self.pitch_cents:+.0f}-t{self.tempo:.2f}"


def _check_voice_names(instance: Any, attribute: Any, value: tuple[str, ...]) -> None:
    unknown = [v for v in value if v not in VOICES]
    if unknown:
        raise ValueError(f"{attribute.name}: unknown voices {unknown}; known: {', '.join(VOICES)}")


def _check_variants(instance: Any, attribute: Any, value: tuple[Variant, ...]) -> None:
    if not value:
        raise ValueError("variants must hold at least one Variant")
    tags = [v.tag for v in value]
    if len(set(tags)) != len(tags):
        raise ValueError(f"variants must differ, got {tags}")


@frozen
class CorpusConfig:
    """What :func:`build_corpus` synthesises.

    Attributes:
        voices: voice names (keys of :data:`VOICES`).
        optional_voices: the voices that may be skipped, with a warning, when they are not
            installed; any other missing voice is an error that names what to install.
        variants: pitch/tempo transforms; each voice x variant is one pseudo-speaker.
        utterances_per_speaker: utterances synthesised per pseudo-speaker.
        test_bases: base speakers (real people) held out for the test split, with every voice and
            variant of theirs. At least one base speaker must remain for training.
        seed: seed of the sentence grammar.
        sample_rate: output sample rate (Hz).
        workers: synthesis threads, each driving one synthesiser process at a time (at most 2).
        timeout_s: time limit of one synthesiser or sox call.
    """

    voices: tuple[str, ...] = field(
        default=tuple(VOICES), converter=tuple, validator=_check_voice_names
    )
    optional_voices: tuple[str, ...] = field(
        default=("festival-kal", "festival-slt-hts", "hibari-heart"),
        converter=tuple,
        validator=_check_voice_names,
    )
    variants: tuple[Variant, ...] = field(
        default=(Variant(0.0, 1.0), Variant(300.0, 0.9), Variant(-300.0, 1.1)),
        converter=tuple,
        validator=_check_variants,
    )
    utterances_per_speaker: int = field(default=60, validator=validators.ge(1))
    test_bases: tuple[str, ...] = field(default=("rms", "ked"), converter=tuple)
    seed: int = 0
    sample_rate: int = field(default=16000, validator=validators.ge(8000))
    workers: int = field(default=2, validator=[validators.ge(1), validators.le(2)])
    timeout_s: float = field(default=120.0, validator=validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if len(set(self.voices)) != len(self.voices):
            raise ValueError(f"voices are repeated: {self.voices}")
        bases = {VOICES[v].base for v in self.voices}
        unknown = [b for b in self.test_bases if b not in bases]
        if unknown:
            raise ValueError(
                f"test_bases {unknown} are not base speakers of the chosen voices "
                f"({', '.join(sorted(bases))})"
            )
        if not self.test_bases or set(self.test_bases) == bases:
            raise ValueError(
                "test_bases must hold out at least one base speaker and leave at least one for "
                f"training; base speakers: {', '.join(sorted(bases))}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the cache hash is computed from it)."""
        return asdict(self, recurse=True)


CORPUS_PRESETS: dict[str, CorpusConfig] = {
    # 4 flite voices x 2 variants x 3 utterances: builds in a few seconds (tests, smoke runs).
    "smoke": CorpusConfig(
        voices=("flite-kal16", "flite-awb", "flite-rms", "flite-slt"),
        optional_voices=(),
        variants=(Variant(0.0, 1.0), Variant(300.0, 0.9)),
        utterances_per_speaker=3,
        test_bases=("rms",),
    ),
    # 8 voices x 3 variants = 24 speakers x 200 utterances (4,800 holding 4.1 hours of speech;
    # built in about 2.5 minutes on 2 cores).
    "demo": CorpusConfig(utterances_per_speaker=200),
}
"""Ready-made sizes: ``smoke`` (seconds) and ``demo`` (24 speakers x 200 utterances)."""


def _wav_rms(path: Path) -> float:
    with wave.open(str(path), "rb") as handle:
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return float(np.sqrt(np.mean((data.astype(np.float64) / 32768.0) ** 2))) if data.size else 0.0


# =========================================================================== synthesis
@frozen
class _Job:
    uid: str
    text: str
    voice: Voice
    variant: Variant
    out: Path


class _Synthesizer:
    """Runs the engines; one instance shared by the worker threads."""

    def __init__(self, config: CorpusConfig, scratch: Path) -> None:
        self.config = config
        self.scratch = scratch
        self._hibari: Any = None
        self._hibari_lock = threading.Lock()

    def _raw_flite(self, jobs: Sequence[_Job], raws: Sequence[Path]) -> None:
        for job, raw in zip(jobs, raws):
            cmd = ["flite", "-voice", job.voice.voice_id, "-t", job.text, "-o", str(raw)]
            run_program(cmd, self.config.timeout_s, f"flite ({job.voice.voice_id})")

    def _raw_festival(self, jobs: Sequence[_Job], raws: Sequence[Path]) -> None:
        lines = [f"({jobs[0].voice.voice_id})"]
        for job, raw in zip(jobs, raws):
            lines.append(
                f"(utt.save.wave (utt.synth (Utterance Text {scheme_string(job.text)})) "
                f"{scheme_string(str(raw))} 'riff)"
            )
        script = raws[0].with_suffix(".scm")
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        timeout = self.config.timeout_s * max(1, len(jobs) // 4)
        what = f"festival ({jobs[0].voice.voice_id})"
        run_program(["festival", "--batch", str(script)], timeout, what)

    def _raw_hibari(self, jobs: Sequence[_Job], raws: Sequence[Path]) -> None:
        with self._hibari_lock:
            if self._hibari is None:
                from hibari import Hibari
                from hibari.voices import voice_path

                # only the voice bundled in the wheel: never let hibari download another one
                model = voice_path(jobs[0].voice.voice_id, download_missing=False)
                self._hibari = Hibari(voice=jobs[0].voice.voice_id, model=model, threads=1)
            from hibari import write_wav

            for job, raw in zip(jobs, raws):
                seed = int(hashlib.sha256(job.uid.encode()).hexdigest()[:8], 16)
                write_wav(str(raw), self._hibari(job.text, seed=seed), self._hibari.sample_rate)

    def run(self, jobs: Sequence[_Job]) -> None:
        """Synthesise ``jobs`` (all of one voice), transform and store each one."""
        todo = [job for job in jobs if not job.out.is_file()]
        if not todo:
            return
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            raws = [folder / f"{i}.wav" for i in range(len(todo))]
            getattr(self, f"_raw_{todo[0].voice.engine}")(todo, raws)
            for job, raw in zip(todo, raws):
                if not raw.is_file() or raw.stat().st_size <= 44:
                    raise RuntimeError(f"{job.voice.name} produced no audio for {job.text!r}")
                job.out.parent.mkdir(parents=True, exist_ok=True)
                tmp = job.out.with_name(f".{job.out.stem}.tmp.wav")
                effects = []
                if job.variant.pitch_cents != 0:
                    effects += ["pitch", f"{job.variant.pitch_cents:g}"]
                if job.variant.tempo != 1.0:
                    effects += ["tempo", "-s", f"{job.variant.tempo:g}"]
                effects += ["rate", "-v", str(self.config.sample_rate), "norm", "-3"]
                cmd = ["sox", "-R", "-q", str(raw), "-b", "16", "-c", "1", str(tmp), *effects]
                run_program(cmd, self.config.timeout_s, "sox")
                os.replace(tmp, job.out)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _chunks(jobs: list[_Job], size: int) -> list[list[_Job]]:
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


# =========================================================================== the build
def _config_hash(config: CorpusConfig, voices: Sequence[str]) -> str:
    blob = json.dumps(
        {"format": CORPUS_FORMAT, "config": config.to_dict(), "voices": list(voices)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _resolve_voices(config: CorpusConfig) -> list[str]:
    usable = []
    for name, reason in available_voices(config.voices).items():
        if reason is None:
            usable.append(name)
        elif name in config.optional_voices:
            warnings.warn(f"skipping the optional voice {name}: {reason}", stacklevel=3)
        else:
            raise SynthesizerNotFoundError(
                f"voice {name} is not available: {reason}. Run `bash tools/install_tts.sh "
                ".venv/bin/python` (Debian packages: flite festival festvox-kallpc16k "
                "festvox-kdlpc16k festvox-us-slt-hts sox), or mark the voice optional."
            )
    bases = {VOICES[v].base for v in usable}
    if not bases - set(config.test_bases) or not bases & set(config.test_bases):
        raise SynthesizerNotFoundError(
            f"with the voices available ({', '.join(usable)}) the split needs at least one "
            f"training and one test base speaker (test_bases={list(config.test_bases)})"
        )
    return usable


def build_corpus(
    out_dir: str | Path,
    config: CorpusConfig | str = "smoke",
    *,
    overwrite: bool = False,
    verbose: bool = False,
) -> Path:
    """Synthesise the corpus into ``out_dir`` (or reuse it) and return its manifest's path.

    Args:
        out_dir: the corpus folder (created).
        config: a :class:`CorpusConfig` or a preset name of :data:`CORPUS_PRESETS`.
        overwrite: when ``out_dir`` holds a corpus of another configuration, replace it
            (otherwise that is an error).
        verbose: print progress.

    Returns:
        ``out_dir / "manifest.jsonl"``.

    Raises:
        SynthesizerNotFoundError: a required voice, sox or hibari is not installed (the message
            names the Debian or pip packages).
        ValueError: ``out_dir`` holds a corpus of another configuration and ``overwrite`` is
            false.
        RuntimeError: a synthesiser failed or timed out.
    """
    if isinstance(config, str):
        if config not in CORPUS_PRESETS:
            raise ValueError(
                f"unknown corpus preset {config!r}; known: {', '.join(CORPUS_PRESETS)}"
            )
        config = CORPUS_PRESETS[config]
    out = Path(out_dir)
    manifest, stamp = out / "manifest.jsonl", out / "corpus.json"
    if stamp.is_file() and manifest.is_file():
        previous = json.loads(stamp.read_text(encoding="utf-8"))
        if previous.get("config") == json.loads(json.dumps(config.to_dict())):
            return manifest  # fast path: no voice probing, no synthesis
    voices = _resolve_voices(config)
    digest = _config_hash(config, voices)
    if stamp.is_file():
        previous = json.loads(stamp.read_text(encoding="utf-8"))
        if previous.get("hash") == digest and manifest.is_file():
            return manifest
        if not overwrite:
            raise ValueError(
                f"{out} holds a corpus of another configuration (hash {previous.get('hash')}, "
                f"wanted {digest}); pass overwrite=True or choose another folder"
            )
        for name in ("corpus.json", "manifest.jsonl", "splits.json", "phonemes.json"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "wavs", ignore_errors=True)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)

    # ---- plan: speakers, sentences (disjoint between the splits), utterance ids
    speakers = [
        (f"{VOICES[v].name}-{variant.tag}", VOICES[v], variant)
        for v in voices
        for variant in config.variants
    ]
    n = config.utterances_per_speaker
    test_speakers = [s for s in speakers if s[1].base in config.test_bases]
    sentences = SentenceGrammar(seed=config.seed).generate(len(speakers) * n)
    pools = {"test": iter(sentences[: len(test_speakers) * n])}
    pools["train"] = iter(sentences[len(test_speakers) * n :])
    jobs: list[_Job] = []
    splits: dict[str, str] = {}
    for speaker, voice, variant in speakers:
        split = "test" if voice.base in config.test_bases else "train"
        for i in range(n):
            uid = f"{speaker}_{i:04d}"
            out_wav = out / "wavs" / speaker / f"{uid}.wav"
            jobs.append(_Job(uid, next(pools[split]), voice, variant, out_wav))
            splits[uid] = split

    # ---- synthesis: festival and hibari in chunks (one process / model load per chunk)
    scratch = Path(tempfile.mkdtemp(dir=out, prefix=".scratch-"))
    try:
        synth = _Synthesizer(config, scratch)
        by_voice: dict[str, list[_Job]] = {}
        for job in jobs:
            by_voice.setdefault(job.voice.name, []).append(job)
        tasks = [
            chunk
            for group in by_voice.values()
            for chunk in _chunks(group, 1 if group[0].voice.engine == "flite" else 24)
        ]
        done = 0
        pool = ThreadPoolExecutor(max_workers=min(2, config.workers))
        try:
            futures = {pool.submit(synth.run, chunk): len(chunk) for chunk in tasks}
            # phonemes in this thread while the workers wait on their synthesiser processes
            from resgen.codecs.phonemes import PhonemeTokenizer

            tokenizer = PhonemeTokenizer()
            phonemes = {job.text: tokenizer.phonemize(job.text) for job in jobs}
            for future in as_completed(futures):
                future.result()
                done += futures[future]
                if verbose and (done % 100 < futures[future] or done == len(jobs)):
                    print(f"tts corpus: {done}/{len(jobs)} utterances", flush=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    # ---- manifest, splits, vocabulary, stamp (the stamp last: it marks completion)
    records = []
    for job in jobs:
        rate, channels, seconds = wav_info(job.out)
        if rate != config.sample_rate or channels != 1:
            raise RuntimeError(f"{job.out}: {rate} Hz x {channels} channels after conversion")
        if _wav_rms(job.out) < 1e-4:
            raise RuntimeError(f"{job.voice.name} produced silence for {job.text!r} ({job.out})")
        records.append(
            ManifestRecord(
                id=job.uid,
                audio=job.out.relative_to(out).as_posix(),
                text=job.text,
                phonemes=phonemes[job.text],
                speaker=job.out.parent.name,
                base_voice=job.voice.base,
                duration=round(seconds, 4),
                split=splits[job.uid],
            )
        )
    write_manifest(records, manifest)
    write_splits(records, out / "splits.json")
    tokenizer.vocabulary.save(out / "phonemes.json")
    seconds = time.perf_counter() - start
    info = {
        "format": CORPUS_FORMAT,
        "hash": digest,
        "config": config.to_dict(),
        "voices": voices,
        "speakers": len(speakers),
        "utterances": len(records),
        "hours": round(sum(r.duration for r in records) / 3600, 4),
        "build_seconds": round(seconds, 2),
    }
    _atomic_write_text(stamp, json.dumps(info, indent=1) + "\n")
    if verbose:
        print(
            f"tts corpus: {len(speakers)} speakers, {len(records)} utterances, "
            f"{info['hours']:.2f} h in {seconds:.1f} s -> {manifest}",
            flush=True,
        )
    return manifest

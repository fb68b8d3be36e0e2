"""Speech evaluators on the real LibriVox clips of Debian's pocketsphinx-testdata."""

from __future__ import annotations

import argparse
import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from resgen.data.audio_io import (
    list_audio,
    load_audio,
    match_audio_files,
    read_transcripts,
    resample,
)
from resgen.eval.asr import PocketSphinxRecognizer, SpeechRecognizer, WhisperRecognizer
from resgen.eval.cli import add_eval_parser
from resgen.eval.speaker import (
    ResemblyzerEncoder,
    SpeakerEncoder,
    cosine_similarity,
    speaker_similarity,
)
from resgen.eval.text import word_error_rate

DATA = Path("/usr/share/pocketsphinx/test/data")
LIBRIVOX = DATA / "librivox"
CARDS = DATA / "cards"

pytestmark = pytest.mark.skipif(
    not LIBRIVOX.is_dir(), reason="pocketsphinx-testdata missing: run tools/install_eval.sh"
)


@pytest.fixture(scope="module")
def librivox() -> list[tuple[str, torch.Tensor, int, str]]:
    transcripts = read_transcripts(LIBRIVOX / "transcription")
    return [
        (utt_id, *load_audio(path), transcripts[utt_id])
        for utt_id, path in match_audio_files(LIBRIVOX, transcripts)
    ]


def test_transcripts_and_audio(librivox, tmp_path) -> None:
    assert len(librivox) == 5
    utt_id, audio, rate, text = librivox[1]
    assert utt_id.endswith("0880") and text == "<s> he was not an ill disposed young man </s>"
    assert rate == 16000 and audio.dtype == torch.float32 and audio.abs().max() <= 1.0
    kaldi = tmp_path / "text"
    kaldi.write_text("a hello there\n\nb (not an id) here\n")
    assert read_transcripts(kaldi) == {"a": "hello there", "b": "(not an id) here"}
    kaldi.write_text("a x\na y\n")
    with pytest.raises(ValueError, match="duplicate"):
        read_transcripts(kaldi)
    with pytest.raises(ValueError, match="no audio"):
        match_audio_files(LIBRIVOX, {"nope": "x"})


def test_stdlib_wave_reader_agrees(tmp_path) -> None:
    from resgen.data.audio_io import _read_wave

    path = sorted(LIBRIVOX.glob("*.wav"))[0]
    data, rate = _read_wave(path)
    audio, rate2 = load_audio(path)
    assert rate == rate2
    np.testing.assert_allclose(data[:, 0], audio.numpy(), atol=1e-6)
    with wave.open(str(path)) as f:
        assert f.getnframes() == audio.shape[0]


def test_resample_keeps_duration() -> None:
    x = torch.sin(torch.arange(22050) / 22050 * 2 * torch.pi * 440)
    y = resample(x, 22050, 16000)
    assert y.shape == (16000,)
    assert resample(x, 100, 100) is x


def test_whisper_wer_on_librivox(librivox) -> None:
    asr = WhisperRecognizer()
    assert isinstance(asr, SpeechRecognizer)
    refs = [text for *_, text in librivox]
    hyps = [asr.transcribe(audio, rate) for _, audio, rate, _ in librivox]
    wer = word_error_rate(refs, hyps)
    assert wer <= 0.10, (wer, hyps)
    beam = WhisperRecognizer(beam_size=5)
    beam_hyps = [beam.transcribe(audio, rate) for _, audio, rate, _ in librivox]
    assert word_error_rate(refs, beam_hyps) <= 0.10, beam_hyps
    # Resampling is handled: the same clip at 8 kHz is still understood.
    _, audio, rate, text = librivox[4]
    low = asr.transcribe(resample(audio, rate, 8000), 8000)
    assert word_error_rate([text], [low]) <= 0.25, low


def test_whisper_transcripts_are_reproducible(librivox) -> None:
    # Reversed speech makes Whisper's greedy decoding look degenerate; faster-whisper's default
    # then samples at higher temperatures, unseeded, and transcribes it differently each call.
    asr = WhisperRecognizer()
    for _, audio, rate, _ in librivox[:3]:
        backwards = audio.flip(0)
        assert len({asr.transcribe(backwards, rate) for _ in range(3)}) == 1
    with pytest.raises(ValueError, match="temperatures"):
        WhisperRecognizer(temperatures=())
    with pytest.raises(ValueError, match="beam_size"):
        WhisperRecognizer(beam_size=0)


def test_pocketsphinx_runs(librivox) -> None:
    asr = PocketSphinxRecognizer()
    assert isinstance(asr, SpeechRecognizer)
    refs = [text for *_, text in librivox]
    hyps = [asr.transcribe(audio, rate) for _, audio, rate, _ in librivox]
    assert word_error_rate(refs, hyps) <= 0.45, hyps


def test_recognizer_rejects_bad_audio() -> None:
    asr = PocketSphinxRecognizer()
    with pytest.raises((ValueError, TypeError)):
        asr.transcribe(torch.zeros(2, 100), 16000)
    with pytest.raises(ValueError, match="NaN"):
        asr.transcribe(torch.full((100,), float("nan")), 16000)


def test_speaker_similarity_separates_speakers(librivox) -> None:
    encoder = ResemblyzerEncoder()
    assert isinstance(encoder, SpeakerEncoder)
    same_speaker = [encoder.embed(audio, rate) for _, audio, rate, _ in librivox]
    other = [encoder.embed(*load_audio(path)) for path in list_audio(CARDS)]
    assert same_speaker[0].shape == (256,)
    assert same_speaker[0].norm().item() == pytest.approx(1.0, abs=1e-4)
    within = [
        cosine_similarity(a, b) for i, a in enumerate(same_speaker) for b in same_speaker[i + 1 :]
    ]
    across = [cosine_similarity(a, b) for a in same_speaker for b in other]
    assert min(within) > max(across), (within, across)
    _, a, rate, _ = librivox[0]
    _, b, _, _ = librivox[1]
    assert speaker_similarity(encoder, a, b, rate) == pytest.approx(within[0], abs=1e-5)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="resgen")
    add_eval_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_wer_and_sim_commands(tmp_path, capsys) -> None:
    hyp_file = tmp_path / "hyp.tsv"
    args = parse(
        [
            "eval",
            "wer",
            "--audio",
            str(LIBRIVOX),
            "--text",
            str(LIBRIVOX / "transcription"),
            "--asr",
            "pocketsphinx",
            "--hypotheses",
            str(hyp_file),
            "--json",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["utterances"] == 5 and 0 <= out["cer"] <= out["wer"] <= 0.45
    low, high = out["wer_interval_95"]
    assert low <= out["wer"] <= high and high > low  # 5 readings of unequal difficulty
    assert len(hyp_file.read_text().splitlines()) == 5
    args = parse(
        ["eval", "sim", "--audio", str(CARDS), "--reference", str(CARDS), "--json", "--no-progress"]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"] == 5 and out["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert out["similarity_interval_95"] == pytest.approx([1.0, 1.0], abs=1e-5)

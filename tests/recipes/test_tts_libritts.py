"""The ``tts-synth`` recipe on LibriTTS: the paper-scale preset's network (built on the meta
device) and the LibriTTS data path end to end at smoke size, on two processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resgen.data.manifest import read_manifest
from resgen.data.speech_corpus.builder import build_corpus
from resgen.networks.tts_transformer import TextToSpeechTransformer
from resgen.recipes.tts_synth import resgen_network, run
from resgen.recipes.tts_synth_config import PAPER_SCALE, PRESETS

ROOT = Path(__file__).resolve().parents[2]


def test_the_libritts_paper_preset_builds_the_paper_scale_network() -> None:
    config = PRESETS["libritts-paper"]
    assert config.corpus == "libritts" and config.codec.depth == 32
    # at PAPER_SCALE's data sizes: 78 text symbols, 1,024 positions and phonemes
    network = resgen_network(config, 78, 1024, 1024)
    with torch.device("meta"):  # nothing allocated
        model = TextToSpeechTransformer(network)
    count = sum(p.numel() for p in model.parameters())
    assert all(p.is_meta for p in model.parameters())
    # 660,028,192: width 1280, 20 blocks, 16 heads, a 2-block text encoder, a 32-component
    # head of rank 256 (the paper's model has 625 M; its exact layout is not published)
    assert count == 660_028_192, count
    with torch.device("meta"):
        assert count == sum(p.numel() for p in TextToSpeechTransformer(PAPER_SCALE).parameters())


@pytest.fixture(scope="module")
def libritts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LibriTTS-layout folder: the smoke corpus' WAVs and transcripts, 8 speakers of 3
    utterances, as ``<speaker>/<chapter>/<speaker>_<chapter>_<paragraph>_<sentence>.wav``."""
    base = tmp_path_factory.mktemp("libritts")
    corpus = base / "corpus"
    records = read_manifest(build_corpus(corpus, "smoke"))
    speakers = sorted({r.speaker for r in records})
    root = base / "LibriTTS"
    for n, record in enumerate(records):
        speaker = str(100 + speakers.index(record.speaker))
        folder = root / speaker / "7"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{speaker}_7_{n}_0"
        shutil.copy(corpus / record.audio, folder / f"{stem}.wav")
        (folder / f"{stem}.normalized.txt").write_text(record.text + "\n", encoding="utf-8")
    return root


def test_libritts_runs_end_to_end_on_two_processes(libritts: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "resgen.cli", "train", "tts-synth"]
    command += ["--preset", "libritts-smoke", "--data-dir", str(libritts), "--out", str(out)]
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    print(f"two-process LibriTTS smoke run: {time.perf_counter() - began:.0f} s")
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["preset_corpus"] == "libritts"
    # speakers 106 and 107 (the last two) are held out: 18 utterances train, 6 are tested
    assert (metrics["train_utterances"], metrics["test_utterances"]) == (18, 6)
    records = read_manifest(out / "corpus" / "manifest.jsonl")
    assert {r.speaker for r in records if r.split == "test"} == {"106", "107"}
    assert all((out / "corpus" / r.audio).resolve().is_relative_to(libritts) for r in records)
    for stage in ("codec", "resgen", "ar"):
        assert (out / stage / "final" / "config.json").is_file(), stage


def test_a_missing_or_misshapen_libritts_root_is_one_clear_line(
    libritts: Path, tmp_path: Path
) -> None:
    config = PRESETS["libritts-smoke"]
    with pytest.raises(ValueError, match="give its root with --data-dir"):
        run(tmp_path / "a", config)
    with pytest.raises(FileNotFoundError, match="LibriTTS folder not found"):
        run(tmp_path / "b", config, data_dir=tmp_path / "nowhere")
    flat = tmp_path / "flat"
    (flat / "100" / "7").mkdir(parents=True)
    shutil.copy(next(libritts.rglob("*.wav")), flat / "100" / "7" / "clip.wav")
    with pytest.raises(ValueError, match="LibriTTS layout"):
        run(tmp_path / "c", config, data_dir=flat)

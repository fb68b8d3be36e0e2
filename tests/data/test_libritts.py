"""The LibriTTS-style loader, on a tiny layout made here with sine-wave WAVs."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from resgen.data.libritts import Utterance, load_libritts, write_libritts_manifest
from resgen.data.manifest import read_manifest


def _write_sine(path: Path, seconds: float, freq: float, rate: int = 24000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def _layout(root: Path) -> None:
    items = [
        ("19", "198", "000000_000000", "Northanger Abbey was written in 1798.", None),
        ("19", "198", "000001_000002", "No one who had ever seen her.", "No one who had seen."),
        ("19", "227", "000003_000000", None, "Her father was a clergyman."),  # original only
        ("84", "121", "000000_000001", "It was a bright cold day in April.", None),
    ]
    for i, (speaker, chapter, utt, normalized, original) in enumerate(items):
        stem = root / speaker / chapter / f"{speaker}_{chapter}_{utt}"
        _write_sine(stem.with_name(stem.name + ".wav"), 0.5 + 0.25 * i, 220.0 + 50 * i)
        if normalized is not None:
            stem.with_name(stem.name + ".normalized.txt").write_text(normalized + "\n")
        if original is not None:
            stem.with_name(stem.name + ".original.txt").write_text(original + "\n")


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "LibriTTS" / "dev-clean"
    _layout(root)
    return root


def test_load(root: Path) -> None:
    utterances = load_libritts(root)
    assert [u.id for u in utterances] == [
        "19_198_000000_000000",
        "19_198_000001_000002",
        "19_227_000003_000000",
        "84_121_000000_000001",
    ]
    first = utterances[0]
    assert isinstance(first, Utterance)
    assert (first.speaker, first.chapter) == ("19", "198")
    assert first.text == "Northanger Abbey was written in 1798."
    assert utterances[1].text == "No one who had ever seen her."  # normalized preferred
    assert utterances[2].text == "Her father was a clergyman."  # original as fallback
    assert all(u.path.is_file() for u in utterances)
    # the same through the subset argument
    assert load_libritts(root.parent, subset="dev-clean") == utterances
    assert load_libritts(root.parent, subset=["dev-clean"]) == utterances


def test_manifest_same_format_as_corpus(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    manifest = write_libritts_manifest(load_libritts(root), out, test_speakers={"84"})
    records = read_manifest(manifest)
    assert len(records) == 4
    for record in records:
        audio = (manifest.parent / record.audio).resolve()
        assert audio.is_file() and record.base_voice == record.speaker
        assert record.phonemes
    assert abs(records[0].duration - 0.5) < 1e-3
    assert {r.speaker for r in records if r.split == "test"} == {"84"}
    # numbers in transcripts are expanded by the front-end
    assert "ˈeɪ" in records[0].phonemes
    splits = json.loads((out / "splits.json").read_text())
    assert splits["test"]["speakers"] == ["84"] and splits["train"]["speakers"] == ["19"]


def test_clear_errors(root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="root folder not found"):
        load_libritts(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="subset folder not found"):
        load_libritts(root.parent, subset="train-clean-100")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no utterances"):
        load_libritts(empty)
    orphan = root / "84" / "121" / "84_121_000009_000000.wav"
    _write_sine(orphan, 0.2, 440.0)
    with pytest.raises(ValueError, match="no transcript") as info:
        load_libritts(root)
    assert orphan.name in str(info.value)
    orphan.unlink()
    misnamed = root / "84" / "121" / "99_121_000000_000000.wav"
    _write_sine(misnamed, 0.2, 440.0)
    with pytest.raises(ValueError, match="file name should be"):
        load_libritts(root)
    misnamed.unlink()
    utterances = load_libritts(root)
    with pytest.raises(ValueError, match="test speakers"):
        write_libritts_manifest(utterances, tmp_path / "m", test_speakers={"7"})
    bad = [*utterances, Utterance(utterances[0].path, "caf\u00e9 \u2603", "19", "198", "x_y_z")]
    with pytest.raises(ValueError, match="x_y_z"):
        write_libritts_manifest(bad, tmp_path / "m")
    with pytest.warns(UserWarning, match="skipped 1"):
        manifest = write_libritts_manifest(bad, tmp_path / "m", skip_bad_text=True)
    assert len(read_manifest(manifest)) == len(utterances)

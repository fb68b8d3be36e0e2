"""The ``imagenet`` recipe on a tiny synthetic image folder: its smoke preset end to end on one
process and on two (torchrun, gloo), every bad input, and the paper presets' sizes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from resgen.cli import main
from resgen.data.image_folder import read_cropped
from resgen.recipes.imagenet import PRESETS, paper_generator_parameters

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("n01440764", "n01443537")


def _picture(label: int, index: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A coloured disc on a gradient: class 0 reddish, class 1 bluish."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(100 * label + index)
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.2, 0.35) * h
    disc = ((x - cx) ** 2 + (y - cy) ** 2 < r**2)[..., None]
    base = np.stack([x / w, y / h, np.full_like(x, 0.5, dtype=float)], -1) * 120
    colour = np.array([220, 60, 40] if label == 0 else [40, 80, 220])
    pixels = np.where(disc, colour, base) + rng.normal(0, 8, (h, w, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_folder(root: Path, per_class: int = 12, val_per_class: int = 6) -> Path:
    """``root/train/<class>/*.JPEG`` and ``root/val/...``, with one of each awkward file."""
    for split, count in (("train", per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                _picture(label, i + 1000 * (split == "val")).save(folder / f"{i:03d}.JPEG")
    odd = root / "train" / CLASSES[0]
    _picture(0, 50).convert("L").save(odd / "gray.JPEG")
    _picture(0, 51).convert("CMYK").save(odd / "cmyk.JPEG")
    _picture(1, 52, size=(20, 18)).save(root / "train" / CLASSES[1] / "small.JPEG")
    whole = (odd / "000.JPEG").read_bytes()
    (odd / "truncated.JPEG").write_bytes(whole[: len(whole) // 3])
    (root / "train" / CLASSES[1] / "corrupt.JPEG").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def make_reference(root: Path, path: Path) -> Path:
    """An ADM reference batch of the folder's validation crops, with the offline Inception."""
    from resgen.eval.adm_reference import write_reference
    from resgen.eval.features import InceptionFeatures, compute_features

    files = sorted((root / "val").rglob("*.JPEG"))
    pixels = np.stack([read_cropped(f, 32)[0] for f in files])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    features = compute_features(InceptionFeatures(), images, progress=False)
    write_reference(path, pixels, features)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny folder and its reference batch."""
    base = tmp_path_factory.mktemp("imagenet")
    root = make_folder(base / "data")
    return root, make_reference(root, base / "reference.npz")


def _check_run(out: Path, world: int) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == world
    for key in ("fid", "inception_score", "precision", "recall"):
        assert isinstance(metrics[key], float) and np.isfinite(metrics[key]), key
    assert 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1
    assert metrics["inception_score_classifier"].startswith("softmax probe")  # not the 1008-way
    assert metrics["train_images_by_status"] == {
        "ok": 24, "converted_to_rgb": 2, "upscaled_to_crop": 1, "unreadable_skipped": 2,
    }  # fmt: skip
    with np.load(out / "samples.npz") as batch:
        assert batch["arr_0"].shape == (100, 32, 32, 3) and batch["arr_0"].dtype == np.uint8
        assert np.bincount(batch["arr_1"]).tolist() == [50, 50]  # exactly 50 per class
    assert len(list((out / "samples").rglob("*.png"))) == 100
    for name in ("samples.png", "loss.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "generator" / "final" / "config.json").is_file()
    assert not (out / "generator" / "latest").exists()
    return metrics


def _command(root: Path, reference: Path, out: Path) -> list[str]:
    return ["train", "imagenet", "--preset", "smoke", "--data-dir", str(root)] + [
        "--reference", str(reference), "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow
def test_smoke_runs_on_one_process(folder: tuple[Path, Path], tmp_path: Path) -> None:
    root, reference = folder
    assert main(_command(root, reference, tmp_path / "run")) == 0
    _check_run(tmp_path / "run", world=1)


def _torchrun(root: Path, reference: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    """The two-process command of the smoke preset and its environment (one thread each)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "resgen.cli"]
    return command + _command(root, reference, out), env


@pytest.fixture(scope="module")
def two_processes(folder: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke preset run to the end by two processes, uninterrupted."""
    out = tmp_path_factory.mktemp("two") / "run"
    command, env = _torchrun(*folder, out)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("wrote ") == 1  # rank 0 alone reports
    return out


@pytest.mark.slow
def test_smoke_runs_on_two_processes(two_processes: Path) -> None:
    _check_run(two_processes, world=2)


def _rank_one(torchrun: subprocess.Popen) -> int:
    """The pid of the worker of rank 1 among torchrun's children."""
    children = Path(f"/proc/{torchrun.pid}/task/{torchrun.pid}/children").read_text().split()
    for pid in map(int, children):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"RANK=1" in environ:
            return pid
    raise AssertionError(f"no worker of rank 1 among {children}")


@pytest.mark.slow
def test_a_process_killed_in_the_generator_stage_resumes_exactly(
    folder: tuple[Path, Path], two_processes: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    command, env = _torchrun(*folder, out)
    latest = out / "generator" / "latest" / "config.json"
    with subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as first:
        deadline = time.monotonic() + 400
        while not latest.is_file():  # the generator stage wrote its step-8 checkpoint
            assert first.poll() is None, first.stderr.read()[-4000:]
            assert time.monotonic() < deadline, "the generator stage never checkpointed"
            time.sleep(0.02)
        os.kill(_rank_one(first), signal.SIGKILL)
        _, errors = first.communicate(timeout=120)
    assert first.returncode != 0, errors[-2000:]  # torchrun ended rank 0 and failed
    assert not (out / "generator" / "final").exists() and not (out / "metrics.json").exists()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    _check_run(out, world=2)
    # The same two processes replay steps 8..15 from the checkpoint with every rank's random
    # state restored and the same gloo sums: the weights equal the uninterrupted run's exactly.
    for stage, name in (("codec", "codec"), ("generator", "generator")):
        straight = load_file(str(two_processes / stage / "final" / f"{name}.safetensors"))
        resumed = load_file(str(out / stage / "final" / f"{name}.safetensors"))
        assert straight.keys() == resumed.keys()
        for key, value in straight.items():
            assert torch.equal(resumed[key], value), (stage, key)


def _error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("resgen: error: "), lines
    return lines[0]


def test_bad_image_folders_get_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(root: Path) -> str:
        args = ["train", "imagenet", "--preset", "smoke", "--data-dir", str(root)]
        return _error(args + ["--out", str(tmp_path / "out")], capsys)

    assert "does not exist" in run(tmp_path / "missing")
    (tmp_path / "flat" / "train").mkdir(parents=True)
    (tmp_path / "flat" / "val").mkdir()
    assert "holds no class folder" in run(tmp_path / "flat")
    empty = make_folder(tmp_path / "empty", per_class=2, val_per_class=1)
    (empty / "train" / "n09999999").mkdir()
    assert "n09999999 holds no image" in run(empty)
    mismatch = make_folder(tmp_path / "mismatch", per_class=2, val_per_class=1)
    (mismatch / "val" / CLASSES[1]).rename(mismatch / "val" / "n00000001")
    message = run(mismatch)
    assert "disagree" in message and CLASSES[1] in message and "n00000001" in message
    assert not (tmp_path / "out").exists()  # nothing written before the folder was read
    assert "needs --data-dir" in _error(["train", "imagenet", "--preset", "smoke"], capsys)


def test_paper_presets_have_the_papers_size_on_the_meta_device() -> None:
    # width 1024, 28 blocks, 16 heads, a 320-component mixture through a rank-256 head:
    # the paper's "574M" (its tokenizer depth changes only the depth embedding table)
    assert paper_generator_parameters(PRESETS["paper-d8"]) == 574_826_048
    assert paper_generator_parameters(PRESETS["paper-d16"]) == 574_834_240
    assert PRESETS["paper-d16"].codec.depth == 16 and PRESETS["paper-d8"].codec.depth == 8
    assert PRESETS["paper-d8"].codec.side == 8 and PRESETS["paper-d8"].codec.codes == 16384
    assert 300e6 < paper_generator_parameters(PRESETS["gpu-day"]) < 400e6


def test_a_given_tokenizer_is_used_instead_of_training_one(tmp_path: Path) -> None:
    from attrs import evolve

    from resgen.codecs.image_tokenizer import ImageTokenizer
    from resgen.recipes.imagenet import train_codec
    from resgen.training.checkpoint import CheckpointError, save_checkpoint

    smoke = PRESETS["smoke"]
    given = ImageTokenizer(smoke.codec)
    save_checkpoint(
        tmp_path / "run" / "codec" / "final", {"codec": given}, {"codec": smoke.codec.to_dict()}
    )
    for where in ("run", "run/codec", "run/codec/final"):
        config = evolve(smoke, tokenizer=str(tmp_path / where))
        codec, history = train_codec(config, None, tmp_path / "unused", torch.device("cpu"))
        assert history == [] and not (tmp_path / "unused").exists()
        for key, value in given.state_dict().items():
            assert torch.equal(codec.state_dict()[key], value), key
    bigger = evolve(
        smoke, codec=evolve(smoke.codec, image_size=64), tokenizer=str(tmp_path / "run")
    )
    with pytest.raises(ValueError, match="reads 32-pixel images"):
        train_codec(bigger, None, tmp_path / "unused", torch.device("cpu"))
    with pytest.raises(CheckpointError):
        train_codec(
            evolve(smoke, tokenizer=str(tmp_path)), None, tmp_path / "u", torch.device("cpu")
        )


@pytest.mark.parametrize("kind", ["resgen", "token", "ar"])
def test_every_generator_kind_trains_from_the_code_store_and_samples(
    kind: str, tmp_path: Path
) -> None:
    from attrs import evolve

    from resgen.codecs.image_tokenizer import ImageTokenizer
    from resgen.data.code_store import write_code_store
    from resgen.recipes.imagenet import read_samples, sample_images, store_meta, train_generator
    from resgen.training.trainer import StageSpec

    smoke = PRESETS["smoke"]
    config = evolve(
        smoke,
        generator=kind,
        generator_stage=StageSpec(steps=2, batch_size=4, lr=1e-3, micro_batches=2),
        samples_per_class=3,
        sample_batch=4,
    )
    codec = ImageTokenizer(smoke.codec).eval()
    meta = store_meta(config, codec)
    codes = torch.randint(0, meta.codes, (10, 2, meta.length, meta.depth))

    def encode(start: int, stop: int):  # noqa: ANN202
        status = (torch.arange(start, stop) == 3).to(torch.uint8) * 3  # example 3 unreadable
        return codes[start:stop], torch.arange(start, stop) % 2, status

    store = write_code_store(tmp_path / "codes", meta, 10, encode, chunk=4, skipped_from=3)
    assert len(store.usable()) == 9
    device = torch.device("cpu")
    model, history = train_generator(config, codec, store, 2, tmp_path / "generator", device)
    assert [step for step, _ in history] == [0, 1]
    labels = sample_images(config, codec, model, 2, tmp_path / "samples", device)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    first = read_samples(tmp_path / "samples", labels)
    assert first.shape == (6, 32, 32, 3)
    stamps = [p.stat().st_mtime_ns for p in sorted((tmp_path / "samples").rglob("*.png"))]
    sample_images(config, codec, model, 2, tmp_path / "samples", device)  # same settings: kept
    assert stamps == [p.stat().st_mtime_ns for p in sorted((tmp_path / "samples").rglob("*.png"))]
    other = evolve(config, sampler=evolve(config.sampler, steps=2), seed=7)
    sample_images(other, codec, model, 2, tmp_path / "samples", device)  # drawn again
    assert not np.array_equal(read_samples(tmp_path / "samples", labels), first)

"""Bad inputs to the readers and the command line get one clear line, never a wrong result."""

from __future__ import annotations

import argparse
import stat
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resgen.cli import main, non_negative_float, positive_int, run_command
from resgen.data.audio_io import load_audio, match_audio_files, read_transcripts
from resgen.data.image_io import load_image_dir
from resgen.eval.frechet import FeatureStats
from resgen.files import check_output_file
from resgen.training.plots import save_image_grid


def _wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    samples = (0.1 * np.sin(np.arange(int(seconds * rate)) * 0.05) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


def test_sixteen_bit_pngs_are_scaled_not_clipped(tmp_path: Path) -> None:
    pixels = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(pixels).save(tmp_path / "a8.png")
    Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "b16.png")
    assert Image.open(tmp_path / "b16.png").mode.startswith("I")  # really 16-bit
    images = load_image_dir(tmp_path)
    assert images.shape == (2, 1, 16, 16)
    assert torch.equal(images[0], images[1])  # 65535 -> 255, 257 * v -> v


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n" + bytes(40), b"not an image at all", b""])
def test_corrupt_images_name_the_file(tmp_path: Path, content: bytes) -> None:
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(content)
    with pytest.raises(ValueError, match=r"b\.png is not a readable image"):
        load_image_dir(tmp_path)


def test_truncated_image_names_the_file(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        tmp_path / "a.png"
    )
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"a\.png is not a readable image"):
        load_image_dir(tmp_path)


def test_bad_audio_and_transcripts(tmp_path: Path) -> None:
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(ValueError, match=r"text\.wav is not a readable audio file"):
        load_audio(tmp_path / "text.wav")
    with pytest.raises(ValueError, match="no audio samples"):
        load_audio(_wav(tmp_path / "empty.wav", 0.0))
    folder = tmp_path / "audio"
    folder.mkdir()
    for name in ("a", "b", "c"):
        _wav(folder / f"{name}.wav", 0.2)
    (tmp_path / "two.txt").write_text("a hello\nb there\n")
    with pytest.raises(ValueError, match="1 audio files .* have no transcript: c"):
        match_audio_files(folder, read_transcripts(tmp_path / "two.txt"))
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        read_transcripts(tmp_path / "binary.txt")


def test_corrupt_statistics_file(tmp_path: Path) -> None:
    (tmp_path / "s.npz").write_bytes(b"\x00" * 300)
    with pytest.raises(ValueError, match=r"s\.npz is not a readable \.npz statistics file"):
        FeatureStats.load(tmp_path / "s.npz")


def test_numeric_flags_are_checked_by_their_types() -> None:
    assert positive_int("3") == 3
    for bad in ("0", "-2", "1.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    assert non_negative_float("0") == 0.0
    for bad in ("-0.1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            non_negative_float(bad)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "image-fashion", "--depth", "0"],
        ["sample", "--checkpoint", "x", "--classes", "1", "--out", "y.png", "--per-class", "0"],
        ["tts", "--checkpoint", "x", "--text", "a", "--prompt", "p", "--out", "o", "--steps", "-1"],
        ["eval", "fid", "--real", "a", "--fake", "b", "--batch-size", "0"],
    ],
)
def test_usage_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error: argument" in err and "--help" in err


def test_the_rule_user_errors_are_one_line_bugs_keep_their_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fails(error: BaseException):  # noqa: ANN202
        def func(args: argparse.Namespace) -> int:
            raise error

        return argparse.Namespace(func=func)

    for error in (
        ValueError("bad value\nsecond line"),
        FileNotFoundError(2, "No such file or directory", "/x/y"),
        OSError(28, "No space left on device", "/x/ck"),
        EOFError("truncated"),
    ):
        assert run_command(fails(error)) == 2
        err = capsys.readouterr().err
        assert err.startswith("resgen: error: ") and err.count("\n") == 1
    missing = FileNotFoundError(2, "No such file or directory", "/x/y")
    assert run_command(fails(missing)) == 2
    assert capsys.readouterr().err == "resgen: error: /x/y: No such file or directory\n"
    with pytest.raises(RuntimeError):  # not a user's error: a bug, shown as one
        run_command(fails(RuntimeError("shape mismatch")))


def test_output_paths_are_checked_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(IsADirectoryError):
        check_output_file(tmp_path, (".png",))
    with pytest.raises(NotADirectoryError):
        check_output_file(tmp_path / "file" / "x.png")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        check_output_file(tmp_path / "x.txt", (".png", ".jpg"))
    with pytest.raises(FileExistsError, match="not a regular file"):
        check_output_file("/dev/null")
    assert check_output_file(tmp_path / "new" / "deeper" / "x.png") == (
        tmp_path / "new" / "deeper" / "x.png"
    )


def test_grids_take_the_format_of_their_suffix_and_the_umask(tmp_path: Path) -> None:
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    for suffix, magic in ((".jpg", b"\xff\xd8\xff"), (".png", b"\x89PNG"), (".webp", b"RIFF")):
        save_image_grid(images, tmp_path / f"grid{suffix}", rows=2)
        assert (tmp_path / f"grid{suffix}").read_bytes()[:4].startswith(magic)
    mode = stat.S_IMODE((tmp_path / "grid.png").stat().st_mode)
    assert mode == 0o666 & ~_umask()
    with pytest.raises(ValueError, match="unsupported file type"):
        save_image_grid(images, tmp_path / "grid.txt", rows=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.jpg", "grid.png", "grid.webp"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask

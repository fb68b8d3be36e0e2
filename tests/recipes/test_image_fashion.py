"""The image recipe end to end (smoke preset), its CLI, and its clear errors.

Fashion-MNIST must be installed (``make test`` does it): a missing data set fails these tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from resgen.cli import main
from resgen.data.fashion_mnist import DatasetNotFoundError, load_fashion_mnist


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("smoke")
    tick = time.perf_counter()
    status = main(["train", "image-fashion", "--preset", "smoke", "--out", str(out)])
    assert status == 0
    return out, time.perf_counter() - tick


def test_smoke_recipe_writes_everything(smoke_run: tuple[Path, float]) -> None:
    out, seconds = smoke_run
    print(f"smoke recipe: {seconds:.1f} s")
    grid = Image.open(out / "samples.png")
    assert grid.size == (10 * 28 * 2, 10 * 28 * 2)
    assert Image.open(out / "loss.png").size[0] > 100
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "codec_reconstruction_mse",
        "codec_final_loss",
        "generator_final_loss",
        "class_accuracy",
        "classifier_test_accuracy",
        "sampling_seconds_per_image",
        "wall_seconds",
    ):
        assert key in metrics
    assert 0.0 <= metrics["class_accuracy"] <= 1.0
    assert metrics["codec_reconstruction_mse"] < 0.5  # data lie in [-1, 1]: 1.0 is a blank guess
    for stage in ("codec", "classifier", "generator"):
        assert (out / stage / "final" / f"{stage}.safetensors").is_file()
        assert (out / stage / "final" / "config.json").is_file()


def test_rerun_resumes_instead_of_retraining(smoke_run: tuple[Path, float]) -> None:
    out, first = smoke_run
    before = (out / "generator" / "final" / "generator.safetensors").stat().st_mtime_ns
    tick = time.perf_counter()
    assert main(["train", "image-fashion", "--preset", "smoke", "--out", str(out)]) == 0
    assert (out / "generator" / "final" / "generator.safetensors").stat().st_mtime_ns == before
    assert time.perf_counter() - tick < first


def test_sample_command(smoke_run: tuple[Path, float], tmp_path: Path) -> None:
    out, _ = smoke_run
    target = tmp_path / "grid.png"
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(out),
                "--classes",
                "0,3",
                "--out",
                str(target),
                "--per-class",
                "4",
            ]
        )
        == 0
    )
    assert Image.open(target).size == (4 * 28 * 2, 2 * 28 * 2)
    assert main(["sample", "--checkpoint", str(out), "--classes", "12", "--out", str(target)]) == 2


def test_loaded_data_is_fashion_mnist() -> None:
    images, labels = load_fashion_mnist("test")
    assert images.shape == (10_000, 1, 28, 28) and labels.shape == (10_000,)
    assert float(images.min()) == -1.0 and float(images.max()) == 1.0
    assert torch.bincount(labels).tolist() == [1000] * 10


def test_missing_data_names_the_package(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", tmp_path)
    status = main(
        [
            "train",
            "image-fashion",
            "--preset",
            "smoke",
            "--out",
            str(tmp_path / "o"),
            "--data-dir",
            str(tmp_path),
        ]
    )
    assert status == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err


def test_unknown_recipe_and_preset(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "nope"]) == 2
    assert main(["train", "image-fashion", "--preset", "huge"]) == 2
    err = capsys.readouterr().err
    assert "image-fashion" in err and "smoke" in err


def test_recipes_listing(capsys: pytest.CaptureFixture) -> None:
    assert main(["recipes"]) == 0
    assert "image-fashion" in capsys.readouterr().out

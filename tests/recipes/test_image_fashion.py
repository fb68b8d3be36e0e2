"""The image recipe end to end (smoke preset), its CLI, and its clear errors.

Fashion-MNIST must be installed (``make test`` does it): a missing data set fails these tests.
"""

from __future__ import annotations

import json
import pickle
import shutil
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
    out, _ = smoke_run
    # Every trained stage's weights stay the files they were (no stage trains again); a wall-time
    # comparison with the first run said the same but failed on a loaded machine.
    weights = sorted(out.glob("*/final/*.safetensors"))
    assert {w.parent.parent.name for w in weights} >= {"codec", "classifier", "generator"}
    before = {w: w.stat().st_mtime_ns for w in weights}
    assert main(["train", "image-fashion", "--preset", "smoke", "--out", str(out)]) == 0
    assert {w: w.stat().st_mtime_ns for w in weights} == before
    assert not list(out.glob("*/latest"))  # nor started again


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
    assert not (tmp_path / "o").exists()  # the data are checked before the folder is made


def test_unknown_recipe_and_preset(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "nope"]) == 2
    assert main(["train", "image-fashion", "--preset", "huge"]) == 2
    err = capsys.readouterr().err
    assert "image-fashion" in err and "smoke" in err


def test_recipes_listing(capsys: pytest.CaptureFixture) -> None:
    assert main(["recipes"]) == 0
    assert "image-fashion" in capsys.readouterr().out


STAGES = ("codec", "classifier", "generator")


def test_a_run_killed_in_each_stage_ends_with_the_same_weights(
    smoke_run: tuple[Path, float], tmp_path: Path, kill_each_stage: list[str]
) -> None:
    out = tmp_path / "run"
    train = ["train", "image-fashion", "--preset", "smoke", "--out", str(out)]
    kills = 0
    while (status := main(train)) == 130:  # killed: re-run the same command
        kills += 1
    assert status == 0 and kills == 3 and kill_each_stage == list(STAGES)
    reference, _ = smoke_run
    for stage in STAGES:
        weights = f"{stage}/final/{stage}.safetensors"
        assert (out / weights).read_bytes() == (reference / weights).read_bytes(), stage
    ours, theirs = (json.loads((d / "metrics.json").read_text()) for d in (out, reference))
    for key in ("generator_final_loss", "class_accuracy", "fid_fashion_classifier"):
        assert ours[key] == theirs[key], key


class Payload:
    """Unpickling this creates ``path``: the stand-in for a hostile command."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.path), "w"))


def test_a_hostile_run_folder_runs_no_code(
    smoke_run: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({"step": 1, "history": [Payload(marker)]})
    run = tmp_path / "run"
    shutil.copytree(smoke_run[0], run)
    real = tmp_path / "real"
    real.mkdir()
    for i in range(4):
        Image.new("L", (28, 28), 40 * i).save(real / f"{i}.png")
    grid = tmp_path / "grid.png"
    commands = {
        "sample": ["sample", "--checkpoint", str(run), "--classes", "1", "--per-class", "2",
                   "--out", str(grid)],
        "eval": ["eval", "fid", "--features", "fashion", "--classifier", str(run), "--real",
                 str(real), "--fake", str(real), "--no-progress"],
    }  # fmt: skip
    # Every file that is not weights holds a payload, one at a time: no command runs it (a
    # file a command reads is refused with one line; one it does not read changes nothing).
    files = [p for p in run.rglob("*") if p.is_file() and p.suffix != ".safetensors"]
    assert len(files) >= 8
    for path in files:
        original = path.read_bytes()
        path.write_bytes(payload)
        for name, command in commands.items():
            status = main(command)
            err = capsys.readouterr().err.strip()
            assert not marker.exists(), (path, name)
            assert status == 0 or (status == 2 and len(err.splitlines()) == 1), (path, err)
        path.write_bytes(original)
    # The old state file name in every checkpoint: sampling, evaluation and a re-run of train
    # (which loads every finished stage) succeed without reading it.
    for folder in run.glob("*/final"):
        (folder / "state.pt").write_bytes(payload)
    for command in commands.values():
        assert main(command) == 0
    assert main(["train", "image-fashion", "--preset", "smoke", "--out", str(run)]) == 0
    assert not marker.exists()

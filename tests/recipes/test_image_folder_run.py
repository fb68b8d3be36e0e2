"""The image recipe on a folder of one's own images: classes from the folder, everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from resgen.cli import main


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("shapes")
    data = root / "data"
    for index, shape in enumerate(("ring", "bar", "dot")):
        (data / shape).mkdir(parents=True)
        for i in range(12):
            image = Image.new("L", (40, 40), 255)
            draw = ImageDraw.Draw(image)
            r = 8 + i % 5
            box = [20 - r, 20 - r, 20 + r, 20 + r]
            [draw.ellipse(box, outline=0, width=3), draw.rectangle([4, 16, 36, 24], fill=0),
             draw.ellipse(box, fill=0)][index]  # fmt: skip
            image.save(data / shape / f"{i:02d}.jpg")
    out = root / "run"
    train = ["train", "image-fashion", "--preset", "smoke", "--data-dir", str(data)]
    assert main([*train, "--out", str(out)]) == 0
    return data, out


def test_the_run_knows_its_classes(shapes_run: tuple[Path, Path]) -> None:
    _, out = shapes_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["bar", "dot", "ring"]
    assert json.loads((out / "recipe.json").read_text())["classes"] == ["bar", "dot", "ring"]
    assert metrics["class_accuracy_samples"] == 99  # 100 // 3 per class
    assert Image.open(out / "samples.png").size == (10 * 56, 3 * 56)  # a row per class


def test_sample_takes_the_run_s_classes(
    shapes_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = shapes_run
    grid = tmp_path / "grid.png"
    sample = ["sample", "--checkpoint", str(out), "--per-class", "2", "--out", str(grid)]
    assert main([*sample, "--classes", "2,0"]) == 0
    assert Image.open(grid).size == (2 * 56, 2 * 56)
    assert main([*sample, "--classes", "3"]) == 2
    assert "0..2 (0 bar, 1 dot, 2 ring)" in capsys.readouterr().err


def test_a_run_refuses_other_classes(
    shapes_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = shapes_run
    (data / "ring").rename(data / "circle")
    try:
        status = main(["train", "image-fashion", "--preset", "smoke", "--data-dir", str(data),
                       "--out", str(out)])  # fmt: skip
    finally:
        (data / "circle").rename(data / "ring")
    assert status == 2
    assert "trained on other classes (bar, dot, ring" in capsys.readouterr().err

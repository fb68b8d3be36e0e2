"""``resgen eval`` argument parsing, its printed results, and the fid command end to end (tiny
image folders)."""

from __future__ import annotations

import argparse
import json

import pytest
from PIL import Image

from resgen.data.image_io import load_idx_images
from resgen.eval.cli import _print_results, add_eval_parser
from resgen.eval.frechet import FeatureStats

FASHION_TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="resgen")
    add_eval_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_parser_wires_every_command() -> None:
    fid = parse(["eval", "fid", "--real", "a", "--fake", "b"])
    assert fid.features == "inception" and callable(fid.func)
    wer = parse(["eval", "wer", "--audio", "d", "--text", "t", "--asr", "pocketsphinx"])
    assert wer.asr == "pocketsphinx" and wer.beam_size == 1 and callable(wer.func)
    assert parse(["eval", "wer", "--audio", "d", "--text", "t", "--beam-size", "5"]).beam_size == 5
    sim = parse(["eval", "sim", "--audio", "d", "--reference", "r"])
    assert callable(sim.func)
    with pytest.raises(SystemExit):
        parse(["eval", "fid", "--real", "a", "--fake", "b", "--features", "clip"])
    with pytest.raises(SystemExit):
        parse(["eval"])


def test_fid_command_on_image_folders(tmp_path, capsys) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(load_idx_images(FASHION_TEST, limit=6)):
        Image.fromarray(img[0].numpy()).save(folder / f"{i}.png")
    saved = tmp_path / "real.npz"
    args = parse(
        [
            "eval",
            "fid",
            "--real",
            str(folder),
            "--fake",
            str(folder),
            "--save-real",
            str(saved),
            "--json",
            "--no-progress",
            "--precision-recall",
            "--k",
            "2",
        ]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fid"] == pytest.approx(0.0, abs=1e-6)
    assert out["precision"] == 1.0 and out["recall"] == 1.0 and out["real_count"] == 6
    assert FeatureStats.load(saved).count == 6


def test_fid_command_rejects_mismatched_stats(tmp_path) -> None:
    import numpy as np

    FeatureStats.from_features(np.random.rand(5, 3), extractor="other").save(tmp_path / "s.npz")
    args = parse(["eval", "fid", "--real", str(tmp_path / "s.npz"), "--fake", str(tmp_path)])
    with pytest.raises(ValueError, match="other"):
        args.func(args)


def test_fid_command_with_fashion_classifier(tmp_path, capsys) -> None:
    import torch
    from safetensors.torch import save_file

    from resgen.eval.classifier import FashionClassifier

    run = tmp_path / "run" / "classifier"
    run.mkdir(parents=True)
    save_file(FashionClassifier().state_dict(), str(run / "classifier.safetensors"))
    torch.save(FashionClassifier().state_dict(), tmp_path / "clf.pt")
    for checkpoint in (tmp_path / "run", tmp_path / "clf.pt"):
        args = parse(
            [
                "eval",
                "fid",
                "--real",
                FASHION_TEST,
                "--limit-real",
                "20",
                "--fake",
                FASHION_TEST,
                "--limit-fake",
                "20",
                "--features",
                "fashion",
                "--classifier",
                str(checkpoint),
                "--json",
                "--no-progress",
            ]
        )
        assert args.func(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["features"] == "fashion-classifier"
        assert out["fid"] == pytest.approx(0.0, abs=1e-6)
    # Cached statistics as --real, an image folder as --fake.
    stats = tmp_path / "real.npz"
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(load_idx_images(FASHION_TEST, limit=20)):
        Image.fromarray(img[0].numpy()).save(folder / f"{i:02d}.png")
    common = ["--features", "fashion", "--classifier", str(tmp_path / "clf.pt"), "--json"]
    args = parse(
        [
            "eval",
            "fid",
            "--real",
            FASHION_TEST,
            "--limit-real",
            "20",
            "--fake",
            str(folder),
            "--save-real",
            str(stats),
            "--no-progress",
            *common,
        ]
    )
    assert args.func(args) == 0
    capsys.readouterr()
    args = parse(
        ["eval", "fid", "--real", str(stats), "--fake", str(folder), "--no-progress", *common]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fid"] == pytest.approx(0.0, abs=1e-6) and out["real_count"] == 20
    args = parse(["eval", "fid", "--real", "a", "--fake", "b", "--features", "fashion"])
    with pytest.raises(ValueError, match="--classifier"):
        args.func(args)


def test_results_print_intervals_as_two_bounds(capsys) -> None:
    _print_results({"wer": 0.25, "wer_interval_95": (0.2, 0.3125), "seconds": 1.5}, False)
    assert capsys.readouterr().out.splitlines() == [
        "wer: 0.250000",
        "wer_interval_95: 0.200000 0.312500",
        "seconds: 1.5",
    ]
    _print_results({"wer_interval_95": (0.2, 0.3125)}, True)
    assert json.loads(capsys.readouterr().out) == {"wer_interval_95": [0.2, 0.3125]}


@pytest.mark.parametrize("classes", [10, 3])
def test_fid_command_reports_the_inception_score(tmp_path, capsys, classes: int) -> None:
    """``--inception-score``: the classifier's softmax over the fake set, as
    ``inception_score`` computes it; a classifier of any number of classes loads."""
    import torch
    from safetensors.torch import save_file

    from resgen.eval.classifier import FashionClassifier
    from resgen.eval.features import to_unit_range
    from resgen.eval.image_metrics import inception_score

    folder = tmp_path / "imgs"
    folder.mkdir()
    images = load_idx_images(FASHION_TEST, limit=12)
    for i, img in enumerate(images):
        Image.fromarray(img[0].numpy()).save(folder / f"{i:02d}.png")
    torch.manual_seed(1)
    classifier = FashionClassifier(classes).eval()
    weights = tmp_path / "classifier.safetensors"
    save_file(classifier.state_dict(), str(weights))
    command = ["eval", "fid", "--real", str(folder), "--fake", str(folder), "--features",
               "fashion", "--classifier", str(weights), "--json", "--no-progress"]  # fmt: skip
    args = parse([*command, "--inception-score", "--splits", "3"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    with torch.no_grad():
        expected = inception_score(classifier(to_unit_range(images)).softmax(-1), splits=3)
    assert printed["inception_score"] == pytest.approx(expected.mean, rel=1e-5)
    assert printed["inception_score_std"] == pytest.approx(expected.std, rel=1e-4, abs=1e-6)
    assert 1.0 <= printed["inception_score"] <= classes
    no_classifier = parse(["eval", "fid", "--real", str(folder), "--fake", str(folder),
                           "--inception-score"])  # fmt: skip
    with pytest.raises(ValueError, match="--inception-score needs --classifier"):
        no_classifier.func(no_classifier)

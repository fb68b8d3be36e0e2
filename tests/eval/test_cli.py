"""``resgen eval`` argument parsing and the fid command end to end (tiny image folders)."""

from __future__ import annotations

import argparse
import json

import pytest
from PIL import Image

from resgen.eval.cli import add_eval_parser
from resgen.eval.frechet import FeatureStats
from resgen.eval.image_io import load_idx_images

FASHION_TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="resgen")
    add_eval_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_parser_wires_every_command() -> None:
    fid = parse(["eval", "fid", "--real", "a", "--fake", "b"])
    assert fid.features == "inception" and callable(fid.func)
    wer = parse(["eval", "wer", "--audio", "d", "--text", "t", "--asr", "pocketsphinx"])
    assert wer.asr == "pocketsphinx" and callable(wer.func)
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
        ["eval", "fid", "--real", str(folder), "--fake", str(folder), "--save-real", str(saved),
         "--json", "--no-progress", "--precision-recall", "--k", "2"]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fid"] == pytest.approx(0.0, abs=1e-6)
    assert out["precision"] == 1.0 and out["recall"] == 1.0 and out["real_count"] == 6
    assert FeatureStats.load(saved).count == 6
    # Cached statistics as --real, an IDX file as --fake.
    args = parse(
        ["eval", "fid", "--real", str(saved), "--fake", FASHION_TEST, "--limit-fake", "6",
         "--no-progress"]
    )
    assert args.func(args) == 0
    assert "fid: 0.0" in capsys.readouterr().out


def test_fid_command_rejects_mismatched_stats(tmp_path) -> None:
    import numpy as np

    FeatureStats.from_features(np.random.rand(5, 3), extractor="other").save(tmp_path / "s.npz")
    args = parse(["eval", "fid", "--real", str(tmp_path / "s.npz"), "--fake", str(tmp_path)])
    with pytest.raises(SystemExit, match="other"):
        args.func(args)

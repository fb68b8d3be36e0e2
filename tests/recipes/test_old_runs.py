"""Run folders written before the move of issue 24 still resume, sample and evaluate.

``tests/recipes/old_runs/`` holds what the old layout's code (commit 267dfb5, before the move)
wrote for the two smoke presets: the ``final`` checkpoint of every trained stage (weights,
``config.json``, ``state.pt``), ``recipe.json`` and, for TTS, ``phonemes.json`` and
``duration.json``; ``prompt.wav`` is a corpus utterance of a held-out speaker. Nothing in a run
folder names a module: configs are plain JSON and ``state.pt`` pickles only torch objects
(checked below), so the folders need no loader.

A resumed run loads each finished stage instead of training it again, and re-runs the rest
(classifier, tokens, corpus, evaluation). If a smoke preset's training settings change, these
folders become runs of another configuration and resuming them is refused, as it should be:
write new ones with ``tools/smoke_fingerprint.sh`` and copy the same files.
"""

from __future__ import annotations

import hashlib
import json
import pickletools
import shutil
import zipfile
from pathlib import Path

import pytest
from attrs import evolve

from resgen.cli import main
from resgen.diffusion.loss import ResGenObjective

OLD = Path(__file__).parent / "old_runs"
PROMPT_TEXT = "We will order this golden card tonight."


def _weights(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*.safetensors"))
        if "final" in p.parts
    }


def test_old_state_files_pickle_only_torch_objects() -> None:
    states = sorted(OLD.rglob("state.pt"))
    assert states
    for state in states:
        with zipfile.ZipFile(state) as archive:
            (pickle,) = [n for n in archive.namelist() if n.endswith("data.pkl")]
            ops = pickletools.genops(archive.read(pickle))
            strings = [
                str(arg) for op, arg, _ in ops if "UNICODE" in op.name or "GLOBAL" in op.name
            ]
        assert not [s for s in strings if "resgen" in s], state


def test_old_image_run_samples(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    code = main(
        ["sample", "--checkpoint", str(OLD / "image-fashion"), "--classes", "0,7"]
        + ["--per-class", "3", "--out", str(out)]
    )
    assert code == 0 and out.stat().st_size > 0


def test_old_tts_run_speaks(tmp_path: Path) -> None:
    out = tmp_path / "said.wav"
    code = main(
        ["tts", "--checkpoint", str(OLD / "tts-synth"), "--text", "Clara found a red cup."]
        + ["--prompt", str(OLD / "prompt.wav"), "--prompt-text", PROMPT_TEXT]
        + ["--steps", "2", "--out", str(out)]
    )
    assert code == 0 and out.stat().st_size > 44


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["image-fashion", "tts-synth"])
def test_old_run_resumes_and_evaluates(recipe: str, tmp_path: Path) -> None:
    from resgen.recipes import load_recipe

    run_dir = tmp_path / recipe
    shutil.copytree(OLD / recipe, run_dir)
    trained = _weights(run_dir)
    module = load_recipe(recipe)
    config = module.PRESETS["smoke"]
    # Resuming takes the settings the run was trained with; the image recipe's default
    # objective changed since (issue 23), so the old one is given.
    saved = json.loads((run_dir / "recipe.json").read_text())["objective"]
    config = evolve(config, objective=ResGenObjective(**saved))
    metrics = module.run(run_dir, config)
    assert _weights(run_dir) | trained == _weights(run_dir)  # the old stages were not retrained
    for final in (OLD / recipe).rglob("final"):  # ... nor started again
        assert not (run_dir / final.relative_to(OLD / recipe)).with_name("latest").exists()
    assert (run_dir / "metrics.json").is_file() and metrics


def test_an_old_image_run_under_today_s_objective_is_refused(tmp_path: Path) -> None:
    from resgen.recipes import load_recipe

    run_dir = tmp_path / "image-fashion"
    shutil.copytree(OLD / "image-fashion", run_dir)
    module = load_recipe("image-fashion")
    with pytest.raises(ValueError, match="differs in: objective"):
        module.run(run_dir, module.PRESETS["smoke"])

"""Every stage of every recipe gives every trainable parameter a gradient in a step.

DistributedDataParallel runs without ``find_unused_parameters`` unless a stage's
:class:`~resgen.training.trainer.StageSpec` asks for it; a parameter left without a gradient
would then fail the step on several processes. This probe runs each recipe at smoke size with
``run_stage`` replaced by a spy: before a stage trains (for one step, to keep the test short),
one step of its loss, through the loss function's micro-batch path, is differentiated and every
trainable parameter must have a gradient, unless the stage sets the flag.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from attrs import evolve
from test_imagenet import make_folder

from resgen.training import trainer
from resgen.training.trainer import BatchPart


class _Stop(Exception):
    """Ends a run after its last trained stage (sampling is not probed)."""


def _spy(probed: dict[str, list[str]], last: str):  # noqa: ANN202
    """A ``run_stage`` that records the parameters one step leaves without a gradient, then
    trains the stage for one step (later stages read its checkpoint) or stops after ``last``."""

    def run_stage(name, folder, modules, spec, loss_fn, config, **kwargs):  # noqa: ANN001, ANN202
        for module in modules.values():
            module.train()
        params = {
            f"{key}.{n}": p
            for key, module in modules.items()
            for n, p in module.named_parameters()
            if p.requires_grad
        }
        for step in (0, 1):  # two batches: the kinds of batch and the dropout draws vary
            for p in params.values():
                p.grad = None
            loss, _ = loss_fn(step, BatchPart(step, 0, 1, spec.batch_size))
            loss.backward()
            unused = [n for n, p in params.items() if p.grad is None]
            if not spec.find_unused_parameters:
                probed.setdefault(name, []).extend(unused)
        for p in params.values():
            p.grad = None
        if name == last:
            raise _Stop
        short = evolve(spec, steps=1, warmup=0)
        return trainer.run_stage(name, folder, modules, short, loss_fn, config, **kwargs)

    return run_stage


def test_tts_synth_stages_leave_no_parameter_unused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resgen.recipes import tts_synth
    from resgen.recipes.tts_synth_config import PRESETS
    from resgen.tts import timing

    probed: dict[str, list[str]] = {}
    spy = _spy(probed, last="ar")
    monkeypatch.setattr(tts_synth, "run_stage", spy)
    monkeypatch.setattr(timing, "run_stage", spy)
    # every batch reads the network's own guess and drops its text: those paths are covered
    config = evolve(PRESETS["smoke"], scheduled_sampling=0.99, text_dropout=0.9)
    with pytest.raises(_Stop):
        tts_synth.run(tmp_path / "run", config)
    assert probed == {name: [] for name in ("codec", "aligner", "timing", "resgen", "ar")}


@pytest.mark.parametrize("generator", ["resgen", "token", "ar"])
def test_image_fashion_stages_leave_no_parameter_unused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, generator: str
) -> None:
    from resgen.recipes import image_fashion

    probed: dict[str, list[str]] = {}
    monkeypatch.setattr(image_fashion, "run_stage", _spy(probed, last="generator"))
    with pytest.raises(_Stop):
        image_fashion.run(tmp_path / "run", image_fashion.configure("smoke", generator=generator))
    assert probed == {"codec": [], "classifier": [], "generator": []}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("imagenet") / "data")


@pytest.mark.parametrize("generator", ["resgen", "token", "ar"])
def test_imagenet_stages_leave_no_parameter_unused(
    tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, generator: str
) -> None:
    from resgen.recipes import imagenet

    probed: dict[str, list[str]] = {}
    monkeypatch.setattr(imagenet, "run_stage", _spy(probed, last="generator"))
    config = imagenet.configure("smoke", generator=generator)
    with pytest.raises(_Stop):
        imagenet.run(tmp_path / "run", config, data_dir=tiny_folder)
    assert probed == {"codec": [], "generator": []}


def test_a_parameter_left_out_is_found() -> None:
    """The probe's own check: a branch a step does not take leaves its weights without a
    gradient (what would need ``find_unused_parameters=True``)."""
    used, skipped = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    used(torch.ones(1, 2)).sum().backward()
    assert used.weight.grad is not None and skipped.weight.grad is None

"""The ``device`` option of the trainer, the image recipe and the CLI.

Everything here runs on the CPU; the tests marked ``cuda`` run only where a GPU is visible and
check that a run trained there is written device-independently (it resumes and samples on the
CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from resgen.cli import main
from resgen.eval.classifier import FashionClassifier, class_accuracy
from resgen.eval.features import ClassifierFeatures
from resgen.quantizers import kmeans, sample_depth_cutoffs
from resgen.recipes.image_fashion import (
    PRESETS,
    generate_images,
    load_trained,
    make_recipe_sampler,
    run,
)
from resgen.training.checkpoint import load_checkpoint
from resgen.training.trainer import StageSpec, batch_generator, resolve_device, run_stage

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_resolve_device_accepts_the_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["banana", "cuda:x", ""])
def test_unknown_device_strings_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(name)


def test_unsupported_device_types_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        resolve_device("meta")


@pytest.mark.usefixtures("no_cuda")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match=r"requested but torch\.cuda\.is_available\(\) is False"):
        resolve_device(name)


def test_cuda_index_beyond_the_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


@pytest.mark.usefixtures("no_cuda")
def test_run_checks_the_device_before_any_work(tmp_path: Path) -> None:
    for name, message in (("banana", "unknown device"), ("cuda", "is_available")):
        with pytest.raises(ValueError, match=message):
            run(tmp_path / name, PRESETS["smoke"], device=name)
        assert not (tmp_path / name).exists()


@pytest.mark.usefixtures("no_cuda")
def test_cli_refuses_an_unavailable_device(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    train = ["train", "image-fashion", "--preset", "smoke", "--out", str(out)]
    assert main([*train, "--device", "cuda"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err
    assert not out.exists()
    assert main([*train, "--device", "banana"]) == 2
    assert "unknown device" in capsys.readouterr().err
    sample = ["sample", "--checkpoint", str(out), "--classes", "0", "--out", str(tmp_path / "g")]
    assert main([*sample, "--device", "cuda"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err


@pytest.mark.usefixtures("no_cuda")
def test_cli_refuses_an_unavailable_device_for_the_tts_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    train = ["train", "tts-synth", "--preset", "smoke", "--out", str(out)]
    assert main([*train, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "torch.cuda.is_available() is False" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_batch_generator_defaults_to_the_cpu() -> None:
    gen = batch_generator(3, 5)
    assert gen.device == torch.device("cpu")
    assert gen.initial_seed() == 3 * 1_000_003 + 5
    assert batch_generator(3, 5, "cpu").initial_seed() == gen.initial_seed()


def test_run_stage_validates_and_moves_to_the_device(tmp_path: Path) -> None:
    model = nn.Linear(2, 1)
    spec = StageSpec(steps=3, batch_size=4, lr=1e-2)

    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x = torch.randn(spec.batch_size, 2, generator=batch_generator(0, step))
        return model(x).pow(2).mean(), {}

    with pytest.raises(ValueError, match="unknown device"):
        run_stage("s", tmp_path / "bad", {"m": model}, spec, loss_fn, {}, device="banana")
    result = run_stage("s", tmp_path / "ok", {"m": model}, spec, loss_fn, {}, device="cpu")
    assert result.history and model.weight.device.type == "cpu"


def test_quantizer_draws_with_a_cpu_generator_are_unchanged() -> None:
    """The generator-device plumbing keeps the CPU draws of before (same calls, same order)."""
    gen = torch.Generator().manual_seed(7)
    got = sample_depth_cutoffs(64, 8, prob=0.5, min_depth=2, generator=gen)
    ref = torch.Generator().manual_seed(7)
    cut = torch.rand(64, generator=ref) < 0.5
    drawn = torch.randint(2, 9, (64,), generator=ref)
    assert torch.equal(got, torch.where(cut, drawn, torch.full_like(drawn, 8)))

    points = torch.randn(200, 3)
    got = kmeans(points, 8, 0, plus_plus=False, generator=torch.Generator().manual_seed(1))
    picks = torch.randperm(200, generator=torch.Generator().manual_seed(1))[:8]
    assert torch.equal(got, points[picks])


def test_evaluation_follows_the_classifier_device() -> None:
    classifier = FashionClassifier()
    features = ClassifierFeatures(classifier)
    assert features.device == torch.device("cpu")
    images = torch.rand(6, 1, 28, 28) * 2 - 1
    assert features(images).device.type == "cpu"
    assert 0.0 <= class_accuracy(classifier, images, torch.arange(6)) <= 1.0


# --------------------------------------------------------------------------- on a GPU only
@cuda
def test_stage_trained_on_cuda_resumes_on_the_cpu(tmp_path: Path) -> None:
    spec = StageSpec(steps=20, batch_size=8, lr=1e-2, checkpoint_every=10)
    data = torch.randn(64, 3)

    def loss_fn_for(model: nn.Module, stop: int | None = None):  # noqa: ANN202
        def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
            if step == stop:
                raise KeyboardInterrupt
            idx = torch.randint(64, (spec.batch_size,), generator=batch_generator(0, step))
            device = next(model.parameters()).device
            return model(data[idx].to(device)).pow(2).mean(), {}

        return loss_fn

    torch.manual_seed(0)
    gpu = nn.Linear(3, 1)
    with pytest.raises(KeyboardInterrupt):
        run_stage("s", tmp_path, {"m": gpu}, spec, loss_fn_for(gpu, 15), {}, device="cuda")
    state = load_checkpoint(tmp_path / "latest", {"m": nn.Linear(3, 1)}, training_state=True)
    moments = state["optimizer"]["state"][0]["exp_avg"]
    assert moments.device.type == "cpu"
    cpu = nn.Linear(3, 1)
    run_stage("s", tmp_path, {"m": cpu}, spec, loss_fn_for(cpu), {}, device="cpu")
    assert cpu.weight.device.type == "cpu"
    for tensor in load_file(str(tmp_path / "final" / "m.safetensors")).values():
        assert tensor.device.type == "cpu"


@cuda
def test_smoke_recipe_on_cuda_samples_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train = ["train", "image-fashion", "--preset", "smoke", "--out", str(out)]
    assert main([*train, "--device", "cuda"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["class_accuracy"] <= 1.0
    codec, model, config = load_trained(out, device="cpu")
    assert next(model.parameters()).device.type == "cpu"
    images = generate_images(codec, model, torch.arange(4), make_recipe_sampler(config), seed=0)
    assert images.shape == (4, 1, 28, 28) and images.device.type == "cpu"
    codec, model, config = load_trained(out, device="cuda")
    images = generate_images(codec, model, torch.arange(4), make_recipe_sampler(config), seed=0)
    assert images.device.type == "cpu"
    target = tmp_path / "grid.png"
    sample = ["sample", "--checkpoint", str(out), "--classes", "0,1", "--out", str(target)]
    assert main([*sample, "--per-class", "2", "--device", "cuda"]) == 0
    # The same folder resumes on the CPU without retraining (only sampling and scoring re-run).
    before = (out / "generator" / "final" / "generator.safetensors").stat().st_mtime_ns
    assert main(train) == 0
    assert (out / "generator" / "final" / "generator.safetensors").stat().st_mtime_ns == before

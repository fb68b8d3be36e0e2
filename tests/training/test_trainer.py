"""Resumable stages and atomic, validated checkpoints."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch
from torch import nn

from resgen.networks.heads import MixtureOfGaussiansHead
from resgen.training.averaging import WeightAverage
from resgen.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from resgen.training.trainer import StageSpec, batch_generator, run_stage

SPEC = StageSpec(steps=30, batch_size=8, lr=1e-2, checkpoint_every=10)
# its own generator: module-level data must not depend on what the session imported before
DATA = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
TARGET = DATA @ torch.tensor([[1.0], [-2.0], [0.5]])


def _loss_fn(model: nn.Module, interrupt_at: int | None = None):  # noqa: ANN202
    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if step == interrupt_at:
            raise KeyboardInterrupt
        idx = torch.randint(64, (SPEC.batch_size,), generator=batch_generator(0, step))
        return ((model(DATA[idx]) - TARGET[idx]) ** 2).mean(), {}

    return loss_fn


def test_interrupted_stage_resumes_to_the_same_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    straight = nn.Linear(3, 1)
    run_stage("s", tmp_path / "a", {"m": straight}, SPEC, _loss_fn(straight), {"v": 1})

    torch.manual_seed(0)
    interrupted = nn.Linear(3, 1)
    with pytest.raises(KeyboardInterrupt):
        run_stage(
            "s", tmp_path / "b", {"m": interrupted}, SPEC, _loss_fn(interrupted, 25), {"v": 1}
        )
    assert (tmp_path / "b" / "latest" / "config.json").is_file()
    assert not (tmp_path / "b" / "final").exists()

    resumed = nn.Linear(3, 1)  # fresh weights: everything must come from the checkpoint
    result = run_stage("s", tmp_path / "b", {"m": resumed}, SPEC, _loss_fn(resumed), {"v": 1})
    assert torch.equal(resumed.weight, straight.weight)
    assert result.history[0][0] == 0 and result.history[-1][0] == SPEC.steps - 1

    # A finished stage only loads.
    again = nn.Linear(3, 1)
    run_stage("s", tmp_path / "b", {"m": again}, SPEC, _loss_fn(again, interrupt_at=0), {"v": 1})
    assert torch.equal(again.weight, straight.weight)


def test_checkpoint_errors_are_clear(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "ck", {"m": model}, {"width": 2}, {"step": 3})
    loaded = load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, {"width": 2})
    assert loaded is None  # training state is read only when asked for
    state = load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, training_state=True)
    assert state == {"step": 3}
    with pytest.raises(CheckpointError, match="differs in: width"):
        load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, {"width": 4})
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 5)})
    (tmp_path / "ck" / "m.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)})
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing", {"m": model})


def test_checkpoint_write_is_atomic(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "ck", {"m": model}, {"v": 1})

    class Exploding(nn.Module):
        def state_dict(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(tmp_path / "ck", {"m": model, "x": Exploding()}, {"v": 2})
    # The previous checkpoint is intact and no temporary folder is left behind.
    assert (
        load_checkpoint(tmp_path / "ck", {"m": nn.Linear(3, 2)}, {"v": 1}, training_state=True)
        is None
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_validation_runs_in_eval_mode_and_survives_a_resume(tmp_path: Path) -> None:
    held_out = torch.randn(16, 3)
    seen_modes: list[bool] = []

    def validate_for(model: nn.Module):  # noqa: ANN202
        def validate() -> float:
            seen_modes.append(model.training)
            assert not torch.is_grad_enabled()
            return float(
                ((model(held_out) - held_out @ torch.tensor([[1.0], [-2.0], [0.5]])) ** 2).mean()
            )

        return validate

    torch.manual_seed(0)
    straight = nn.Linear(3, 1)
    result = run_stage(
        "s",
        tmp_path / "a",
        {"m": straight},
        SPEC,
        _loss_fn(straight),
        {"v": 1},
        validate=validate_for(straight),
    )
    # every checkpoint (10, 20) and the end (30); training mode restored in between
    assert [step for step, _ in result.validation] == [10, 20, SPEC.steps]
    assert seen_modes == [False, False, False] and not straight.training
    assert result.validation[-1][1] < result.validation[0][1]  # it learns the held-out map

    torch.manual_seed(0)
    interrupted = nn.Linear(3, 1)
    with pytest.raises(KeyboardInterrupt):
        run_stage(
            "s",
            tmp_path / "b",
            {"m": interrupted},
            SPEC,
            _loss_fn(interrupted, 25),
            {"v": 1},
            validate=validate_for(interrupted),
        )
    resumed = nn.Linear(3, 1)
    again = run_stage(
        "s",
        tmp_path / "b",
        {"m": resumed},
        SPEC,
        _loss_fn(resumed),
        {"v": 1},
        validate=validate_for(resumed),
    )
    assert [s for s, _ in again.validation] == [10, 20, SPEC.steps]
    assert [v for _, v in again.validation] == pytest.approx(
        [v for _, v in result.validation], abs=1e-5
    )
    # a finished stage loads its validation history without validating again
    loaded = run_stage(
        "s", tmp_path / "b", {"m": nn.Linear(3, 1)}, SPEC, _loss_fn(resumed), {"v": 1}
    )
    assert loaded.validation == again.validation


def test_validate_every_must_be_positive(tmp_path: Path) -> None:
    model = nn.Linear(3, 1)
    with pytest.raises(ValueError, match="validate_every"):
        run_stage(
            "s",
            tmp_path,
            {"m": model},
            SPEC,
            _loss_fn(model),
            {"v": 1},
            validate=lambda: 0.0,
            validate_every=-1,
        )


def test_bfloat16_precision_autocasts_the_forward_and_keeps_float32_weights(
    tmp_path: Path,
) -> None:
    def mse(model: nn.Module) -> float:
        return float(((model(DATA) - TARGET) ** 2).mean())

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    untrained = mse(model)
    dtypes: list[torch.dtype] = []
    inner = _loss_fn(model)

    def loss_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        dtypes.append(model(DATA[:2]).dtype)
        return inner(step)

    spec = attrs.evolve(SPEC, steps=200, precision="bfloat16")
    run_stage("s", tmp_path / "bf16", {"m": model}, spec, loss_fn, {"v": 1})
    assert set(dtypes) == {torch.bfloat16}  # the forward ran in bfloat16
    assert model.weight.dtype == torch.float32  # the weights did not

    torch.manual_seed(0)
    reference = nn.Linear(3, 1)
    spec = attrs.evolve(spec, precision="float32")
    run_stage("s", tmp_path / "f32", {"m": reference}, spec, _loss_fn(reference), {"v": 1})
    # it learns as the float32 stage does, within bfloat16's rounding
    assert mse(model) < untrained / 4
    assert mse(model) == pytest.approx(mse(reference), rel=0.05, abs=0.01)
    with pytest.raises(ValueError, match="precision"):
        StageSpec(steps=1, batch_size=1, lr=1.0, precision="float16")


def test_the_mixture_head_computes_in_float32_under_autocast() -> None:
    head = MixtureOfGaussiansHead(width=8, dim=4, components=2, rank=4)
    hidden = torch.randn(2, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        params = head(hidden.bfloat16())
    assert params.means.dtype == torch.float32
    assert torch.allclose(params.means, head(hidden.bfloat16().float()).means)


def test_weight_average_follows_the_warmed_up_decay() -> None:
    param = nn.Parameter(torch.zeros(2))
    average = WeightAverage([param], decay=0.9)
    expected = torch.zeros(2)
    for n, value in enumerate([1.0, 3.0, -2.0, 5.0, 4.0], start=1):
        with torch.no_grad():
            param.fill_(value)
        decay = min(0.9, (1 + n) / (10 + n))
        assert average.current_decay() == pytest.approx(decay)
        average.update()
        expected = decay * expected + (1 - decay) * value
        assert torch.allclose(average.averages[0], expected)
    with average.swapped():
        assert torch.allclose(param, expected)
    assert torch.equal(param.detach(), torch.full((2,), 4.0))  # the trained value is back
    with pytest.raises(ValueError, match=r"decay must lie in \(0, 1\)"):
        WeightAverage([param], decay=1.0)
    with pytest.raises(ValueError, match="do not match"):
        average.load_state_dict({"updates": 1, "averages": [torch.zeros(3)]})


def test_a_stage_with_a_weight_average_ends_on_it_and_resumes_exactly(tmp_path: Path) -> None:
    spec = attrs.evolve(SPEC, ema_decay=0.8)
    torch.manual_seed(0)
    plain = nn.Linear(3, 1)
    seen: list[torch.Tensor] = []  # the weights each step starts from
    inner = _loss_fn(plain)

    def recording(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        seen.append(plain.weight.detach().clone())
        return inner(step)

    run_stage("s", tmp_path / "plain", {"m": plain}, SPEC, recording, {"v": 1})
    expected = seen[0]
    for n, weight in enumerate([*seen[1:], plain.weight.detach()], start=1):
        decay = min(0.8, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * weight

    torch.manual_seed(0)
    averaged = nn.Linear(3, 1)
    straight = run_stage(
        "s",
        tmp_path / "a",
        {"m": averaged},
        spec,
        _loss_fn(averaged),
        {"v": 1},
        validate=lambda: float(averaged.weight.sum()),
    )
    assert torch.allclose(averaged.weight, expected, atol=1e-6)
    assert not torch.allclose(averaged.weight, plain.weight, atol=1e-3)
    assert straight.validation[-1][1] == pytest.approx(float(expected.sum()), abs=1e-5)
    loaded = nn.Linear(3, 1)  # the final checkpoint holds the average
    run_stage("s", tmp_path / "a", {"m": loaded}, spec, _loss_fn(loaded), {"v": 1})
    assert torch.equal(loaded.weight, averaged.weight)

    torch.manual_seed(0)
    interrupted = nn.Linear(3, 1)
    with pytest.raises(KeyboardInterrupt):
        run_stage(
            "s", tmp_path / "b", {"m": interrupted}, spec, _loss_fn(interrupted, 25), {"v": 1}
        )
    resumed = nn.Linear(3, 1)
    run_stage("s", tmp_path / "b", {"m": resumed}, spec, _loss_fn(resumed), {"v": 1})
    assert torch.allclose(resumed.weight, averaged.weight, atol=1e-6)

    torch.manual_seed(0)
    unaveraged = nn.Linear(3, 1)
    with pytest.raises(KeyboardInterrupt):
        run_stage("s", tmp_path / "c", {"m": unaveraged}, SPEC, _loss_fn(unaveraged, 25), {"v": 1})
    with pytest.raises(ValueError, match="holds no weight average"):
        run_stage("s", tmp_path / "c", {"m": unaveraged}, spec, _loss_fn(unaveraged), {"v": 1})

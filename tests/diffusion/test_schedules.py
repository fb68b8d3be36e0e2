"""Masking schedules: endpoints, monotonicity, values, the factory and ``masked_count``."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resgen.diffusion.schedules import (
    SCHEDULES,
    ArccosSchedule,
    CosineSchedule,
    LinearSchedule,
    MaskSchedule,
    PowerSchedule,
    masked_count,
    schedule_from_name,
)

ALL = [CosineSchedule(), LinearSchedule(), ArccosSchedule(), PowerSchedule(0.5), PowerSchedule(3)]
IDS = ["cosine", "linear", "arccos", "power0.5", "power3"]


@pytest.mark.parametrize("schedule", ALL, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_endpoints_range_and_monotone(schedule: MaskSchedule, dtype: torch.dtype) -> None:
    assert isinstance(schedule, MaskSchedule)
    ends = schedule(torch.tensor([0.0, 1.0], dtype=dtype))
    assert ends.dtype == dtype
    assert ends[0].item() == 1.0
    assert abs(ends[1].item()) <= 1e-7
    r = torch.linspace(0, 1, 10_001, dtype=dtype)
    gamma = schedule(r)
    assert bool(((gamma >= 0) & (gamma <= 1)).all())
    assert bool((gamma[1:] <= gamma[:-1]).all())
    assert gamma.shape == r.shape


@pytest.mark.parametrize(
    ("schedule", "r", "expected"),
    [
        (CosineSchedule(), 0.5, math.sqrt(0.5)),
        (LinearSchedule(), 0.25, 0.75),
        (ArccosSchedule(), 0.5, 2 / 3),  # arccos(1/2) = pi/3
        (PowerSchedule(2), 0.5, 0.75),
        (PowerSchedule(3), 0.5, 0.875),
        (PowerSchedule(0.5), 0.25, 0.5),
        (PowerSchedule(1), 0.3, 0.7),
    ],
)
def test_values(schedule: MaskSchedule, r: float, expected: float) -> None:
    got = schedule(torch.tensor([r], dtype=torch.float64)).item()
    assert got == pytest.approx(expected, abs=1e-12)


def test_shapes_are_preserved() -> None:
    r = torch.rand(2, 3, 4)
    for schedule in ALL:
        assert schedule(r).shape == (2, 3, 4)
    assert schedule(torch.tensor(0.5)).shape == ()


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(0.05, 20),
    st.sampled_from(["cosine", "linear", "arccos", "power"]),
)
def test_monotone_for_any_pair(a: float, b: float, exponent: float, name: str) -> None:
    kwargs = {"exponent": exponent} if name == "power" else {}
    schedule = schedule_from_name(name, **kwargs)
    lo, hi = min(a, b), max(a, b)
    g = schedule(torch.tensor([lo, hi], dtype=torch.float64))
    assert g[0].item() >= g[1].item()
    assert 0.0 <= g[1].item() <= g[0].item() <= 1.0


def test_factory() -> None:
    assert set(SCHEDULES) == {"cosine", "linear", "arccos", "power"}
    assert schedule_from_name("cosine") == CosineSchedule()
    assert schedule_from_name(" Linear ") == LinearSchedule()
    assert schedule_from_name("ARCCOS") == ArccosSchedule()
    assert schedule_from_name("power", exponent=3) == PowerSchedule(3.0)
    assert PowerSchedule().exponent == 2.0
    with pytest.raises(ValueError, match="valid names: arccos, cosine, linear, power"):
        schedule_from_name("sqrt")
    with pytest.raises(ValueError, match="exponent"):
        schedule_from_name("power", exponent=0)
    with pytest.raises(ValueError, match="exponent"):
        PowerSchedule(float("nan"))
    with pytest.raises(ValueError, match="cosine"):
        schedule_from_name("cosine", exponent=2)


def test_schedules_are_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        PowerSchedule(2).exponent = 3.0  # type: ignore[misc]


@pytest.mark.parametrize("schedule", ALL, ids=IDS)
@pytest.mark.parametrize("total", [1, 7, 64])
def test_masked_count_range(schedule: MaskSchedule, total: int) -> None:
    r = torch.linspace(0, 1, 513)
    n = masked_count(schedule, r, total)
    assert n.dtype == torch.long and n.shape == r.shape
    assert bool(((n >= 1) & (n <= total)).all())
    assert n[0].item() == total and n[-1].item() == 1
    assert bool((n[1:] <= n[:-1]).all())
    n0 = masked_count(schedule, r, total, minimum=0)
    assert n0[-1].item() == 0 and n0[0].item() == total
    # ceil(gamma * total): never fewer masked than the schedule asks, less than one more
    gamma = schedule(r.double()) * total
    assert bool((n0 >= gamma - 1e-5).all()) and bool((n0 < gamma + 1).all())


def test_masked_count_guards_float_noise_and_bad_totals() -> None:
    # gamma(0.5) * 8 = 4 exactly for the linear schedule: 4 slots, not 5
    assert masked_count(LinearSchedule(), torch.tensor([0.5]), 8).item() == 4
    with pytest.raises(ValueError, match="total"):
        masked_count(CosineSchedule(), torch.tensor([0.5]), 0)

"""The duration model: costs recovered from noiseless data; a prompt's rate carries over."""

from __future__ import annotations

import pytest
import torch

from resgen.networks.duration import PhonemeDurationModel


def _data(cost: torch.Tensor, rates: dict[str, float], n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    texts, frames, speakers = [], [], []
    for i in range(n):
        speaker = list(rates)[i % len(rates)]
        ids = torch.randint(1, len(cost), (int(torch.randint(3, 12, (1,), generator=gen)),),
                            generator=gen)  # fmt: skip
        texts.append(ids)
        frames.append(float(rates[speaker] * cost[ids].sum()))
        speakers.append(speaker)
    return texts, frames, speakers


def test_fit_recovers_costs_up_to_the_rate_scale() -> None:
    cost = torch.tensor([0.0, 2.0, 3.0, 5.0, 1.0, 4.0], dtype=torch.float64)
    rates = {"fast": 0.8, "slow": 1.2, "mid": 1.0}
    texts, frames, speakers = _data(cost, rates, 60)
    model = PhonemeDurationModel.fit(texts, frames, speakers, len(cost))
    # rates are normalised to mean 1 (here they already are), so the costs come back as they are
    torch.testing.assert_close(model.cost[1:], cost[1:], rtol=1e-6, atol=1e-6)
    # a new speaker at rate 1.5: its prompt's rate carries over to the target
    prompt, target = torch.tensor([1, 2, 3]), torch.tensor([3, 3, 5])
    prompt_frames = round(1.5 * float(cost[prompt].sum()))
    assert model(prompt, prompt_frames, target) == round(1.5 * float(cost[target].sum()))


def test_it_beats_frames_per_phoneme_when_symbols_differ_in_length() -> None:
    cost = torch.tensor([0.0, 1.0, 9.0], dtype=torch.float64)
    model = PhonemeDurationModel.fit(*_data(cost, {"a": 1.0}, 30), vocabulary=3)
    prompt, target = torch.tensor([1, 1, 1, 2]), torch.tensor([2, 2, 2, 1])
    assert model(prompt, 12, target) == 28  # per phoneme it would say 12


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="as many"):
        PhonemeDurationModel.fit([torch.tensor([1])], [3.0, 4.0], ["a"], 3)
    with pytest.raises(ValueError, match="outside"):
        PhonemeDurationModel.fit([torch.tensor([5])], [3.0], ["a"], 3)
    model = PhonemeDurationModel(3)
    model.cost.zero_()
    with pytest.raises(ValueError, match="no cost"):
        model(torch.tensor([1]), 10, torch.tensor([2]))
    with pytest.raises(ValueError, match=">= 1"):
        PhonemeDurationModel(0)


def test_per_phoneme_durations_give_the_costs_and_the_ends() -> None:
    cost = torch.tensor([0.0, 2.0, 3.0, 5.0, 1.0, 4.0], dtype=torch.float64)
    rates = {"fast": 0.5, "slow": 1.5}
    texts, frames, speakers = _data(cost, rates, 40)
    durations = [rates[s] * cost[t] for t, s in zip(texts, speakers)]
    model = PhonemeDurationModel.fit(texts, frames, speakers, len(cost), durations=durations)
    torch.testing.assert_close(model.cost[1:], cost[1:], rtol=1e-6, atol=1e-6)
    ends = model.ends(torch.tensor([1, 3, 4]))
    torch.testing.assert_close(ends, torch.tensor([2 / 8, 7 / 8, 1.0]))
    # a symbol without cost still takes a sliver: the ends strictly increase
    assert (model.ends(torch.tensor([0, 1, 0])).diff() > 0).all()
    with pytest.raises(ValueError, match="one \\[phonemes_i\\] tensor per text"):
        PhonemeDurationModel.fit(texts, frames, speakers, len(cost), durations=durations[:-1])

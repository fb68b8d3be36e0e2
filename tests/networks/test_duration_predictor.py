"""The context-aware duration predictor: it learns what a per-symbol cost cannot, padding never
leaks, and its ends are a valid timing."""

from __future__ import annotations

import pytest
import torch

from resgen.networks.duration import PhonemeDurationModel, PhonemeTiming, ends_of
from resgen.networks.duration_predictor import PhonemeDurationPredictor


def _contextual_data(n: int, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Symbols 1..4; symbol 1 lasts 2 frames, but 8 right before symbol 4 (a context effect)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.tensor([0.0, 2.0, 3.0, 5.0, 1.0])
    texts, durations = [], []
    for _ in range(n):
        ids = torch.randint(1, 5, (int(torch.randint(4, 10, (1,), generator=gen)),), generator=gen)
        frames = base[ids].clone()
        frames[:-1][(ids[:-1] == 1) & (ids[1:] == 4)] = 8.0
        texts.append(ids)
        durations.append(frames)
    return texts, durations


def _pad(texts: list[torch.Tensor], durations: list[torch.Tensor]):
    longest = max(map(len, texts))
    ids = torch.zeros(len(texts), longest, dtype=torch.long)
    frames = torch.zeros(len(texts), longest)
    padding = torch.ones(len(texts), longest, dtype=torch.bool)
    for row, (t, d) in enumerate(zip(texts, durations)):
        ids[row, : len(t)], frames[row, : len(t)], padding[row, : len(t)] = t, d, False
    return ids, padding, frames


def test_it_learns_a_context_effect_that_one_cost_per_symbol_cannot() -> None:
    texts, durations = _contextual_data(400)
    predictor = PhonemeDurationPredictor(5, width=32, layers=2, dropout=0.0)
    optimizer = torch.optim.Adam(predictor.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(300):
        rows = torch.randint(len(texts), (32,), generator=gen).tolist()
        loss = predictor.loss(*_pad([texts[r] for r in rows], [durations[r] for r in rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    table = PhonemeDurationModel.fit(
        texts, [float(d.sum()) for d in durations], ["a"] * len(texts), 5, durations=durations
    )
    text = torch.tensor([2, 1, 4, 1, 3])  # the first 1 is followed by 4, the second is not
    truth = torch.tensor([3.0, 8.0, 1.0, 2.0, 5.0])
    learned = predictor.durations(text)
    torch.testing.assert_close(learned, truth, atol=0.6, rtol=0.0)
    # the table gives both 1s the same cost, so its ends are off where the predictor's are not
    truth_ends = ends_of(truth)
    assert (predictor.ends(text) - truth_ends).abs().max() < 0.04
    assert (table.ends(text) - truth_ends).abs().max() > 0.08


def test_padding_never_changes_the_real_phonemes() -> None:
    predictor = PhonemeDurationPredictor(6, width=16, layers=2).eval()
    ids = torch.tensor([[1, 2, 3, 0, 0]])
    padding = torch.tensor([[False, False, False, True, True]])
    other = ids.clone()
    other[0, 3:] = torch.tensor([5, 4])
    out = predictor(ids, padding)
    torch.testing.assert_close(out[:, :3], predictor(other, padding)[:, :3])
    torch.testing.assert_close(out[:, :3], predictor(ids[:, :3])[:, :3])


def test_ends_are_a_timing() -> None:
    predictor = PhonemeDurationPredictor(6, width=16, layers=1)
    for timing in (predictor, PhonemeDurationModel(6)):
        assert isinstance(timing, PhonemeTiming)
        ends = timing.ends(torch.tensor([1, 2, 3, 4]))
        assert ends.shape == (4,) and float(ends[-1]) == 1.0 and (ends.diff() > 0).all()
    torch.testing.assert_close(ends_of(torch.tensor([1.0, 3.0])), torch.tensor([0.25, 1.0]))
    # a phoneme of no duration keeps a sliver
    assert (ends_of(torch.tensor([0.0, 2.0, 0.0])).diff() > 0).all()


def test_bad_input() -> None:
    predictor = PhonemeDurationPredictor(6, width=16, layers=1)
    with pytest.raises(ValueError, match=">= 0"):
        predictor.loss(torch.tensor([[1, 2]]), torch.zeros(1, 2, dtype=torch.bool),
                       torch.tensor([[1.0, -1.0]]))  # fmt: skip
    with pytest.raises(ValueError, match="1-D text"):
        predictor.durations(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="1-D tensor"):
        ends_of(torch.zeros(0))
    with pytest.raises(ValueError, match=">= 1"):
        PhonemeDurationPredictor(0)

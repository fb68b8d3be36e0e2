"""The learned aligner: the monotonic search is exact, and training finds a planted alignment."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resgen.networks.aligner import (
    PhonemeAligner,
    durations_to_frames,
    even_durations,
    monotonic_alignment,
    standardize,
)


def allowed(durations: tuple[int, ...], optional: list[bool]) -> bool:
    """Every phoneme has a frame except optional ones, never two skipped in a row."""
    skipped = [d == 0 for d in durations]
    if any(s and not o for s, o in zip(skipped, optional)):
        return False
    return not any(a and b for a, b in zip(skipped, skipped[1:]))


def brute_force(scores: torch.Tensor, optional: list[bool]) -> float:
    """Best total score over every allowed split of the frames into ordered runs."""
    phonemes, frames = scores.shape
    best = float("-inf")
    for durations in itertools.product(range(frames + 1), repeat=phonemes):
        if sum(durations) != frames or not allowed(durations, optional):
            continue
        index = torch.repeat_interleave(torch.arange(phonemes), torch.tensor(durations))
        best = max(best, float(scores[index, torch.arange(frames)].sum()))
    return best


@settings(max_examples=40, deadline=None)
@given(
    phonemes=st.integers(1, 4),
    extra=st.integers(0, 4),
    pad_p=st.integers(0, 2),
    pad_f=st.integers(0, 3),
    seed=st.integers(0, 2**16),
    with_optional=st.booleans(),
)
def test_search_matches_brute_force(
    phonemes: int, extra: int, pad_p: int, pad_f: int, seed: int, with_optional: bool
) -> None:
    frames = phonemes + extra
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, phonemes + pad_p, frames + pad_f, generator=g)
    optional = (torch.rand(2, phonemes + pad_p, generator=g) < 0.5) & with_optional
    lengths_p = torch.tensor([phonemes, phonemes])
    lengths_f = torch.tensor([frames, frames])
    durations = monotonic_alignment(scores, lengths_p, lengths_f, optional)
    for row in range(2):
        flags = optional[row, :phonemes].tolist()
        best = brute_force(scores[row, :phonemes, :frames], flags)
        got = durations[row, :phonemes]
        assert allowed(tuple(got.tolist()), flags) and int(got.sum()) == frames
        assert (durations[row, phonemes:] == 0).all()
        index = torch.repeat_interleave(torch.arange(phonemes), got)
        total = float(scores[row, index, torch.arange(frames)].sum())
        assert total == pytest.approx(best, abs=1e-9)


def test_items_of_different_lengths_are_independent() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 5, 9, generator=g)
    together = monotonic_alignment(scores, torch.tensor([3, 5]), torch.tensor([6, 9]))
    first = monotonic_alignment(scores[:1, :3, :6], torch.tensor([3]), torch.tensor([6]))
    second = monotonic_alignment(scores[1:], torch.tensor([5]), torch.tensor([9]))
    assert torch.equal(together[0, :3], first[0])
    assert torch.equal(together[1], second[0])


def test_optional_phonemes_are_skipped_only_where_it_pays() -> None:
    # frames 0-1 clearly phoneme 0, frames 2-3 clearly phoneme 2: the optional 1 is skipped
    scores = torch.full((1, 3, 4), -5.0)
    scores[0, 0, :2] = 0.0
    scores[0, 2, 2:] = 0.0
    optional = torch.tensor([[False, True, False]])
    found = monotonic_alignment(scores, torch.tensor([3]), torch.tensor([4]), optional)
    assert found.tolist() == [[2, 0, 2]]
    # not optional: it must take a frame
    forced = monotonic_alignment(scores, torch.tensor([3]), torch.tensor([4]))
    assert (forced >= 1).all() and int(forced.sum()) == 4
    # where silence is there, the optional phoneme takes it
    scores[0, 1, 2] = 1.0
    assert monotonic_alignment(scores, torch.tensor([3]), torch.tensor([4]), optional).tolist() == [
        [2, 1, 1]
    ]


def test_search_rejects_too_few_frames() -> None:
    with pytest.raises(ValueError, match="no monotonic path"):
        monotonic_alignment(torch.zeros(1, 4, 3), torch.tensor([4]), torch.tensor([3]))
    # two optional phonemes may not both be skipped in a row
    with pytest.raises(ValueError, match="no monotonic path"):
        monotonic_alignment(
            torch.zeros(1, 3, 1), torch.tensor([3]), torch.tensor([1]),
            torch.tensor([[True, True, False]]),
        )  # fmt: skip
    with pytest.raises(ValueError, match="phoneme lengths"):
        monotonic_alignment(torch.zeros(1, 4, 6), torch.tensor([0]), torch.tensor([6]))


def test_durations_to_frames_and_even_split() -> None:
    durations = torch.tensor([[2, 1, 3], [1, 1, 0]])
    assert durations_to_frames(durations, 7).tolist() == [
        [0, 0, 1, 2, 2, 2, -1],
        [0, 1, -1, -1, -1, -1, -1],
    ]
    even = even_durations(torch.tensor([3, 2]), torch.tensor([7, 4]), 3)
    assert even.tolist() == [[2, 2, 3], [2, 2, 0]]


def test_standardize_ignores_padding() -> None:
    g = torch.Generator().manual_seed(1)
    mels = torch.randn(1, 6, 4, generator=g) * 3 + 2
    padding = torch.tensor([[False] * 4 + [True] * 2])
    out = standardize(mels, padding)
    assert torch.allclose(out[0, :4].mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(out[0, :4].std(0, unbiased=False), torch.ones(4), atol=1e-4)
    assert (out[0, 4:] == 0).all()
    changed = mels.clone()
    changed[0, 4:] = 100.0
    assert torch.equal(standardize(changed, padding), out)


def planted_batch(
    g: torch.Generator, batch: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random texts over 6 symbols, each symbol a distinct frame pattern held 1..4 frames."""
    patterns = torch.randn(6, 10, generator=torch.Generator().manual_seed(123)) * 2
    texts = [torch.randint(6, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g)]
    texts += [
        torch.randint(6, (int(torch.randint(3, 7, (1,), generator=g)),), generator=g)
        for _ in range(batch - 1)
    ]
    durations = [torch.randint(1, 5, (len(t),), generator=g) for t in texts]
    frames = max(int(d.sum()) for d in durations)
    phonemes = torch.zeros(batch, max(map(len, texts)), dtype=torch.long)
    phoneme_padding = torch.ones_like(phonemes, dtype=torch.bool)
    mels = torch.zeros(batch, frames, 10)
    frame_padding = torch.ones(batch, frames, dtype=torch.bool)
    truth = torch.zeros_like(phonemes)
    for row, (text, dur) in enumerate(zip(texts, durations)):
        phonemes[row, : len(text)] = text
        phoneme_padding[row, : len(text)] = False
        truth[row, : len(text)] = dur
        frame = patterns[torch.repeat_interleave(text, dur)]
        mels[row, : len(frame)] = frame + 0.1 * torch.randn(frame.shape, generator=g)
        frame_padding[row, : len(frame)] = False
    return phonemes, phoneme_padding, mels, frame_padding, truth


def test_training_recovers_a_planted_alignment() -> None:
    torch.manual_seed(0)
    aligner = PhonemeAligner(6, 10, width=32, layers=1, kernel=1)
    optimizer = torch.optim.Adam(aligner.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for step in range(150):
        phonemes, phoneme_padding, mels, frame_padding, _ = planted_batch(g)
        flat = None
        if step < 20:
            flat = even_durations(
                (~phoneme_padding).sum(-1), (~frame_padding).sum(-1), phonemes.shape[1]
            )
        loss = aligner.loss(phonemes, phoneme_padding, mels, frame_padding, flat)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    phonemes, phoneme_padding, mels, frame_padding, truth = planted_batch(
        torch.Generator().manual_seed(99), batch=16
    )
    found = aligner.align(phonemes, phoneme_padding, mels, frame_padding)
    frames = mels.shape[1]
    agreement = (
        (durations_to_frames(found, frames) == durations_to_frames(truth, frames)) & ~frame_padding
    ).sum() / (~frame_padding).sum()
    assert agreement > 0.9

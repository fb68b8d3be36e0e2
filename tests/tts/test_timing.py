"""The recipe's aligner stage: trains resumably, times every utterance, rejects bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resgen.networks.aligner import PhonemeAligner
from resgen.networks.tts_transformer import spread_text
from resgen.training.trainer import StageSpec
from resgen.tts.timing import align_all, pad_pairs, timed_text, train_aligner


def _utterances(count: int = 6) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    texts = [torch.randint(1, 5, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g)
             for _ in range(count)]  # fmt: skip
    mels = [torch.randn(3 * len(t) + 1, 8, generator=g) for t in texts]
    return texts, mels


def test_train_then_align_every_utterance(tmp_path: Path) -> None:
    texts, mels = _utterances()
    spec = StageSpec(steps=6, batch_size=3, lr=1e-3, checkpoint_every=3)
    aligner, history = train_aligner(texts, mels, 5, tmp_path, spec, width=8, layers=1,
                                     flat_start=2)  # fmt: skip
    assert (tmp_path / "final").exists() and history and history[-1][0] == 5
    frames = align_all(aligner, texts, mels, batch_size=4)
    for text, mel, each in zip(texts, mels, frames):
        assert each.shape == text.shape and (each >= 1).all() and int(each.sum()) == len(mel)
    # a resumed stage returns the same aligner
    again, _ = train_aligner(texts, mels, 5, tmp_path, spec, width=8, layers=1, flat_start=2)
    assert all(torch.equal(a, b) for a, b in zip(aligner.parameters(), again.parameters()))


def test_timed_text_and_bad_input() -> None:
    spoken = timed_text(torch.tensor([3, 1, 2]), torch.tensor([1, 3, 4]))
    torch.testing.assert_close(spoken.ends, torch.tensor([0.125, 0.5, 1.0]), atol=1e-3, rtol=0)
    # a skipped symbol keeps a sliver: the ends still increase, and it gets no frame
    skipped = timed_text(torch.tensor([3, 1, 2]), torch.tensor([2, 0, 2]))
    assert (skipped.ends.diff() > 0).all()
    assert spread_text([skipped.segment(4)], 4).tolist() == [0, 0, 2, 2]
    with pytest.raises(ValueError, match=">= 0 frames"):
        timed_text(torch.tensor([3, 1]), torch.tensor([2, -1]))
    texts, mels = _utterances(2)
    with pytest.raises(ValueError, match="fewer mel frames than phonemes"):
        align_all(PhonemeAligner(5, 8, width=8, layers=1), [torch.ones(9, dtype=torch.long)],
                  [mels[0][:2]])  # fmt: skip
    phonemes, phoneme_padding, batch, frame_padding = pad_pairs(texts, mels)
    assert phonemes.shape[0] == batch.shape[0] == 2
    assert int((~frame_padding).sum()) == sum(len(m) for m in mels)
    assert int((~phoneme_padding).sum()) == sum(len(t) for t in texts)

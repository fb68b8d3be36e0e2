"""Batches of prompt + target examples."""

from __future__ import annotations

import torch

from resgen.data.manifest import ManifestRecord
from resgen.tts.batches import Utterance, by_speaker, training_batch
from resgen.tts.front_ends import SpokenText


def test_training_batches_hold_one_kind_of_example() -> None:
    """Pairs (prompt utterance + target) and single utterances are not mixed in a batch, so a
    batch of singles is not padded to the pairs' length; both kinds still occur."""
    utterances = [
        Utterance(
            ManifestRecord(f"s{s}_{i}", "a.wav", "a b", ("a", "b"), f"s{s}", f"s{s}", 1.0),
            torch.randint(8, (10, 2)),
            SpokenText(torch.tensor([3, 4])),
        )
        for s in range(2)
        for i in range(4)
    ]
    kinds = set()
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        batch = training_batch(utterances, by_speaker(utterances), 6, 0.5, (0.2, 0.4), 64, gen)
        lengths = set((~batch.padding).sum(1).tolist())
        assert lengths in ({10}, {20}), lengths  # singles are 10 positions long, pairs 20
        assert batch.padding.shape[1] == lengths.pop()
        kinds.add(batch.padding.shape[1])
    assert kinds == {10, 20}

"""A small duration model: how many frames a text takes, at the speaking rate of a prompt.

Each phoneme symbol ``p`` has a cost ``d_p`` (frames at the average speaking rate) and each
speaker a rate factor ``r_s``, so an utterance of speaker ``s`` whose text holds ``c_p`` of each
symbol lasts about ``r_s * sum_p c_p d_p`` frames. :meth:`PhonemeDurationModel.fit` estimates
``d`` and the training speakers' ``r`` by alternating least squares; at inference the unseen
speaker's rate comes from the prompt (its frames over its text's cost), so no speaker table is
kept. Punctuation and word-boundary symbols get costs too, which is where pauses come from.

Given each phoneme's own frames (from :class:`~resgen.networks.aligner.PhonemeAligner`), the same
fit runs over single phonemes instead of whole utterances, and :meth:`PhonemeDurationModel.ends`
says where each phoneme of a new text ends. :class:`PhonemeTiming` is what any such timing offers
(the context-aware :class:`~resgen.networks.duration_predictor.PhonemeDurationPredictor` too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int, Shaped
from torch import Tensor, nn

__all__ = ["PhonemeDurationModel", "PhonemeTiming", "ends_of"]


@runtime_checkable
class PhonemeTiming(Protocol):
    """Anything that times a phoneme sequence (a duration model or predictor)."""

    def ends(self, ids: Int[Tensor, " phonemes"]) -> Float[Tensor, " phonemes"]:
        """Where each symbol of ``ids`` ends, as a fraction of the whole (increasing to 1)."""
        ...


def ends_of(
    durations: Float[Tensor, " phonemes"], floor: float | None = None
) -> Float[Tensor, " phonemes"]:
    """End fractions ``[phonemes]`` of phonemes lasting ``durations`` (any unit, >= 0).

    A phoneme shorter than ``floor`` (default: 1e-3 of the mean duration) lasts ``floor``, so
    the ends strictly increase.
    """
    if durations.ndim != 1 or len(durations) < 1:
        raise ValueError(
            f"ends_of needs a 1-D tensor of >= 1 duration, got {tuple(durations.shape)}"
        )
    durations = durations.double()
    if floor is None:
        floor = 1e-3 * float(durations.mean())
    durations = durations.clamp_min(max(floor, 1e-12))
    out = (durations.cumsum(0) / durations.sum()).float()
    out[-1] = 1.0
    return out


def _counts(texts: list[Int[Tensor, " _"]], vocabulary: int) -> Tensor:
    """``[len(texts), vocabulary]`` float64 symbol counts of each text."""
    out = torch.zeros(len(texts), vocabulary, dtype=torch.float64)
    for row, ids in enumerate(texts):
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocabulary):
            raise ValueError(f"text {row} holds ids outside 0..{vocabulary - 1}")
        out[row].index_add_(0, ids.long(), torch.ones(len(ids), dtype=torch.float64))
    return out


class PhonemeDurationModel(nn.Module):
    """Frames of a text from per-symbol costs, scaled to a prompt's speaking rate.

    Args:
        vocabulary: number of symbol ids.
    """

    def __init__(self, vocabulary: int) -> None:
        super().__init__()
        if vocabulary < 1:
            raise ValueError(f"vocabulary must be >= 1, got {vocabulary}")
        # frames per symbol at the average rate; uniform until fitted
        self.register_buffer("cost", torch.ones(vocabulary, dtype=torch.float64))

    @classmethod
    def fit(
        cls,
        texts: list[Int[Tensor, " _"]],
        frames: Sequence[float | int],
        speakers: Sequence[str],
        vocabulary: int,
        iterations: int = 8,
        durations: list[Shaped[Tensor, " _"]] | None = None,
    ) -> PhonemeDurationModel:
        """Estimate the symbol costs from training utterances.

        Args:
            texts: ``[phonemes_i]`` symbol ids of each utterance.
            frames: frames (or seconds) of each utterance.
            speakers: speaker of each utterance (each gets its own rate factor).
            vocabulary: number of symbol ids.
            iterations: rounds of alternating least squares (costs, then rates).
            durations: ``[phonemes_i]`` frames of each phoneme of each utterance (summing to
                ``frames``), when an aligner gave them: each phoneme is then fitted on its own.

        Raises:
            ValueError: the lists differ in length or are empty, or a text holds an unknown id.
        """
        if not (len(texts) == len(frames) == len(speakers)) or not texts:
            raise ValueError("fit needs as many texts, frame counts and speakers, at least one")
        if durations is not None:
            if len(durations) != len(texts) or any(
                d.shape != t.shape for d, t in zip(durations, texts)
            ):
                raise ValueError("durations need one [phonemes_i] tensor per text, of its length")
            texts = [ids[None] for t in texts for ids in t.long()]
            speakers = [s for t, s in zip(durations, speakers) for _ in range(len(t))]
            frames = torch.cat(durations).double().tolist()
        counts = _counts(texts, vocabulary)
        target = torch.tensor(frames, dtype=torch.float64)
        names = sorted(set(speakers))
        speaker = torch.tensor([names.index(s) for s in speakers])
        rate = torch.ones(len(names), dtype=torch.float64)
        cost = torch.ones(vocabulary, dtype=torch.float64)
        for _ in range(iterations):
            design = counts * rate[speaker, None]
            cost = torch.linalg.lstsq(design, target[:, None], driver="gelsd").solution[:, 0]
            cost = cost.clamp_min(0.0)
            spoken = counts @ cost
            total = torch.zeros_like(rate).index_add_(0, speaker, spoken)
            rate = torch.zeros_like(rate).index_add_(0, speaker, target) / total.clamp_min(1e-9)
            rate = rate / rate.mean()
        model = cls(vocabulary)
        model.cost.copy_(cost)
        return model

    def cost_of(self, ids: Int[Tensor, " phonemes"]) -> float:
        """Frames ``ids`` take at the average speaking rate."""
        return float(_counts([ids], len(self.cost))[0] @ self.cost)

    def ends(self, ids: Int[Tensor, " phonemes"]) -> Float[Tensor, " phonemes"]:
        """Where each symbol of ``ids`` ends, as a fraction of the whole (increasing to 1).

        A symbol fitted at no cost still takes a sliver, so the ends strictly increase.
        """
        if ids.ndim != 1 or len(ids) < 1:
            raise ValueError(f"ends needs a 1-D text of >= 1 id, got {tuple(ids.shape)}")
        return ends_of(self.cost[ids.long()], floor=1e-3 * float(self.cost.mean().clamp_min(1e-9)))

    def forward(
        self,
        prompt: Int[Tensor, " prompt_phonemes"],
        prompt_frames: int,
        target: Int[Tensor, " target_phonemes"],
    ) -> int:
        """Frames of ``target`` spoken at the rate of a prompt.

        Args:
            prompt: ``[prompt_phonemes]`` symbol ids of the prompt's transcript.
            prompt_frames: the prompt's frames.
            target: ``[target_phonemes]`` symbol ids of the text to speak.

        Returns:
            The predicted frame count (at least 1).
        """
        prompt_cost = self.cost_of(prompt)
        if prompt_cost <= 0:
            raise ValueError("the prompt's transcript has no cost: it holds no spoken symbol")
        return max(1, round(prompt_frames / prompt_cost * self.cost_of(target)))

"""A phoneme-to-frame aligner learned from the corpus itself (monotonic alignment search).

The TTS networks read the text as phonemes laid over the speech frames
(:func:`~resgen.networks.tts_transformer.spread_text`). Attention alone does not learn where
each phoneme lies within a 2-core CPU budget (the TTS guide, "What the generators lacked"), and
the corpus' synthesisers' own timings are an outside source. :class:`PhonemeAligner` learns the
alignment from the training audio and transcripts, the way Glow-TTS and Grad-TTS do: each
phoneme, read in its context, predicts one mean log-mel frame; the alignment is the monotonic
path through the (phoneme, frame) grid that maximises the frames' Gaussian log-likelihood
(:func:`monotonic_alignment`, a Viterbi search); the means are trained on the frames the path
gives them. Training starts from even segmentation (the flat start of HMM training), then
re-aligns at every step.

Log-mels are standardised per utterance and bin, so the means describe the phoneme rather than
the speaker's timbre or level.
"""

from __future__ import annotations

import torch
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from resgen.networks.frame_conv import FrameConvStack

__all__ = [
    "monotonic_alignment",
    "durations_to_frames",
    "even_durations",
    "standardize",
    "PhonemeAligner",
]


def monotonic_alignment(
    scores: Float[Tensor, "batch phonemes frames"],
    phoneme_lengths: Int[Tensor, " batch"],
    frame_lengths: Int[Tensor, " batch"],
) -> Int[Tensor, "batch phonemes"]:
    """Frames of each phoneme on the monotonic path of highest total score.

    The path starts at (phoneme 0, frame 0), ends at the last real phoneme and frame, and from
    each frame to the next either stays on its phoneme or moves to the next one, so every
    phoneme gets at least one frame, in order.

    Args:
        scores: ``[batch, phonemes, frames]`` score of each frame under each phoneme (e.g. a
            log-likelihood); values past the lengths are ignored.
        phoneme_lengths: ``[batch]`` real phonemes of each item (>= 1).
        frame_lengths: ``[batch]`` real frames of each item (>= its phonemes).

    Returns:
        ``[batch, phonemes]`` frames of each phoneme (0 past the item's phonemes); each row sums
        to its frame length.

    Raises:
        ValueError: an item has no phoneme, or fewer frames than phonemes.
    """
    batch, phonemes, frames = scores.shape
    if phoneme_lengths.shape != (batch,) or frame_lengths.shape != (batch,):
        raise ValueError(f"lengths must be [{batch}], got {tuple(phoneme_lengths.shape)}")
    if (phoneme_lengths < 1).any() or (phoneme_lengths > phonemes).any():
        raise ValueError(f"phoneme lengths must lie in 1..{phonemes}, got {phoneme_lengths}")
    if (frame_lengths > frames).any() or (frame_lengths < phoneme_lengths).any():
        raise ValueError(
            "every item needs at least as many frames as phonemes (and no more than "
            f"{frames}): frames {frame_lengths.tolist()}, phonemes {phoneme_lengths.tolist()}"
        )
    scores = scores.detach().double()
    floor = torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device)
    best = torch.full((batch, phonemes), float("-inf"), dtype=scores.dtype, device=scores.device)
    best[:, 0] = scores[:, 0, 0]
    # advanced[b, p, f]: the best path to phoneme p at frame f came from phoneme p - 1
    advanced = torch.zeros(batch, phonemes, frames, dtype=torch.bool, device=scores.device)
    for frame in range(1, frames):
        from_previous = torch.cat([floor.expand(batch, 1), best[:, :-1]], dim=1)
        advanced[:, :, frame] = from_previous > best
        best = torch.maximum(best, from_previous) + scores[:, :, frame]
    durations = torch.zeros(batch, phonemes, dtype=torch.long, device=scores.device)
    rows = torch.arange(batch, device=scores.device)
    phoneme = phoneme_lengths.clone() - 1
    for frame in range(frames - 1, -1, -1):
        real = frame < frame_lengths
        durations[rows[real], phoneme[real]] += 1
        step = advanced[rows, phoneme, frame] & real
        phoneme = phoneme - step.long()
    return durations


def durations_to_frames(
    durations: Int[Tensor, "batch phonemes"], frames: int
) -> Int[Tensor, "batch frames"]:
    """Phoneme index of every frame when phoneme ``p`` lasts ``durations[b, p]`` frames (``-1``
    after the last one)."""
    ends = durations.cumsum(-1)
    positions = torch.arange(frames, device=durations.device).expand(len(durations), frames)
    index = torch.searchsorted(ends, positions.contiguous(), right=True)
    return torch.where(positions < ends[:, -1:], index, torch.full_like(index, -1))


def standardize(
    mels: Float[Tensor, "batch frames mels"], padding: Bool[Tensor, "batch frames"]
) -> Float[Tensor, "batch frames mels"]:
    """Log-mels standardised per utterance and bin over their real frames (padding -> 0)."""
    keep = rearrange(~padding, "b f -> b f 1").to(mels.dtype)
    count = keep.sum(1, keepdim=True).clamp_min(1.0)
    mean = (mels * keep).sum(1, keepdim=True) / count
    std = (((mels - mean) ** 2 * keep).sum(1, keepdim=True) / count).sqrt().clamp_min(1e-2)
    return (mels - mean) / std * keep


class PhonemeAligner(nn.Module):
    """Per-phoneme mean frames, and the monotonic alignment of a transcript to its log-mels.

    Args:
        vocabulary: phoneme ids.
        features: log-mel bins.
        width: hidden width of the phoneme encoder.
        layers: its residual convolution blocks over the phonemes.
        kernel: their kernel size, in phonemes.
    """

    def __init__(
        self, vocabulary: int, features: int, width: int = 128, layers: int = 3, kernel: int = 5
    ) -> None:
        super().__init__()
        if vocabulary < 1 or features < 1 or width < 1:
            raise ValueError(
                f"vocabulary, features and width must be >= 1, got {vocabulary}, {features}, "
                f"{width}"
            )
        self.embed = nn.Embedding(vocabulary, width)
        self.context = FrameConvStack(width, layers, kernel)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, features))

    def means(
        self, phonemes: Int[Tensor, "batch phonemes"], padding: Bool[Tensor, "batch phonemes"]
    ) -> Float[Tensor, "batch phonemes features"]:
        """The standardised log-mel frame each phoneme predicts, read in its context."""
        return self.out(self.context(self.embed(phonemes), padding))

    def scores(
        self,
        means: Float[Tensor, "batch phonemes features"],
        mels: Float[Tensor, "batch frames features"],
        frame_padding: Bool[Tensor, "batch frames"],
    ) -> Float[Tensor, "batch phonemes frames"]:
        """Log-likelihood (up to a constant) of each frame under each phoneme's unit Gaussian."""
        return -0.5 * torch.cdist(means, standardize(mels, frame_padding)) ** 2

    @torch.no_grad()
    def align(
        self,
        phonemes: Int[Tensor, "batch phonemes"],
        phoneme_padding: Bool[Tensor, "batch phonemes"],
        mels: Float[Tensor, "batch frames features"],
        frame_padding: Bool[Tensor, "batch frames"],
    ) -> Int[Tensor, "batch phonemes"]:
        """Frames of each phoneme (0 at padding) on the most likely monotonic path.

        Args:
            phonemes: ``[batch, phonemes]`` ids, right-padded.
            phoneme_padding: ``[batch, phonemes]``, ``True`` at padding.
            mels: ``[batch, frames, features]`` log-mels, right-padded.
            frame_padding: ``[batch, frames]``, ``True`` at padding.
        """
        scores = self.scores(self.means(phonemes, phoneme_padding), mels, frame_padding)
        return monotonic_alignment(scores, (~phoneme_padding).sum(-1), (~frame_padding).sum(-1))

    def loss(
        self,
        phonemes: Int[Tensor, "batch phonemes"],
        phoneme_padding: Bool[Tensor, "batch phonemes"],
        mels: Float[Tensor, "batch frames features"],
        frame_padding: Bool[Tensor, "batch frames"],
        durations: Int[Tensor, "batch phonemes"] | None = None,
    ) -> Float[Tensor, ""]:
        """Half the mean squared distance of each real frame to its phoneme's mean.

        ``durations`` ``[batch, phonemes]`` fixes the alignment (e.g. even segmentation for a
        flat start); by default it is searched (:meth:`align`) with the current means.
        """
        means = self.means(phonemes, phoneme_padding)
        if durations is None:
            scores = self.scores(means, mels, frame_padding)
            durations = monotonic_alignment(
                scores, (~phoneme_padding).sum(-1), (~frame_padding).sum(-1)
            )
        index = durations_to_frames(durations, mels.shape[1])
        real = (index >= 0) & ~frame_padding
        aligned = torch.gather(
            means, 1, rearrange(index.clamp_min(0), "b f -> b f 1").expand(-1, -1, means.shape[-1])
        )
        error = ((aligned - standardize(mels, frame_padding)) ** 2).mean(-1)
        return 0.5 * error[real].mean()


def even_durations(
    phoneme_lengths: Int[Tensor, " batch"], frame_lengths: Int[Tensor, " batch"], phonemes: int
) -> Int[Tensor, "batch phonemes"]:
    """Frames of each phoneme when each item's frames are shared out evenly (flat start)."""
    index = torch.arange(phonemes + 1, device=phoneme_lengths.device)
    cut = torch.div(index * frame_lengths[:, None], phoneme_lengths[:, None], rounding_mode="floor")
    cut = torch.minimum(cut, frame_lengths[:, None])
    return cut.diff(dim=-1) * (index[None, :-1] < phoneme_lengths[:, None])

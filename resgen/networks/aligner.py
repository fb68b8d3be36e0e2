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
    optional: Bool[Tensor, "batch phonemes"] | None = None,
) -> Int[Tensor, "batch phonemes"]:
    """Frames of each phoneme on the monotonic path of highest total score.

    The path runs from the first frame to the last real one, and from each frame to the next
    either stays on its phoneme or moves on to the next one, so the phonemes are visited in
    order. Every phoneme gets at least one frame, except ``optional`` ones (word boundaries,
    punctuation: silence is not always spoken there), which the path may skip one at a time: it
    may jump over an optional phoneme, start after an optional first one and end before an
    optional last one.

    Args:
        scores: ``[batch, phonemes, frames]`` score of each frame under each phoneme (e.g. a
            log-likelihood); values past the lengths are ignored.
        phoneme_lengths: ``[batch]`` real phonemes of each item (>= 1).
        frame_lengths: ``[batch]`` real frames of each item.
        optional: ``[batch, phonemes]``, ``True`` where a phoneme may take no frame (default:
            none).

    Returns:
        ``[batch, phonemes]`` frames of each phoneme (0 past the item's phonemes and at skipped
        ones); each row sums to its frame length.

    Raises:
        ValueError: an item has no phoneme, more frames than ``scores``, or too few frames for
            a path through its phonemes.
    """
    batch, phonemes, frames = scores.shape
    if phoneme_lengths.shape != (batch,) or frame_lengths.shape != (batch,):
        raise ValueError(f"lengths must be [{batch}], got {tuple(phoneme_lengths.shape)}")
    if (phoneme_lengths < 1).any() or (phoneme_lengths > phonemes).any():
        raise ValueError(f"phoneme lengths must lie in 1..{phonemes}, got {phoneme_lengths}")
    if (frame_lengths > frames).any() or (frame_lengths < 1).any():
        raise ValueError(f"frame lengths must lie in 1..{frames}, got {frame_lengths.tolist()}")
    device = scores.device
    if optional is None:
        optional = torch.zeros(batch, phonemes, dtype=torch.bool, device=device)
    scores = scores.detach().double()
    never = torch.full((batch, 2), float("-inf"), dtype=scores.dtype, device=device)
    # a jump into phoneme p is allowed when phoneme p - 1 is optional
    jump_ok = torch.cat([optional.new_zeros(batch, 1), optional[:, :-1]], dim=1)
    best = torch.full((batch, phonemes), float("-inf"), dtype=scores.dtype, device=device)
    best[:, 0] = scores[:, 0, 0]
    if phonemes > 1:
        best[:, 1] = torch.where(optional[:, 0], scores[:, 1, 0], best[:, 1])
    final = best.clone()
    # came_from[b, p, f]: 0 the best path to (p, f) stayed on p, 1 came from p - 1, 2 from p - 2
    came_from = torch.zeros(batch, phonemes, frames, dtype=torch.long, device=device)
    for frame in range(1, frames):
        from_previous = torch.cat([never[:, :1], best[:, :-1]], dim=1)
        from_jump = torch.cat([never, best[:, :-2]], dim=1)[:, :phonemes]
        from_jump = torch.where(jump_ok, from_jump, never[:, :1])
        value, came_from[:, :, frame] = torch.stack([best, from_previous, from_jump], -1).max(-1)
        best = value + scores[:, :, frame]
        final = torch.where((frame_lengths == frame + 1)[:, None], best, final)
    rows = torch.arange(batch, device=device)
    phoneme = phoneme_lengths - 1
    before = (phoneme - 1).clamp_min(0)
    skip_last = (
        optional[rows, phoneme] & (phoneme > 0) & (final[rows, before] > final[rows, phoneme])
    )
    phoneme = torch.where(skip_last, before, phoneme)
    if not torch.isfinite(final[rows, phoneme]).all():
        raise ValueError(
            "no monotonic path: every item needs a frame for each of its phonemes that is not "
            f"optional (frames {frame_lengths.tolist()}, phonemes {phoneme_lengths.tolist()})"
        )
    durations = torch.zeros(batch, phonemes, dtype=torch.long, device=device)
    for frame in range(frames - 1, -1, -1):
        real = frame < frame_lengths
        durations[rows[real], phoneme[real]] += 1
        phoneme = phoneme - torch.where(real, came_from[rows, phoneme, frame], 0)
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
        optional: Bool[Tensor, "batch phonemes"] | None = None,
    ) -> Int[Tensor, "batch phonemes"]:
        """Frames of each phoneme (0 at padding and at skipped ones) on the most likely
        monotonic path.

        Args:
            phonemes: ``[batch, phonemes]`` ids, right-padded.
            phoneme_padding: ``[batch, phonemes]``, ``True`` at padding.
            mels: ``[batch, frames, features]`` log-mels, right-padded.
            frame_padding: ``[batch, frames]``, ``True`` at padding.
            optional: ``[batch, phonemes]``, ``True`` at phonemes that may take no frame.
        """
        means = self.means(phonemes, phoneme_padding)
        return self._search(means, phoneme_padding, mels, frame_padding, optional)

    def _search(
        self,
        means: Tensor,
        phoneme_padding: Tensor,
        mels: Tensor,
        frame_padding: Tensor,
        optional: Tensor | None,
    ) -> Tensor:
        scores = self.scores(means, mels, frame_padding)
        lengths = (~phoneme_padding).sum(-1), (~frame_padding).sum(-1)
        return monotonic_alignment(scores, *lengths, optional)

    def loss(
        self,
        phonemes: Int[Tensor, "batch phonemes"],
        phoneme_padding: Bool[Tensor, "batch phonemes"],
        mels: Float[Tensor, "batch frames features"],
        frame_padding: Bool[Tensor, "batch frames"],
        durations: Int[Tensor, "batch phonemes"] | None = None,
        optional: Bool[Tensor, "batch phonemes"] | None = None,
    ) -> Float[Tensor, ""]:
        """Half the mean squared distance of each real frame to its phoneme's mean.

        ``durations`` ``[batch, phonemes]`` fixes the alignment (e.g. even segmentation for a
        flat start); by default it is searched (:meth:`align`, with ``optional``) with the
        current means.
        """
        means = self.means(phonemes, phoneme_padding)
        if durations is None:
            durations = self._search(means, phoneme_padding, mels, frame_padding, optional)
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

"""ResGen's text-to-speech network: the masked RVQ transformer with a phoneme prefix.

The speech positions are those of :class:`~resgen.networks.masked_transformer.MaskedBackbone`
(``W_in(visible) + E_k[k] + pos``); a :class:`~resgen.networks.text_encoder.PhonemeEncoder`
encodes the phonemes into a prefix of the same width, and one bidirectional transformer attends
over ``[phonemes; speech]`` (no aligner: attention learns where each phoneme sounds). The
in-context speech prompt needs nothing special: its positions are ordinary speech positions whose
tokens are all given (mask count 0).

**Guidance.** The "class" label says whether the text is present: label 0 = with text, label 1
(:attr:`TextToSpeechTransformer.null_label`) = without (every phoneme id replaced by the encoder's
null id). In training the text is dropped with probability ``text_dropout``. :meth:`bind` fixes
the phonemes of a batch and returns a :class:`BoundText` whose ``hidden(visible, counts, labels,
padding)`` is what :class:`~resgen.diffusion.sampler.ResGenSampler` and
:func:`~resgen.diffusion.loss.resgen_loss` call, so classifier-free guidance works unchanged: on
the doubled batch the text is repeated and the null rows get the null text.

**Text spread over the frames** (``frame_text=True``, an option). Besides the prefix, each speech
position may also receive the encoded phoneme that a *uniform* spread of the text would put
there (:func:`spread_text`: each text segment, the prompt's and the target's, spread evenly over
its frames). It is not an aligner (no durations are predicted or extracted); it is a
diagonal prior that attention then refines, which makes alignment learnable on a CPU budget.
With ``frame_conv`` > 0, residual convolutions over those frames
(:class:`~resgen.networks.frame_conv.FrameConvStack`) add each position's neighbouring phonemes
and its place inside its own (:func:`frame_inputs`).
"""

from __future__ import annotations

import torch
from attrs import asdict, field, frozen, validators
from einops import repeat
from jaxtyping import Float, Int
from torch import Tensor, nn

from resgen.diffusion.mixture import MixtureParams
from resgen.networks.frame_conv import FrameConvStack
from resgen.networks.heads import MixtureOfGaussiansHead
from resgen.networks.masked_transformer import MaskedBackbone, MixtureOutput
from resgen.networks.text_encoder import PhonemeEncoder
from resgen.typing import (
    FrameText,
    Hidden,
    Labels,
    Latents,
    MaskCounts,
    Padding,
    PhonemeIds,
    PhonemePadding,
)

__all__ = [
    "TTSTransformerConfig",
    "TextToSpeechTransformer",
    "BoundText",
    "BoundPhonemes",
    "TEXT_LABEL",
    "null_text",
    "spread_text",
    "gather_frames",
    "frame_inputs",
]

_pos = validators.gt(0)

TEXT_LABEL = 0
"""The label of a row that sees its text (the conditional model)."""


@frozen
class TTSTransformerConfig:
    """Configuration of :class:`TextToSpeechTransformer`.

    Attributes:
        length: most speech positions (prompt + target latent frames) of one sequence.
        depth: RVQ depth D of the codec's tokens.
        dim: code dimension C of the codec's codebooks.
        vocabulary: number of phoneme ids (the padding id 0 included).
        width: transformer width (text encoder and backbone).
        layers: backbone blocks.
        heads: attention heads.
        text_layers: blocks of the phoneme encoder (0 = embeddings and positions only).
        max_phonemes: most phonemes (prompt + target text) of one sequence.
        components: mixture components of the head.
        head_rank: bottleneck rank of the head's output projection.
        text_dropout: probability of training a row without its text (for guidance).
        min_scale: floor on the head's standard deviations.
        frame_text: also add to each speech position the encoded phoneme a uniform spread of
            the text puts there (:func:`spread_text`).
        dropout: residual dropout of every transformer block, text encoder included (training
            only; small corpora overfit without it).
        frame_conv: residual convolution blocks over the text spread on the frames
            (:class:`~resgen.networks.frame_conv.FrameConvStack`), for local phonetic context
            (0 = none; needs ``frame_text``).
    """

    length: int = field(validator=_pos)
    depth: int = field(validator=_pos)
    dim: int = field(validator=_pos)
    vocabulary: int = field(validator=_pos)
    width: int = field(default=256, validator=_pos)
    layers: int = field(default=6, validator=_pos)
    heads: int = field(default=4, validator=_pos)
    text_layers: int = field(default=2, validator=validators.ge(0))
    max_phonemes: int = field(default=256, validator=_pos)
    components: int = field(default=16, validator=_pos)
    head_rank: int = field(default=128, validator=_pos)
    text_dropout: float = field(default=0.1, validator=[validators.ge(0.0), validators.lt(1.0)])
    min_scale: float = field(default=1e-3, validator=_pos)
    frame_text: bool = False
    dropout: float = field(default=0.0, validator=[validators.ge(0.0), validators.lt(1.0)])
    frame_conv: int = field(default=0, validator=validators.ge(0))

    def __attrs_post_init__(self) -> None:
        _check_frame_conv(self.frame_conv, self.frame_text)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


def _check_frame_conv(frame_conv: int, frame_text: bool) -> None:
    if frame_conv and not frame_text:
        raise ValueError(
            "frame_conv convolves the text spread over the frames: it needs frame_text=True"
        )


def spread_text(
    segments: list[tuple[int, int | Float[Tensor, " _phonemes"]]], length: int
) -> Int[Tensor, " length"]:
    """Phoneme index of every frame when each segment's phonemes are laid over its frames.

    A segment's phonemes are either spread evenly over its frames (given as a count), or placed
    where they end (given as each phoneme's end, a fraction of the segment, increasing to 1: the
    aligned variant's synthesiser durations). A frame takes the phoneme that covers its centre.

    Args:
        segments: ``(frames, phonemes)`` of each consecutive segment (e.g. the prompt's, then the
            target's), ``phonemes`` a count or a ``[phonemes]`` tensor of end fractions; segment
            ``s`` covers the frames and phonemes after those of segment ``s - 1``.
        length: frames of the result (frames after the last segment get ``-1``).

    Returns:
        ``[length]`` index into the concatenated phonemes, ``-1`` where no segment is.
    """
    out = torch.full((length,), -1, dtype=torch.long)
    frame = phoneme = 0
    for frames, phonemes in segments:
        if isinstance(phonemes, int):
            ends = (torch.arange(phonemes) + 1) / phonemes if phonemes > 0 else torch.empty(0)
        else:
            ends = phonemes.float()
            if ends.ndim != 1 or (len(ends) and (ends.diff() <= 0).any()):
                raise ValueError("a segment's phoneme ends must be a 1-D increasing tensor")
        if frames < 0 or len(ends) < 1:
            raise ValueError(
                f"a segment needs >= 0 frames and >= 1 phoneme, got {frames} and {len(ends)}"
            )
        centres = (torch.arange(frames) + 0.5) / max(frames, 1)
        inside = torch.searchsorted(ends, centres, right=True)
        out[frame : frame + frames] = phoneme + inside.clamp_max(len(ends) - 1)
        frame, phoneme = frame + frames, phoneme + len(ends)
    return out


def null_text(phonemes: PhonemeIds, padding: PhonemePadding, null_id: int) -> PhonemeIds:
    """``phonemes`` ``[batch, phonemes]`` with every real id replaced by ``null_id`` (padding
    ``[batch, phonemes]`` keeps id 0): the "no text" input, of the same length."""
    return torch.where(padding, phonemes, torch.full_like(phonemes, null_id))


def gather_frames(
    encoded: Float[Tensor, "batch phonemes width"], frame_text: FrameText
) -> Float[Tensor, "batch length width"]:
    """``encoded[b, frame_text[b, i]]`` for every position (zeros where ``frame_text`` is -1)."""
    if frame_text.numel() and int(frame_text.max()) >= encoded.shape[1]:
        raise ValueError("frame_text points beyond the phonemes")
    index = repeat(frame_text.clamp_min(0), "b l -> b l w", w=encoded.shape[-1])
    return encoded.gather(1, index) * (frame_text >= 0)[..., None]


def frame_inputs(
    encoded: Float[Tensor, "batch phonemes width"],
    frame_text: FrameText,
    conv: FrameConvStack | None = None,
) -> Float[Tensor, "batch length width"]:
    """The speech positions' text inputs ``[batch, length, width]``: :func:`gather_frames`, then
    ``conv`` over the frames when given (frames with ``frame_text == -1`` stay 0)."""
    spread = gather_frames(encoded, frame_text)
    return spread if conv is None else conv(spread, frame_text < 0)


class TextToSpeechTransformer(MixtureOutput, MaskedBackbone):
    """ResGen over speech tokens conditioned on phonemes (a prefix) and a speech prompt.

    See the module docstring. ``forward``/``hidden`` take the phonemes explicitly; :meth:`bind`
    returns the view the generic loss and sampler call.

    Args:
        config: a :class:`TTSTransformerConfig`.
    """

    def __init__(self, config: TTSTransformerConfig) -> None:
        c = config
        # one "class": 0 = with text, 1 = the null label (no text); dropout is done here, on
        # the text and the label together, so the class embedding never drops on its own.
        super().__init__(
            c.length, c.depth, c.dim, 1, c.width, c.layers, c.heads, 0.0, dropout=c.dropout
        )
        self.config = config
        self.text = PhonemeEncoder(
            c.vocabulary, c.width, c.text_layers, c.heads, c.max_phonemes, c.dropout
        )
        self.head = MixtureOfGaussiansHead(c.width, c.dim, c.components, c.head_rank, c.min_scale)
        self.frame_conv = FrameConvStack(c.width, c.frame_conv) if c.frame_conv else None

    def text_hidden(
        self,
        visible: Latents,
        counts: MaskCounts,
        labels: Labels,
        padding: Padding | None,
        phonemes: PhonemeIds,
        phoneme_padding: PhonemePadding,
        frame_text: FrameText | None = None,
    ) -> Hidden:
        """Backbone output ``[batch, length, width]`` of the speech positions.

        Args:
            visible: ``[batch, length, dim]`` sum of the known codeword embeddings.
            counts: ``[batch, length]`` masked depths per position.
            labels: ``[batch]``: :data:`TEXT_LABEL` or :attr:`null_label` (no text).
            padding: ``[batch, length]`` padded speech positions, or ``None``.
            phonemes: ``[batch, phonemes]`` ids (prompt text then target text).
            phoneme_padding: ``[batch, phonemes]``, ``True`` at padding.
            frame_text: ``[batch, length]`` phoneme index per position (:func:`spread_text`,
                ``-1`` = none); required when the config's ``frame_text`` is set.
        """
        if self.config.frame_text and frame_text is None:
            raise ValueError("this network spreads the text over the frames: pass frame_text")
        if phonemes.shape[0] != visible.shape[0]:
            raise ValueError(
                f"{phonemes.shape[0]} phoneme rows for a batch of {visible.shape[0]} sequences"
            )
        if bool(phoneme_padding.all(-1).any()):
            raise ValueError("a row has no phonemes: the text must not be empty")
        if self.training and self.config.text_dropout > 0:
            drop = torch.rand(labels.shape, device=labels.device) < self.config.text_dropout
            labels = torch.where(drop, torch.full_like(labels, self.null_label), labels)
        dropped = (labels == self.null_label)[:, None]
        null = null_text(phonemes, phoneme_padding, self.text.null_id)
        phonemes = torch.where(dropped, null, phonemes)
        prefix = self.text(phonemes, phoneme_padding)
        inputs = (
            frame_inputs(prefix, frame_text, self.frame_conv) if self.config.frame_text else None
        )
        return self.hidden(
            visible,
            counts,
            labels,
            padding,
            prefix=prefix,
            prefix_padding=phoneme_padding,
            inputs=inputs,
        )

    def forward(
        self,
        visible: Latents,
        counts: MaskCounts,
        labels: Labels,
        padding: Padding | None,
        phonemes: PhonemeIds,
        phoneme_padding: PhonemePadding,
        frame_text: FrameText | None = None,
    ) -> MixtureParams:
        """Mixture parameters per speech position: ``head(text_hidden(...))``."""
        return self.mixture(
            self.text_hidden(
                visible, counts, labels, padding, phonemes, phoneme_padding, frame_text
            )
        )

    def bind(
        self,
        phonemes: PhonemeIds,
        phoneme_padding: PhonemePadding,
        frame_text: FrameText | None = None,
    ) -> BoundText:
        """The network with the text of a batch fixed (``[batch, phonemes]`` ids and padding,
        and ``[batch, length]`` ``frame_text`` when the network uses it)."""
        return BoundText(self, phonemes, phoneme_padding, frame_text)


class BoundPhonemes:
    """What the text-conditioned networks' bound views share: a batch's phonemes (and their
    spread over the frames), repeated to whatever batch the caller runs.

    Samplers under guidance run a batch ``k`` times the bound one (conditional rows, then the
    null rows); :meth:`repeated_text` repeats the bound text to match.

    Args:
        model: the network (it has a ``null_label``).
        phonemes: ``[batch, phonemes]`` ids.
        phoneme_padding: ``[batch, phonemes]``, ``True`` at padding.
        frame_text: ``[batch, length]`` phoneme index per position, or ``None``.
    """

    def __init__(
        self,
        model: nn.Module,
        phonemes: PhonemeIds,
        phoneme_padding: PhonemePadding,
        frame_text: FrameText | None = None,
    ) -> None:
        if phonemes.shape != phoneme_padding.shape:
            raise ValueError(
                f"phonemes {tuple(phonemes.shape)} and their padding "
                f"{tuple(phoneme_padding.shape)} differ in shape"
            )
        if frame_text is not None and frame_text.shape[0] != phonemes.shape[0]:
            raise ValueError(
                f"frame_text has {frame_text.shape[0]} rows for {phonemes.shape[0]} texts"
            )
        self.model = model
        self.phonemes = phonemes
        self.phoneme_padding = phoneme_padding
        self.frame_text = frame_text

    @property
    def null_label(self) -> int:
        """The label of the unconditional (no text) model."""
        return self.model.null_label

    def repeated_text(self, batch: int) -> tuple[PhonemeIds, PhonemePadding, FrameText | None]:
        """``(phonemes, phoneme_padding, frame_text)`` repeated to ``batch`` rows.

        Raises:
            ValueError: when ``batch`` is not a multiple of the bound rows.
        """
        bound = self.phonemes.shape[0]
        if batch % bound:
            raise ValueError(f"a batch of {batch} rows for {bound} bound texts")
        times = batch // bound
        frame_text = None if self.frame_text is None else self.frame_text.repeat(times, 1)
        return self.phonemes.repeat(times, 1), self.phoneme_padding.repeat(times, 1), frame_text


class BoundText(BoundPhonemes):
    """A :class:`TextToSpeechTransformer` with its batch's phonemes bound.

    Has the call signature of the class-conditional networks, ``(visible, counts, labels,
    padding)``, so :func:`~resgen.diffusion.loss.resgen_loss` and
    :class:`~resgen.diffusion.sampler.ResGenSampler` use it as they are. When called on a batch
    ``k`` times the bound one (the sampler's doubled batch under guidance) the text is repeated.

    Args:
        model: the network.
        phonemes: ``[batch, phonemes]`` ids.
        phoneme_padding: ``[batch, phonemes]``, ``True`` at padding.
        frame_text: ``[batch, length]`` phoneme index per position, or ``None``.
    """

    model: TextToSpeechTransformer

    def hidden(
        self, visible: Latents, counts: MaskCounts, labels: Labels, padding: Padding | None
    ) -> Hidden:
        """Backbone output ``[batch, length, width]`` (see
        :meth:`TextToSpeechTransformer.text_hidden`)."""
        return self.model.text_hidden(
            visible, counts, labels, padding, *self.repeated_text(visible.shape[0])
        )

    def mixture(self, hidden: Hidden) -> MixtureParams:
        """The mixture head of the network."""
        return self.model.mixture(hidden)

    def mixture_logits(self, hidden: Hidden) -> Float[Tensor, "batch length comp"]:
        """The mixture head's logits ``[batch, length, comp]`` alone."""
        return self.model.mixture_logits(hidden)

    def target_scale(self, counts: MaskCounts) -> Float[Tensor, "batch length"]:
        """The network's fixed target scale per position ``[batch, length]``."""
        return self.model.target_scale(counts)

    def __call__(
        self, visible: Latents, counts: MaskCounts, labels: Labels, padding: Padding | None
    ) -> MixtureParams:
        """Mixture parameters per position: ``mixture(hidden(...))``."""
        return self.mixture(self.hidden(visible, counts, labels, padding))

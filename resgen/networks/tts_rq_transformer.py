"""The autoregressive baseline for text-to-speech: an RQ-Transformer with a phoneme prefix.

:class:`TextRQTransformer` wraps an :class:`~resgen.networks.rq_transformer.RQTransformer` and a
:class:`~resgen.networks.text_encoder.PhonemeEncoder`. The spatial (causal) transformer runs over
``[phonemes; start; speech positions]``, packed per row so that every row's padding (of its text
and of its speech) sits at the end of the sequence, where a causal model never looks; the depth
transformer is the RQ-Transformer's own. The text is dropped for guidance as in
:class:`~resgen.networks.tts_transformer.TextToSpeechTransformer` (label 0 = text, 1 = none).

:meth:`TextRQTransformer.bind` fixes the phonemes and returns a :class:`BoundTextRQ`, which has
what :class:`~resgen.diffusion.ar_sampler.ARSampler` calls (``new_cache`` fills the spatial cache
with the text first). At sampling, the bound rows must all have the same number of phonemes
(sample one utterance at a time, or texts of equal length).
"""

from __future__ import annotations

import torch
from attrs import asdict, field, frozen, validators
from einops import repeat
from jaxtyping import Float, Int
from torch import Tensor, nn

from resgen.networks.frame_conv import FrameConvStack
from resgen.networks.rq_transformer import (
    KVCache,
    RQCache,
    RQTransformer,
    RQTransformerConfig,
    causal_transformer,
)
from resgen.networks.text_encoder import PhonemeEncoder
from resgen.networks.tts_transformer import (
    BoundPhonemes,
    _check_frame_conv,
    frame_inputs,
    null_text,
)
from resgen.typing import FrameText, Labels, Padding, PhonemeIds, PhonemePadding, Tokens

__all__ = ["TextRQTransformerConfig", "TextRQTransformer", "BoundTextRQ"]

_pos = validators.gt(0)


@frozen
class TextRQTransformerConfig:
    """Configuration of :class:`TextRQTransformer`.

    Attributes:
        length: most speech positions (prompt + target) of one sequence.
        depth: RVQ depth D.
        codes: codebook size K.
        vocabulary: number of phoneme ids (padding id 0 included).
        width: width of every transformer.
        layers: spatial transformer blocks.
        heads: attention heads.
        depth_layers: depth transformer blocks.
        text_layers: phoneme encoder blocks.
        max_phonemes: most phonemes of one sequence.
        text_dropout: probability of training a row without its text.
        frame_text: also add to each speech position's input the encoded phoneme a uniform
            spread of the text puts there
            (:func:`~resgen.networks.tts_transformer.spread_text`).
        dropout: residual dropout of every transformer block, text encoder included (training
            only).
        frame_conv: residual convolution blocks over the text spread on the frames (as
            :class:`~resgen.networks.tts_transformer.TTSTransformerConfig`'s; needs
            ``frame_text``).
    """

    length: int = field(validator=_pos)
    depth: int = field(validator=_pos)
    codes: int = field(validator=_pos)
    vocabulary: int = field(validator=_pos)
    width: int = field(default=256, validator=_pos)
    layers: int = field(default=6, validator=_pos)
    heads: int = field(default=4, validator=_pos)
    depth_layers: int = field(default=2, validator=_pos)
    text_layers: int = field(default=2, validator=validators.ge(0))
    max_phonemes: int = field(default=256, validator=_pos)
    text_dropout: float = field(default=0.1, validator=[validators.ge(0.0), validators.lt(1.0)])
    frame_text: bool = False
    dropout: float = field(default=0.0, validator=[validators.ge(0.0), validators.lt(1.0)])
    frame_conv: int = field(default=0, validator=validators.ge(0))

    def __attrs_post_init__(self) -> None:
        _check_frame_conv(self.frame_conv, self.frame_text)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


class TextRQTransformer(nn.Module):
    """RQ-Transformer conditioned on a phoneme prefix (see the module docstring).

    Args:
        config: a :class:`TextRQTransformerConfig`.
    """

    def __init__(self, config: TextRQTransformerConfig) -> None:
        super().__init__()
        c = self.config = config
        self.rq = RQTransformer(
            RQTransformerConfig(
                length=c.length,
                depth=c.depth,
                codes=c.codes,
                num_classes=1,
                width=c.width,
                layers=c.layers,
                heads=c.heads,
                depth_layers=c.depth_layers,
                class_dropout=0.0,
                dropout=c.dropout,
            )
        )
        self.text = PhonemeEncoder(
            c.vocabulary, c.width, c.text_layers, c.heads, c.max_phonemes, c.dropout
        )
        self.frame_conv = FrameConvStack(c.width, c.frame_conv) if c.frame_conv else None

    @property
    def null_label(self) -> int:
        """Label of the unconditional (no text) model."""
        return self.rq.null_label

    def _condition(
        self, labels: Labels, phonemes: PhonemeIds, phoneme_padding: PhonemePadding
    ) -> tuple[Float[Tensor, "batch width"], Float[Tensor, "batch phonemes width"]]:
        """Class vector and encoded text, after dropping the text of null-label rows."""
        if bool(phoneme_padding.all(-1).any()):
            raise ValueError("a row has no phonemes: the text must not be empty")
        if self.training and self.config.text_dropout > 0:
            drop = torch.rand(labels.shape, device=labels.device) < self.config.text_dropout
            labels = torch.where(drop, torch.full_like(labels, self.null_label), labels)
        dropped = (labels == self.null_label)[:, None]
        null = null_text(phonemes, phoneme_padding, self.text.null_id)
        phonemes = torch.where(dropped, null, phonemes)
        return self.rq.classes(labels), self.text(phonemes, phoneme_padding)

    def forward(
        self,
        tokens: Tokens,
        labels: Labels,
        phonemes: PhonemeIds,
        phoneme_padding: PhonemePadding,
        frame_text: FrameText | None = None,
        padding: Padding | None = None,
    ) -> Float[Tensor, "batch length depth codes"] | Float[Tensor, "positions depth codes"]:
        """Teacher-forced logits ``[batch, length, depth, codes]`` of every speech token.

        Args:
            tokens: ``[batch, length, depth]`` speech tokens (right-padded; padded positions are
                never seen by real ones).
            labels: ``[batch]``: 0 = with text, :attr:`null_label` = without.
            phonemes: ``[batch, phonemes]`` ids (right-padded).
            phoneme_padding: ``[batch, phonemes]``, ``True`` at padding.
            frame_text: ``[batch, length]`` phoneme index per position (``-1`` = none);
                required when the config's ``frame_text`` is set.
            padding: optional ``[batch, length]``, ``True`` at speech padding, whose logits are
                then not computed: the real positions' logits come packed,
                ``[positions, depth, codes]`` (see
                :meth:`~resgen.networks.rq_transformer.RQTransformer.depth_logits`).
        """
        rq, c = self.rq, self.config
        if c.frame_text and frame_text is None:
            raise ValueError("this network spreads the text over the frames: pass frame_text")
        batch, length, depth = tokens.shape
        if depth != c.depth or length > c.length:
            raise ValueError(
                f"expected tokens of shape [batch, <= {c.length}, {c.depth}], "
                f"got {tuple(tokens.shape)}"
            )
        rq._check_tokens(tokens, c.depth)
        cond, text = self._condition(labels, phonemes, phoneme_padding)
        emb = rq.embed(tokens)
        start = repeat(rq.start, "w -> b 1 w", b=batch)
        speech = torch.cat([start, emb.sum(2)[:, :-1]], dim=1) + rq.position[:length]
        if c.frame_text:
            speech = speech + frame_inputs(text, frame_text, self.frame_conv)
        # pack row b as [its n_b phonemes, its speech inputs, padding]
        n_text = text.shape[1]
        n_real = (~phoneme_padding).sum(-1, keepdim=True)  # [b, 1]
        j = torch.arange(n_text + length, device=tokens.device)[None]
        source = torch.where(j < n_real, j, (n_text + j - n_real).clamp_max(n_text + length - 1))
        packed = torch.cat([text, speech], dim=1).gather(
            1, repeat(source, "b t -> b t w", w=c.width)
        )
        out = causal_transformer(rq.spatial, packed, cond)
        where = n_real + torch.arange(length, device=tokens.device)[None]  # speech outputs
        context = out.gather(1, repeat(where, "b l -> b l w", w=c.width))
        return rq.depth_logits(context, emb, cond, padding)

    def bind(
        self,
        phonemes: PhonemeIds,
        phoneme_padding: PhonemePadding,
        frame_text: FrameText | None = None,
    ) -> BoundTextRQ:
        """The network with a batch's phonemes fixed (``[batch, phonemes]``): a ``(tokens,
        labels) -> logits`` callable for :func:`~resgen.diffusion.ar_loss.ar_loss`, and the model
        :class:`~resgen.diffusion.ar_sampler.ARSampler` samples from."""
        return BoundTextRQ(self, phonemes, phoneme_padding, frame_text)


class BoundTextRQ(BoundPhonemes):
    """A :class:`TextRQTransformer` with its phonemes bound: what
    :func:`~resgen.diffusion.ar_loss.ar_loss` (``__call__``) and
    :class:`~resgen.diffusion.ar_sampler.ARSampler` (``new_cache``, ``spatial_step``,
    ``depth_step``) call. Under guidance the sampler doubles the batch: the text is repeated and
    the null rows get the null text.

    Args:
        model: the network.
        phonemes: ``[batch, phonemes]`` ids.
        phoneme_padding: ``[batch, phonemes]``, ``True`` at padding.
        frame_text: ``[batch, length]`` phoneme index per position, or ``None``.
    """

    model: TextRQTransformer

    def __init__(
        self,
        model: TextRQTransformer,
        phonemes: PhonemeIds,
        phoneme_padding: PhonemePadding,
        frame_text: FrameText | None = None,
    ) -> None:
        super().__init__(model, phonemes, phoneme_padding, frame_text)
        self._prefix = phonemes.shape[1]
        self._frame_inputs: Tensor | None = None  # the spread text of the sampled batch

    @property
    def config(self) -> RQTransformerConfig:
        """The inner RQ-Transformer's configuration (its ``length`` and ``depth``)."""
        return self.model.rq.config

    def __call__(
        self, tokens: Tokens, labels: Labels, padding: Padding | None = None
    ) -> Float[Tensor, "batch length depth codes"] | Float[Tensor, "positions depth codes"]:
        """Teacher-forced logits (see :meth:`TextRQTransformer.forward`; packed with
        ``padding``)."""
        return self.model(tokens, labels, *self.repeated_text(tokens.shape[0]), padding)

    def new_cache(self, labels: Labels) -> RQCache:
        """Sampling state for ``labels`` ``[batch]``, with the text already in the spatial cache.

        Raises:
            ValueError: when the bound rows differ in text length (phoneme padding).
        """
        if bool(self.phoneme_padding.any()):
            raise ValueError(
                "sampling needs rows of equal text length (no phoneme padding): sample one "
                "utterance at a time"
            )
        rq = self.model.rq
        phonemes, phoneme_padding, frame_text = self.repeated_text(labels.shape[0])
        if self.model.config.frame_text and frame_text is None:
            raise ValueError("this network spreads the text over the frames: bind frame_text")
        _, text = self.model._condition(labels, phonemes, phoneme_padding)
        if frame_text is not None and self.model.config.frame_text:
            self._frame_inputs = frame_inputs(text, frame_text, self.model.frame_conv)
        fresh = rq.new_cache(labels)
        keys = fresh.spatial.keys
        spatial = KVCache(
            keys.shape[0],
            keys.shape[1],
            keys.shape[2],
            self._prefix + rq.config.length,
            keys.shape[4],
            device=keys.device,
            dtype=keys.dtype,
        )
        cache = RQCache(spatial, fresh.depth, fresh.spatial_mods, fresh.depth_mods)
        causal_transformer(rq.spatial, text, cache.spatial_mods, cache.spatial)
        return cache

    def spatial_step(
        self, previous: Int[Tensor, "batch depth"] | None, cache: RQCache
    ) -> Float[Tensor, "batch width"]:
        """Context ``[batch, width]`` of the next speech position (see
        :meth:`~resgen.networks.rq_transformer.RQTransformer.spatial_step`)."""
        rq = self.model.rq
        i = cache.spatial.length - self._prefix
        if i >= rq.config.length:
            raise ValueError(f"all {rq.config.length} positions have been generated")
        if (previous is None) != (i == 0):
            raise ValueError("previous tokens are required after the first position, only there")
        x = rq.spatial_input(previous, i).expand(cache.spatial.keys.shape[1], -1)
        if self._frame_inputs is not None:
            x = x + self._frame_inputs[:, i]
        return rq.spatial_advance(x, cache)

    def depth_step(
        self, previous: Int[Tensor, " batch"] | None, cache: RQCache
    ) -> Float[Tensor, "batch codes"]:
        """Logits ``[batch, codes]`` of the current position's next depth."""
        return self.model.rq.depth_step(previous, cache)

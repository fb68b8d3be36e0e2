"""The token-level masked baseline's network: ResGen's backbone with per-depth token logits.

The paper's "predict tokens directly" ablation (SoundStorm-like): the same masking, inputs and
backbone as :class:`~resgen.networks.masked_transformer.MaskedRVQTransformer`, but the head gives
a categorical distribution over the ``codes`` of every depth instead of a mixture over the
cumulative embedding of the masked depths.
"""

from __future__ import annotations

import torch.nn.functional as F
from attrs import asdict, field, frozen, validators
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

from resgen.networks.masked_transformer import MaskedBackbone, backbone_settings
from resgen.typing import Hidden, Labels, Latents, MaskCounts, Padding

__all__ = ["TokenLogits", "TokenHead", "MaskedTokenTransformerConfig", "MaskedTokenTransformer"]

TokenLogits = Float[Tensor, "batch length depth codes"]
"""Unnormalised log-probabilities of every code at every position and depth."""

_pos = validators.gt(0)


class TokenHead(nn.Module):
    """Per-depth token logits through a low-rank output projection.

    ``hidden -> Linear(width, rank) -> GELU -> Linear(rank, depth * codes)``, reshaped to
    ``[batch, length, depth, codes]``. The shared ``rank``-sized bottleneck is what every depth
    reads from; the output layer holds one ``[rank, codes]`` block per depth. The parameter count
    is ``rank * (width + depth * codes)`` instead of ``width * depth * codes`` for a full
    projection (e.g. 1.1M instead of 2.1M at width 256, rank 128, depth 32, codes 256). The head is
    not tied to the codec's codebooks, so the network does not depend on the quantizer's state.

    Args:
        width: input width.
        depth: RVQ depth D (one categorical per depth).
        codes: codebook size K.
        rank: bottleneck rank.
    """

    def __init__(self, width: int, depth: int, codes: int, rank: int = 128) -> None:
        super().__init__()
        if min(width, depth, codes, rank) < 1:
            raise ValueError(
                f"width, depth, codes and rank must be >= 1, got {width}, {depth}, {codes}, {rank}"
            )
        self.depth, self.codes = depth, codes
        self.down = nn.Linear(width, rank)
        self.up = nn.Linear(rank, depth * codes)

    def forward(self, hidden: Hidden) -> TokenLogits:
        """Logits ``[batch, length, depth, codes]`` for each position of ``hidden``
        ``[batch, length, width]``."""
        out = self.up(F.gelu(self.down(hidden)))
        return rearrange(out, "b l (d k) -> b l d k", d=self.depth)


@frozen
class MaskedTokenTransformerConfig:
    """Configuration of :class:`MaskedTokenTransformer`.

    Attributes:
        length: number of token positions L.
        depth: RVQ depth D of the tokens.
        dim: code dimension C (of the codec's codebooks; the input is a sum of codewords).
        codes: codebook size K (the number of logits per depth).
        num_classes: number of class labels (a null label is added for guidance).
        width: transformer width.
        layers: transformer blocks.
        heads: attention heads.
        head_rank: bottleneck rank of the head's output projection.
        class_dropout: probability of training with the null label.
        dropout: residual dropout of every transformer block (training only).
    """

    length: int = field(validator=_pos)
    depth: int = field(validator=_pos)
    dim: int = field(validator=_pos)
    codes: int = field(validator=_pos)
    num_classes: int = field(validator=_pos)
    width: int = field(default=256, validator=_pos)
    layers: int = field(default=6, validator=_pos)
    heads: int = field(default=4, validator=_pos)
    head_rank: int = field(default=128, validator=_pos)
    class_dropout: float = field(default=0.1, validator=[validators.ge(0.0), validators.lt(1.0)])
    dropout: float = field(default=0.0, validator=[validators.ge(0.0), validators.lt(1.0)])

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


class MaskedTokenTransformer(MaskedBackbone):
    """The token-level baseline: ResGen's inputs and backbone, a :class:`TokenHead` on top.

    :meth:`hidden` (inherited from :class:`~resgen.networks.masked_transformer.MaskedBackbone`) is
    exactly ResGen's: ``h_i = W_in(visible_i) + E_k[k_i] + pos_i`` with adaLN class conditioning.
    :meth:`head` turns it into logits ``[batch, length, depth, codes]``; only the masked depths of
    each position are trained and sampled.

    Args:
        config: a :class:`MaskedTokenTransformerConfig`.
    """

    def __init__(self, config: MaskedTokenTransformerConfig) -> None:
        c = config
        super().__init__(**backbone_settings(c))
        self.config = config
        self.head = TokenHead(c.width, c.depth, c.codes, c.head_rank)

    def forward(
        self,
        visible: Latents,
        counts: MaskCounts,
        labels: Labels,
        padding: Padding | None = None,
    ) -> TokenLogits:
        """Token logits ``[batch, length, depth, codes]`` (``head(hidden(...))``).

        Args:
            visible: ``[batch, length, dim]`` sum of the known codeword embeddings per position.
            counts: ``[batch, length]`` masked depths per position, in ``0..depth``.
            labels: ``[batch]`` class labels (``num_classes`` is the null label).
            padding: optional ``[batch, length]``, ``True`` at padded positions.
        """
        return self.token_logits(self.hidden(visible, counts, labels, padding))

    def token_logits(self, hidden: Hidden) -> TokenLogits:
        """Per-depth token logits ``[batch, length, depth, codes]`` for hidden states.

        A method rather than the ``head`` submodule itself, so that protocol checks that look
        attributes up statically (Python >= 3.12) see it.
        """
        return self.head(hidden)

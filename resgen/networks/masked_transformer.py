"""The ResGen network: a bidirectional transformer over partially masked RVQ positions."""

from __future__ import annotations

from typing import Any

import torch
from attrs import asdict, converters, field, frozen, validators
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from resgen.diffusion.mixture import AssignedComponent, MixtureParams
from resgen.networks.conditioning import ClassEmbedding
from resgen.networks.heads import MixtureOfGaussiansHead
from resgen.networks.transformer import Transformer
from resgen.typing import Hidden, Labels, Latents, MaskCounts, Padding

__all__ = [
    "MaskedTransformerConfig",
    "MaskedBackbone",
    "MixtureOutput",
    "MaskedRVQTransformer",
    "backbone_settings",
]

_pos = validators.gt(0)


@frozen
class MaskedTransformerConfig:
    """Configuration of :class:`MaskedRVQTransformer`.

    Attributes:
        length: number of token positions L.
        depth: RVQ depth D of the tokens.
        dim: code dimension C (of the codec's codebooks).
        num_classes: number of class labels (a null label is added for guidance).
        width: transformer width.
        layers: transformer blocks.
        heads: attention heads.
        components: mixture components of the head.
        head_rank: bottleneck rank of the head's output projection.
        class_dropout: probability of training with the null label.
        min_scale: floor on the head's standard deviations.
        dropout: residual dropout of every transformer block (training only).
        target_scales: ``depth + 1`` fixed scales of the target by mask count (the mixture
            models the target divided by them; see :mod:`resgen.diffusion.target_scale`), or
            ``None`` for none.
        fixed_scale: a constant standard deviation for every component (the CLaM objective's
            isotropic Gaussians), or ``None`` to predict the scales.
    """

    length: int = field(validator=_pos)
    depth: int = field(validator=_pos)
    dim: int = field(validator=_pos)
    num_classes: int = field(validator=_pos)
    width: int = field(default=256, validator=_pos)
    layers: int = field(default=6, validator=_pos)
    heads: int = field(default=4, validator=_pos)
    components: int = field(default=16, validator=_pos)
    head_rank: int = field(default=128, validator=_pos)
    class_dropout: float = field(default=0.1, validator=[validators.ge(0.0), validators.lt(1.0)])
    min_scale: float = field(default=1e-3, validator=_pos)
    dropout: float = field(default=0.0, validator=[validators.ge(0.0), validators.lt(1.0)])
    target_scales: tuple[float, ...] | None = field(
        default=None, converter=converters.optional(lambda values: tuple(map(float, values)))
    )
    fixed_scale: float | None = field(
        default=None, validator=validators.optional(validators.gt(0.0))
    )

    def __attrs_post_init__(self) -> None:
        if self.target_scales is not None and len(self.target_scales) != self.depth + 1:
            raise ValueError(
                f"target_scales needs depth + 1 = {self.depth + 1} entries (one per mask "
                f"count), got {len(self.target_scales)}"
            )

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fields; the optional head fields only when set, so a
        network without them saves the same ``config.json`` as before they existed."""
        out = asdict(self)
        for name in ("target_scales", "fixed_scale"):
            if out[name] is None:
                del out[name]
        if self.target_scales is not None:
            out["target_scales"] = list(self.target_scales)
        return out


_BACKBONE_FIELDS = (
    "length",
    "depth",
    "dim",
    "num_classes",
    "width",
    "layers",
    "heads",
    "class_dropout",
    "dropout",
)


def backbone_settings(config: object) -> dict[str, Any]:
    """The :class:`MaskedBackbone` arguments held by a network configuration whose fields carry
    the same names (:class:`MaskedTransformerConfig` and the token baseline's)."""
    return {name: getattr(config, name) for name in _BACKBONE_FIELDS}


class MaskedBackbone(nn.Module):
    """The input and backbone of the masked networks: ``h_i = W_in(visible_i) + E_k[k_i] + pos_i``.

    ``visible_i`` is the sum of the known (coarse) codeword embeddings of position ``i`` and ``k_i``
    its number of masked depths; the class label conditions every block (adaLN). Subclasses add a
    ``head``: :class:`MaskedRVQTransformer` (ResGen's mixture over the cumulative embedding) and
    :class:`~resgen.networks.token_head.MaskedTokenTransformer` (per-depth token logits, the
    token-level baseline), so both predict from exactly the same inputs.

    Args:
        length: number of token positions L.
        depth: RVQ depth D.
        dim: code dimension C.
        num_classes: number of class labels (a null label is added for guidance).
        width: transformer width.
        layers: transformer blocks.
        heads: attention heads.
        class_dropout: probability of training with the null label.
        dropout: residual dropout of every transformer block (training only).
    """

    def __init__(
        self,
        length: int,
        depth: int,
        dim: int,
        num_classes: int,
        width: int,
        layers: int,
        heads: int,
        class_dropout: float,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.length, self.depth, self.dim = length, depth, dim
        self.input = nn.Linear(dim, width)
        self.count_embedding = nn.Embedding(depth + 1, width)
        self.position = nn.Parameter(torch.randn(1, length, width) * 0.02)
        # Same scale as the position table: with nn.Embedding's default N(0, 1) the mask-count
        # signal would drown the positions after layer norm.
        nn.init.normal_(self.count_embedding.weight, std=0.02)
        self.classes = ClassEmbedding(num_classes, width, class_dropout)
        self.backbone = Transformer(width, layers, heads, dropout=dropout)

    @property
    def null_label(self) -> int:
        """Label index of the unconditional model."""
        return self.classes.null_label

    def hidden(
        self,
        visible: Latents,
        counts: MaskCounts,
        labels: Labels,
        padding: Padding | None = None,
        prefix: Float[Tensor, "batch prefix width"] | None = None,
        prefix_padding: Bool[Tensor, "batch prefix"] | None = None,
        inputs: Hidden | None = None,
    ) -> Hidden:
        """Backbone output ``[batch, length, width]``.

        Args:
            visible: ``[batch, length, dim]`` sum of the known codeword embeddings per position;
                ``length`` may be anything up to the configured one (variable-length audio).
            counts: ``[batch, length]`` masked depths per position, in ``0..depth``.
            labels: ``[batch]`` class labels (``num_classes`` is the null label).
            padding: optional ``[batch, length]``, ``True`` at padded positions.
            prefix: optional ``[batch, prefix, width]`` conditioning sequence (e.g. encoded
                phonemes) placed before the token positions; the backbone attends over both and
                only the token positions are returned.
            prefix_padding: optional ``[batch, prefix]``, ``True`` at padded prefix entries.
            inputs: optional ``[batch, length, width]`` added to the token positions' input
                (e.g. the text spread over the frames).
        """
        length = visible.shape[1]
        if visible.shape[2] != self.dim or length > self.length:
            raise ValueError(
                f"expected visible embeddings of shape [batch, <= {self.length}, {self.dim}], "
                f"got {tuple(visible.shape)}"
            )
        if counts.numel() and (counts.min() < 0 or counts.max() > self.depth):
            raise ValueError(
                f"mask counts must lie in 0..{self.depth} (the model's RVQ depth), "
                f"got max {int(counts.max())}"
            )
        x = self.input(visible) + self.count_embedding(counts) + self.position[:, :length]
        if inputs is not None:
            x = x + inputs
        cond = self.classes(labels)
        if prefix is None:
            return self.backbone(x, cond, padding)
        if padding is not None or prefix_padding is not None:
            batch, n = visible.shape[0], prefix.shape[1]
            no_pad = torch.zeros(batch, length, dtype=torch.bool, device=x.device)
            no_prefix_pad = torch.zeros(batch, n, dtype=torch.bool, device=x.device)
            padding = torch.cat(
                [
                    no_prefix_pad if prefix_padding is None else prefix_padding,
                    no_pad if padding is None else padding,
                ],
                dim=1,
            )
        return self.backbone(torch.cat([prefix, x], dim=1), cond, padding)[:, prefix.shape[1] :]


class MixtureOutput:
    """The mixture-head methods of ResGen's networks (they hold ``head``, a
    :class:`~resgen.networks.heads.MixtureOfGaussiansHead`).

    Methods rather than the ``head`` submodule itself, so that protocol checks that look
    attributes up statically (Python >= 3.12) see them.
    """

    head: MixtureOfGaussiansHead

    def mixture(self, hidden: Hidden) -> MixtureParams:
        """The head's mixture for hidden states ``[batch, length, width]`` (over the target
        divided by :meth:`target_scale`)."""
        return self.head(hidden)

    def mixture_logits(self, hidden: Hidden) -> Float[Tensor, "batch length comp"]:
        """The mixture's logits ``[batch, length, comp]`` alone (``head.logits``), cheaper than
        :meth:`mixture` when the means and scales are not read."""
        return self.head.logits(hidden)

    def target_scale(self, counts: MaskCounts) -> Float[Tensor, "batch length"]:
        """The fixed scale ``[batch, length]`` of each position's target (``head.target_scale``)."""
        return self.head.target_scale(counts)

    @property
    def mixture_components(self) -> int:
        """Number of components of the head's mixture."""
        return self.head.components

    def assigned_component(
        self, hidden: Hidden, component: Int[Tensor, "batch length"]
    ) -> AssignedComponent:
        """One given component per position (``head.assigned``), for the Jensen objective."""
        return self.head.assigned(hidden, component)


class MaskedRVQTransformer(MixtureOutput, MaskedBackbone):
    """ResGen's network: ``h_i = W_in(visible_i) + E_k[k_i] + pos_i``, adaLN class conditioning.

    ``visible_i`` is the sum of the known (coarse) codeword embeddings of position ``i`` and ``k_i``
    its number of masked depths. :meth:`hidden` returns the backbone output (where guidance
    combines conditional and unconditional passes), :meth:`head` the mixture over the cumulative
    embedding of the masked depths.

    Args:
        config: a :class:`MaskedTransformerConfig`.
    """

    def __init__(self, config: MaskedTransformerConfig) -> None:
        c = config
        super().__init__(**backbone_settings(c))
        self.config = config
        self.head = MixtureOfGaussiansHead(
            c.width,
            c.dim,
            c.components,
            c.head_rank,
            c.min_scale,
            target_scales=c.target_scales,
            fixed_scale=c.fixed_scale,
        )

    def forward(
        self,
        visible: Latents,
        counts: MaskCounts,
        labels: Labels,
        padding: Padding | None = None,
    ) -> MixtureParams:
        """Mixture parameters per position (``mixture(hidden(...))``); see :meth:`hidden`."""
        return self.mixture(self.hidden(visible, counts, labels, padding))

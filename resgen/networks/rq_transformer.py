"""The autoregressive RQ-Transformer baseline (Lee et al., CVPR 2022), on the codec's RVQ tokens.

Two causal transformers, both built from the library's adaLN-Zero blocks (class conditioning in
every block):

* the **spatial** transformer runs over positions. Its input at position ``i`` is the sum of the
  embeddings of position ``i-1``'s ``D`` tokens (a learned start vector at ``i = 0``) plus a learned
  position embedding; its output ``h_i`` summarises every position before ``i``;
* the **depth** transformer runs over the ``D`` depths of one position. Its input at depth ``d`` is
  ``h_i`` at ``d = 0`` and the cumulative embedding ``sum_{d' < d} E_{d'}(x_{i d'})`` after, plus a
  learned depth embedding; its output at depth ``d`` gives the logits of ``x_{i d}`` (one output
  projection per depth).

Token embeddings are learned (one table per depth), not the codec's codebooks: like the original,
the network needs only the tokens. Training is one teacher-forced :meth:`RQTransformer.forward`;
sampling uses :meth:`RQTransformer.new_cache`, :meth:`RQTransformer.spatial_step` and
:meth:`RQTransformer.depth_step`, with key/value caches for both transformers, so that each position
costs one spatial step and ``D`` depth steps of one token each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from attrs import asdict, field, frozen, validators
from einops import rearrange, repeat
from jaxtyping import Float, Int
from torch import Tensor, nn

from resgen.networks.conditioning import ClassEmbedding
from resgen.networks.transformer import AdaLNBlock, Transformer
from resgen.typing import Labels, Padding, Tokens

__all__ = ["RQTransformerConfig", "KVCache", "RQCache", "causal_transformer", "RQTransformer"]

_pos = validators.gt(0)

Modulation = tuple[Tensor, ...]
"""adaLN shifts, scales and gates of one block (six ``[batch, 1, width]`` tensors) or of the final
norm (two)."""


@frozen
class RQTransformerConfig:
    """Configuration of :class:`RQTransformer`.

    Attributes:
        length: number of token positions L (the most the network can generate).
        depth: RVQ depth D of the tokens.
        codes: codebook size K.
        num_classes: number of class labels (a null label is added for guidance).
        width: width of both transformers.
        layers: blocks of the spatial transformer.
        heads: attention heads of both transformers.
        depth_layers: blocks of the depth transformer.
        class_dropout: probability of training with the null label.
        dropout: residual dropout of every transformer block (training only).
    """

    length: int = field(validator=_pos)
    depth: int = field(validator=_pos)
    codes: int = field(validator=_pos)
    num_classes: int = field(validator=_pos)
    width: int = field(default=256, validator=_pos)
    layers: int = field(default=6, validator=_pos)
    heads: int = field(default=4, validator=_pos)
    depth_layers: int = field(default=2, validator=_pos)
    class_dropout: float = field(default=0.1, validator=[validators.ge(0.0), validators.lt(1.0)])
    dropout: float = field(default=0.0, validator=[validators.ge(0.0), validators.lt(1.0)])

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of the fields."""
        return asdict(self)


class KVCache:
    """Preallocated attention keys and values of every block of one causal transformer.

    ``keys`` and ``values`` are ``[layers, batch, heads, capacity, head_dim]``; the first
    ``length`` steps are filled.

    Args:
        layers: blocks of the transformer.
        batch: batch size.
        heads: attention heads.
        capacity: the most steps the cache can hold.
        head_dim: width per head.
        device: where the cache lives.
        dtype: floating-point type of the keys and values.
    """

    def __init__(
        self,
        layers: int,
        batch: int,
        heads: int,
        capacity: int,
        head_dim: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (layers, batch, heads, capacity, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.capacity = capacity
        self.length = 0

    def reset(self) -> None:
        """Forget every step (the buffers are reused)."""
        self.length = 0


class RQCache:
    """Sampling state of an :class:`RQTransformer`: both key/value caches, the precomputed adaLN
    modulations of the class conditioning, and the running inputs of the current position.

    Built by :meth:`RQTransformer.new_cache`; advanced by :meth:`RQTransformer.spatial_step` and
    :meth:`RQTransformer.depth_step`.
    """

    def __init__(
        self,
        spatial: KVCache,
        depth: KVCache,
        spatial_mods: list[Modulation],
        depth_mods: list[Modulation],
    ) -> None:
        self.spatial = spatial
        self.depth = depth
        self.spatial_mods = spatial_mods
        self.depth_mods = depth_mods
        self.context: Tensor | None = None  # h_i of the current position, [batch, 1, width]
        self.partial_sum: Tensor | None = None  # sum of the current position's embeddings so far


def _modulations(transformer: Transformer, cond: Tensor) -> list[Modulation]:
    """adaLN modulations of every block and of the final norm, computed once from ``cond``."""
    c = F.silu(cond)
    mods: list[Modulation] = [
        blk.modulation(c)[:, None].chunk(6, dim=-1) for blk in transformer.blocks
    ]
    mods.append(transformer.final_modulation(c)[:, None].chunk(2, dim=-1))
    return mods


def _causal_block(
    block: AdaLNBlock,
    x: Tensor,
    mod: Modulation,
    cache: KVCache | None,
    layer: int,
) -> Tensor:
    """One adaLN-Zero block applied causally; with a cache, ``x`` holds the next steps only."""
    shift1, scale1, gate1, shift2, scale2, gate2 = mod
    h = block.norm1(x) * (1 + scale1) + shift1
    q, k, v = rearrange(block.qkv(h), "b l (three h c) -> three b h l c", three=3, h=block.heads)
    if cache is None:
        h = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        start, steps = cache.length, x.shape[1]
        end = start + steps
        cache.keys[layer, :, :, start:end] = k
        cache.values[layer, :, :, start:end] = v
        k, v = cache.keys[layer, :, :, :end], cache.values[layer, :, :, :end]
        mask = None
        if steps > 1:  # a chunk after cached steps: query t sees keys 0..start+t
            mask = torch.ones(steps, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    x = x + gate1 * block.drop_residual(block.proj(rearrange(h, "b h l c -> b l (h c)")))
    h = block.norm2(x) * (1 + scale2) + shift2
    return x + gate2 * block.drop_residual(block.mlp(h))


def causal_transformer(
    transformer: Transformer,
    x: Float[Tensor, "batch steps width"],
    cond: Float[Tensor, "batch width"] | list[Modulation],
    cache: KVCache | None = None,
) -> Float[Tensor, "batch steps width"]:
    """Run a :class:`~resgen.networks.transformer.Transformer`'s blocks causally.

    Without a cache, ``x`` ``[batch, steps, width]`` is the whole sequence and position ``t``
    attends to ``0..t``. With a cache, ``x`` holds the next ``steps`` steps: their keys and values
    are appended to the cache, they attend to everything cached before them and causally among
    themselves, and ``cache.length`` grows by ``steps``.

    Args:
        transformer: the blocks and final norm to apply.
        x: ``[batch, steps, width]`` inputs.
        cond: ``[batch, width]`` conditioning vector, or its modulations precomputed once.
        cache: optional key/value cache of this transformer.

    Returns:
        ``[batch, steps, width]`` outputs.
    """
    if cache is not None and cache.length + x.shape[1] > cache.capacity:
        raise ValueError(
            f"the cache holds {cache.length} of {cache.capacity} steps; "
            f"{x.shape[1]} more do not fit"
        )
    mods = _modulations(transformer, cond) if isinstance(cond, Tensor) else cond
    for layer, block in enumerate(transformer.blocks):
        x = _causal_block(block, x, mods[layer], cache, layer)
    if cache is not None:
        cache.length += x.shape[1]
    shift, scale = mods[-1]
    return transformer.final_norm(x) * (1 + scale) + shift


class RQTransformer(nn.Module):
    """Autoregressive RQ-Transformer: a causal spatial transformer over positions and a causal
    depth transformer over the depths of each position (see the module docstring).

    Args:
        config: an :class:`RQTransformerConfig`.
    """

    def __init__(self, config: RQTransformerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        if c.width % c.heads:
            raise ValueError(f"width {c.width} is not divisible by heads {c.heads}")
        self.embedding = nn.Embedding(c.depth * c.codes, c.width)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.register_buffer("offsets", torch.arange(c.depth) * c.codes, persistent=False)
        self.start = nn.Parameter(torch.randn(c.width) * 0.02)
        self.position = nn.Parameter(torch.randn(c.length, c.width) * 0.02)
        self.depth_position = nn.Parameter(torch.randn(c.depth, c.width) * 0.02)
        self.classes = ClassEmbedding(c.num_classes, c.width, c.class_dropout)
        self.spatial = Transformer(c.width, c.layers, c.heads, dropout=c.dropout)
        self.depth_transformer = Transformer(c.width, c.depth_layers, c.heads, dropout=c.dropout)
        self.out_weight = nn.Parameter(torch.randn(c.depth, c.width, c.codes) * c.width**-0.5)
        self.out_bias = nn.Parameter(torch.zeros(c.depth, c.codes))

    @property
    def null_label(self) -> int:
        """Label index of the unconditional model."""
        return self.classes.null_label

    def _check_tokens(self, tokens: Tensor, depth: int) -> None:
        c = self.config
        if tokens.shape[-1] != depth:
            raise ValueError(f"expected tokens of {depth} depths, got shape {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= c.codes):
            raise ValueError(
                f"token out of range: values must lie in 0..{c.codes - 1}, "
                f"got min {int(tokens.min())} and max {int(tokens.max())}"
            )

    def embed(self, tokens: Int[Tensor, "*shape depth"]) -> Float[Tensor, "*shape depth width"]:
        """Learned per-depth embeddings ``[..., depth, width]`` of tokens ``[..., depth]``."""
        return self.embedding(tokens + self.offsets[: tokens.shape[-1]])

    def forward(
        self, tokens: Tokens, labels: Labels, padding: Padding | None = None
    ) -> Float[Tensor, "batch length depth codes"] | Float[Tensor, "positions depth codes"]:
        """Teacher-forced logits ``[batch, length, depth, codes]``: entry ``(i, d)`` is the
        distribution of ``x_{i d}`` given every earlier position and depths ``< d`` of position i.

        Args:
            tokens: ``[batch, length, depth]`` with ``length <= config.length``.
            labels: ``[batch]`` class labels (``num_classes`` is the null label).
            padding: optional ``[batch, length]``, ``True`` at positions whose logits are not
                wanted: then only the others' logits are returned, packed (see
                :meth:`depth_logits`).
        """
        c = self.config
        batch, length, depth = tokens.shape
        if depth != c.depth or length > c.length:
            raise ValueError(
                f"expected tokens of shape [batch, <= {c.length}, {c.depth}], "
                f"got {tuple(tokens.shape)}"
            )
        self._check_tokens(tokens, c.depth)
        cond = self.classes(labels)
        emb = self.embed(tokens)  # [b, l, d, w]
        sums = emb.sum(2)
        start = repeat(self.start, "w -> b 1 w", b=batch)
        x = torch.cat([start, sums[:, :-1]], dim=1) + self.position[:length]
        context = causal_transformer(self.spatial, x, cond)  # [b, l, w]
        return self.depth_logits(context, emb, cond, padding)

    def depth_logits(
        self,
        context: Float[Tensor, "batch length width"],
        embeddings: Float[Tensor, "batch length depth width"],
        cond: Float[Tensor, "batch width"],
        padding: Padding | None = None,
    ) -> Float[Tensor, "batch length depth codes"] | Float[Tensor, "positions depth codes"]:
        """Teacher-forced logits ``[batch, length, depth, codes]`` from the spatial context.

        The depth transformer reads, at each position, ``[context, e_0, e_0 + e_1, ...]``: the
        context, then the partial sums of the position's token embeddings (:meth:`embed`).
        With ``padding`` ``[batch, length]``, the marked positions skip the depth transformer
        and the output layer, and the logits of the others come packed,
        ``[positions, depth, codes]`` in the order of ``embeddings[~padding]``: a right-padded
        training batch spends no work and no memory on its padding.
        """
        batch, length, depth, _ = embeddings.shape
        partial = torch.cumsum(embeddings[:, :, :-1], dim=2)  # sum of depths < d, d = 1..D-1
        v = torch.cat([context[:, :, None], partial], dim=2) + self.depth_position
        cond = repeat(cond, "b w -> b l w", l=length)
        if padding is None:
            out = causal_transformer(
                self.depth_transformer,
                rearrange(v, "b l d w -> (b l) d w"),
                rearrange(cond, "b l w -> (b l) w"),
            )
            out = rearrange(out, "(b l) d w -> b l d w", b=batch)
            return torch.einsum("bldw,dwk->bldk", out, self.out_weight) + self.out_bias
        keep = ~padding
        out = causal_transformer(self.depth_transformer, v[keep], cond[keep])  # [real, d, w]
        return torch.einsum("ndw,dwk->ndk", out, self.out_weight) + self.out_bias

    def new_cache(self, labels: Labels) -> RQCache:
        """Empty sampling state for a batch of ``labels`` ``[batch]`` (class conditioning
        included)."""
        c = self.config
        cond = self.classes(labels)
        batch, device, dtype = labels.shape[0], self.start.device, self.start.dtype
        head_dim = c.width // c.heads
        return RQCache(
            spatial=KVCache(
                c.layers, batch, c.heads, c.length, head_dim, device=device, dtype=dtype
            ),
            depth=KVCache(
                c.depth_layers, batch, c.heads, c.depth, head_dim, device=device, dtype=dtype
            ),
            spatial_mods=_modulations(self.spatial, cond),
            depth_mods=_modulations(self.depth_transformer, cond),
        )

    def spatial_step(
        self, previous: Int[Tensor, "batch depth"] | None, cache: RQCache
    ) -> Float[Tensor, "batch width"]:
        """One step of the spatial transformer: the context ``h_i`` ``[batch, width]`` of the next
        position ``i = cache.spatial.length``.

        Args:
            previous: ``[batch, depth]`` tokens of position ``i - 1``; ``None`` at ``i = 0``.
            cache: the sampling state (advanced by one position; the depth cache is reset).
        """
        c = self.config
        i = cache.spatial.length
        if i >= c.length:
            raise ValueError(f"all {c.length} positions have been generated")
        if (previous is None) != (i == 0):
            raise ValueError("previous tokens are required after the first position, only there")
        if previous is not None:
            self._check_tokens(previous, c.depth)
        x = self.spatial_input(previous, i).expand(cache.spatial.keys.shape[1], -1)
        return self.spatial_advance(x, cache)

    def spatial_input(
        self, previous: Int[Tensor, "batch depth"] | None, i: int
    ) -> Float[Tensor, "*batch width"]:
        """The spatial transformer's input at position ``i``: the learned start vector
        (``[width]``, when ``previous`` is ``None``) or the summed embeddings of ``previous``, the
        ``[batch, depth]`` tokens of position ``i - 1`` (``[batch, width]``), plus position
        ``i``'s embedding."""
        x = self.start if previous is None else self.embed(previous).sum(1)
        return x + self.position[i]

    def spatial_advance(
        self, x: Float[Tensor, "batch width"], cache: RQCache
    ) -> Float[Tensor, "batch width"]:
        """Run the spatial transformer one position on the input ``x`` (``[batch, width]``,
        e.g. :meth:`spatial_input`) and return that position's context; the cache moves on by
        one position and its depth state is reset."""
        context = causal_transformer(self.spatial, x[:, None], cache.spatial_mods, cache.spatial)
        cache.context = context
        cache.partial_sum = None
        cache.depth.reset()
        return context[:, 0]

    def depth_step(
        self, previous: Int[Tensor, " batch"] | None, cache: RQCache
    ) -> Float[Tensor, "batch codes"]:
        """One step of the depth transformer: logits ``[batch, codes]`` of the current position's
        next depth ``d = cache.depth.length``.

        Args:
            previous: ``[batch]`` the token just drawn at depth ``d - 1``; ``None`` at ``d = 0``.
            cache: the sampling state (advanced by one depth).
        """
        c = self.config
        d = cache.depth.length
        if cache.context is None:
            raise ValueError("call spatial_step before depth_step")
        if d >= c.depth:
            raise ValueError(f"all {c.depth} depths of this position have been generated")
        if (previous is None) != (d == 0):
            raise ValueError("the previous token is required after the first depth, only there")
        if previous is None:
            v = cache.context[:, 0]
        else:
            if bool(((previous < 0) | (previous >= c.codes)).any()):
                raise ValueError(f"token out of range: values must lie in 0..{c.codes - 1}")
            emb = self.embedding(previous + (d - 1) * c.codes)
            cache.partial_sum = emb if cache.partial_sum is None else cache.partial_sum + emb
            v = cache.partial_sum
        v = (v + self.depth_position[d])[:, None]
        out = causal_transformer(self.depth_transformer, v, cache.depth_mods, cache.depth)
        return out[:, 0] @ self.out_weight[d] + self.out_bias[d]

"""The autoregressive baseline's sampler: ``L * D`` sequential token decisions with KV caches.

Position by position, one cached spatial step gives the position's context; then ``D`` cached
depth steps draw its tokens coarse to fine, each from its logits (temperature, top-p), with
classifier-free guidance on the logits (one doubled batch). Unlike the iterative samplers, the
number of network calls grows with both length and depth: ``L`` spatial plus ``L * D`` depth
steps per sample.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from attrs import field, frozen, validators
from jaxtyping import Float, Int
from torch import Tensor

from resgen.diffusion.guidance import Guider
from resgen.diffusion.sampler import StepCallback, initial_state
from resgen.diffusion.token_sampler import sample_categorical
from resgen.typing import Labels, MaskCounts, Padding, Tokens

__all__ = ["ARSamplerConfig", "ARSamplingModel", "DepthQuantizer", "ARSampler"]


@frozen
class ARSamplerConfig:
    """Options of :class:`ARSampler`.

    Attributes:
        temperature: temperature of the token distributions (0 = most likely token).
        top_p: nucleus truncation of the token distributions.
    """

    temperature: float = field(default=1.0, validator=validators.ge(0.0))
    top_p: float = field(default=1.0, validator=[validators.gt(0.0), validators.le(1.0)])


@runtime_checkable
class ARSamplingModel(Protocol):
    """What :class:`ARSampler` needs of a network
    (e.g. :class:`~resgen.networks.rq_transformer.RQTransformer`)."""

    @property
    def null_label(self) -> int:
        """Label of the unconditional model."""
        ...

    def new_cache(self, labels: Labels) -> object:
        """Empty sampling state for a batch of labels (opaque to the sampler)."""
        ...

    def spatial_step(
        self, previous: Int[Tensor, "batch depth"] | None, cache: object
    ) -> Float[Tensor, "batch width"]:
        """Context of the next position from the previous position's tokens."""
        ...

    def depth_step(
        self, previous: Int[Tensor, " batch"] | None, cache: object
    ) -> Float[Tensor, "batch codes"]:
        """Logits of the next depth of the current position."""
        ...


@runtime_checkable
class DepthQuantizer(Protocol):
    """What :class:`ARSampler` needs of the codec's quantizer: its depth."""

    @property
    def depth(self) -> int:
        """RVQ depth D."""
        ...


class ARSampler:
    """Autoregressive sampling: position by position, depth by depth.

    Args:
        config: an :class:`ARSamplerConfig`.
        guider: combines conditional and unconditional logits (a doubled batch, conditional rows
            first); ``None`` = no guidance. Its ``progress`` is the fraction of tokens decided.
    """

    def __init__(self, config: ARSamplerConfig | None = None, guider: Guider | None = None):
        self.config = config or ARSamplerConfig()
        self.guider = guider

    @torch.no_grad()
    def sample(
        self,
        model: ARSamplingModel,
        quantizer: DepthQuantizer,
        labels: Labels,
        length: int,
        *,
        prompt_tokens: Tokens | None = None,
        prompt_depths: MaskCounts | None = None,
        padding: Padding | None = None,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
    ) -> Tokens:
        """Generate tokens ``[batch, length, depth]``.

        Args:
            model: the network.
            quantizer: the codec's quantizer (only its depth is used; it must match the model's).
            labels: ``[batch]`` class labels.
            length: number of positions L (at most the model's).
            prompt_tokens: ``[batch, length, depth]`` given tokens (with ``prompt_depths``).
            prompt_depths: ``[batch, length]`` how many coarse depths of each position are given;
                given tokens are kept (teacher-forced) instead of drawn. An autoregressive model
                sees only the past, so a prompt informs the positions after it.
            padding: ``[batch, length]`` padded positions: their tokens are returned as 0 (a
                causal model never looks ahead, so trailing padding cannot affect real positions).
            generator: source of randomness; the same seed gives the same tokens.
            callback: called after every position ``i`` with ``(i + 1, tokens, counts)``, where
                ``counts`` is the number of depths still to draw per position.
        """
        cfg = self.config
        depth = quantizer.depth
        model_depth = getattr(getattr(model, "config", None), "depth", depth)
        if model_depth != depth:
            raise ValueError(f"depth mismatch: the model has {model_depth}, the codec {depth}")
        model_length = getattr(getattr(model, "config", None), "length", length)
        if not 1 <= length <= model_length:
            raise ValueError(f"length must lie in 1..{model_length} (the model's), got {length}")
        batch = labels.shape[0]
        tokens, counts = initial_state(
            batch,
            length,
            depth,
            prompt_tokens=prompt_tokens,
            prompt_depths=prompt_depths,
            padding=padding,
            device=labels.device,
        )
        given = counts < depth  # positions with at least one given depth
        guided = self.guider is not None
        rows = torch.cat([labels, torch.full_like(labels, model.null_label)]) if guided else labels
        cache = model.new_cache(rows)
        total = length * depth
        previous_position: Tensor | None = None
        for i in range(length):
            model.spatial_step(previous_position, cache)
            forced = depth - counts[:, i]  # depths of position i that are given
            forced_here = bool(given[:, i].any())
            previous: Tensor | None = None
            for d in range(depth):
                logits = model.depth_step(previous, cache)
                if guided:
                    cond, uncond = logits.chunk(2)
                    logits = self.guider.combine(cond, uncond, (i * depth + d + 1) / total)
                drawn, _ = sample_categorical(
                    logits, temperature=cfg.temperature, top_p=cfg.top_p, generator=generator
                )
                if forced_here:
                    drawn = torch.where(d < forced, tokens[:, i, d], drawn)
                tokens[:, i, d] = drawn
                previous = torch.cat([drawn, drawn]) if guided else drawn
            previous_position = tokens[:, i]
            if guided:
                previous_position = torch.cat([previous_position, previous_position])
            counts[:, i] = 0
            if callback is not None:
                callback(i + 1, tokens.clone(), counts.clone())
        if padding is not None:
            tokens = tokens.masked_fill(padding[..., None], 0)
        return tokens

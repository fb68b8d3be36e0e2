"""Confidence rules: how sure the sampler is of each proposed token (higher = keep first)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from attrs import field, frozen, validators
from jaxtyping import Float
from torch import Tensor

from resgen.typing import DepthMask, Tokens

__all__ = [
    "Proposal",
    "Confidence",
    "MixtureConfidence",
    "QuantizationConfidence",
    "CombinedConfidence",
    "CoarseFirstConfidence",
    "CONFIDENCE_RULES",
]


@frozen
class Proposal:
    """Tokens proposed by one sampler step, with the scores a confidence rule may use.

    Attributes:
        tokens: ``[batch, length, depth]`` proposed tokens at masked slots.
        masked: ``[batch, length, depth]`` which slots were masked (and so proposed).
        mixture_log_density: ``[batch, length]`` log-density per dimension of the sampled
            cumulative embedding under the predicted mixture.
        quantization_log_probs: ``[batch, length, depth]`` log-softmax of ``-distance / tau_q``
            of each chosen code during residual quantization (0 at known slots).
    """

    tokens: Tokens
    masked: DepthMask
    mixture_log_density: Float[Tensor, "batch length"]
    quantization_log_probs: Float[Tensor, "batch length depth"]


@runtime_checkable
class Confidence(Protocol):
    """A plug point: scores ``[batch, length, depth]`` for the proposed tokens (higher = surer)."""

    def __call__(self, proposal: Proposal) -> Float[Tensor, "batch length depth"]:
        """Confidence of each slot; only masked slots are read."""
        ...


@frozen
class MixtureConfidence:
    """Every depth of a position scores the mixture log-density of its sampled embedding."""

    def __call__(self, proposal: Proposal) -> Float[Tensor, "batch length depth"]:
        """``log p(z_i) / dim`` broadcast over depth."""
        return proposal.mixture_log_density[..., None].expand_as(proposal.quantization_log_probs)


@frozen
class QuantizationConfidence:
    """Each token scores the log-softmax of its quantization distance (how clear-cut a code was)."""

    def __call__(self, proposal: Proposal) -> Float[Tensor, "batch length depth"]:
        """The per-token quantization log-probability."""
        return proposal.quantization_log_probs


@frozen
class CombinedConfidence:
    """``mixture_weight * MixtureConfidence + QuantizationConfidence``.

    Attributes:
        mixture_weight: weight of the mixture log-density term.
    """

    mixture_weight: float = field(default=1.0, validator=validators.ge(0.0))

    def __call__(self, proposal: Proposal) -> Float[Tensor, "batch length depth"]:
        """The weighted sum of both scores."""
        return self.mixture_weight * MixtureConfidence()(proposal) + QuantizationConfidence()(
            proposal
        )


@frozen
class CoarseFirstConfidence:
    """Every slot of a coarser depth before any slot of a finer one; ``inner`` orders the
    positions within a depth.

    Each position then keeps about as many masked depths as the others, as in training, where
    a position's mask count follows the hypergeometric law of the total; ranking all slots
    together instead leaves some positions fully known beside fully masked ones.

    Attributes:
        inner: the rule that orders the slots of one depth.
    """

    inner: Confidence = field(factory=QuantizationConfidence)

    def __call__(self, proposal: Proposal) -> Float[Tensor, "batch length depth"]:
        """``inner``'s scores minus a step per depth that no score difference can bridge."""
        scores = self.inner(proposal)
        depth = torch.arange(scores.shape[-1], device=scores.device, dtype=scores.dtype)
        finite = scores[torch.isfinite(scores)]
        spread = float(finite.max() - finite.min()) if finite.numel() else 0.0
        return scores - depth * (spread + 100.0)  # 100 also outweighs the sampler's Gumbel noise


CONFIDENCE_RULES = {
    "mixture": MixtureConfidence,
    "quantization": QuantizationConfidence,
    "combined": CombinedConfidence,
    "coarse-first": CoarseFirstConfidence,
}
"""The bundled :class:`Confidence` rules by name (``SamplerConfig.confidence``)."""

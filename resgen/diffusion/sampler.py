"""ResGen's iterative sampler: predict cumulative embeddings, residual-quantize, keep the surest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from attrs import field, frozen, validators

from resgen.diffusion.confidence import Confidence, Proposal, QuantizationConfidence
from resgen.diffusion.guidance import Guider
from resgen.diffusion.masking import depth_mask, split_embeddings
from resgen.diffusion.mixture import MixtureParams, mixture_log_prob, sample_mixture
from resgen.diffusion.schedules import CosineSchedule, MaskSchedule
from resgen.diffusion.unmasking import masked_targets, reveal_most_confident
from resgen.quantizers.residual_vq import ResidualQuantization
from resgen.typing import DepthEmbeddings, Hidden, Labels, Latents, MaskCounts, Padding, Tokens

__all__ = ["SamplerConfig", "SamplingModel", "SamplingQuantizer", "StepCallback", "ResGenSampler"]


@frozen
class SamplerConfig:
    """Options of :class:`ResGenSampler`.

    Attributes:
        steps: number of network evaluations T (independent of length and depth).
        schedule: masking schedule used to decide how many slots stay masked after each step.
        temperature: Gaussian temperature: ``z ~ N(mu, (temperature * sigma)^2)``.
        mixture_temperature: temperature of the mixture weights.
        top_p: nucleus truncation of the mixture weights.
        gumbel_temperature: scale of the Gumbel noise on confidences at the first step, annealed
            linearly to 0 at the last.
        quantization_temperature: ``tau_q`` of the per-token quantization log-softmax.
    """

    steps: int = field(default=16, validator=validators.ge(1))
    schedule: MaskSchedule = field(factory=CosineSchedule)
    temperature: float = field(default=1.0, validator=validators.ge(0.0))
    mixture_temperature: float = field(default=1.0, validator=validators.gt(0.0))
    top_p: float = field(default=1.0, validator=[validators.gt(0.0), validators.le(1.0)])
    gumbel_temperature: float = field(default=1.0, validator=validators.ge(0.0))
    quantization_temperature: float = field(default=1.0, validator=validators.gt(0.0))


@runtime_checkable
class SamplingModel(Protocol):
    """What the sampler needs of a network (e.g. :class:`~resgen.networks.MaskedRVQTransformer`)."""

    @property
    def null_label(self) -> int:
        """Label of the unconditional model."""
        ...

    def hidden(
        self, visible: Latents, counts: MaskCounts, labels: Labels, padding: Padding | None
    ) -> Hidden:
        """Backbone output."""
        ...

    def head(self, hidden: Hidden) -> MixtureParams:
        """Mixture over the cumulative embedding of the masked depths."""
        ...


@runtime_checkable
class SamplingQuantizer(Protocol):
    """What the sampler needs of a quantizer (e.g. :class:`~resgen.quantizers.ResidualVQ`)."""

    @property
    def depth(self) -> int:
        """RVQ depth D."""
        ...

    def embed(self, tokens: Tokens) -> DepthEmbeddings:
        """Per-depth embeddings."""
        ...

    def quantize_from(
        self, latents: Latents, start_depth: MaskCounts, temperature: float = 1.0
    ) -> ResidualQuantization:
        """Residual quantization from a per-position start depth."""
        ...


StepCallback = Callable[[int, Tokens, MaskCounts], None]
"""Called after each step with ``(step, tokens, counts)``; ``step`` counts from 1."""


class ResGenSampler:
    """Iterative ResGen sampling in a fixed number of steps, whatever the RVQ depth.

    Each step runs the network once (on a doubled batch under guidance), samples a cumulative
    embedding ``z`` for every position that still has masked depths, residual-quantizes it from the
    position's first masked depth, scores the proposed tokens with a :class:`Confidence` rule and
    reveals the best ones, coarse before fine, so that exactly the schedule's number of slots stays
    masked. Given (prompt) tokens never change and ``k`` never increases.

    Args:
        config: a :class:`SamplerConfig`.
        guider: combines conditional and unconditional hidden states; ``None`` = no guidance.
        confidence: the scoring rule (default: :class:`QuantizationConfidence`).
    """

    def __init__(
        self,
        config: SamplerConfig | None = None,
        guider: Guider | None = None,
        confidence: Confidence | None = None,
    ) -> None:
        self.config = config or SamplerConfig()
        self.guider = guider
        self.confidence = confidence or QuantizationConfidence()

    @torch.no_grad()
    def sample(
        self,
        model: SamplingModel,
        quantizer: SamplingQuantizer,
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
            quantizer: the codec's quantizer (its codebooks turn embeddings into tokens).
            labels: ``[batch]`` class labels.
            length: number of positions L.
            prompt_tokens: ``[batch, length, depth]`` given tokens (with ``prompt_depths``).
            prompt_depths: ``[batch, length]`` how many coarse depths of each position are given
                (``depth`` = the whole position); given tokens are never changed.
            padding: ``[batch, length]`` padded positions (left untouched, never attended).
            generator: source of randomness; the same seed gives the same tokens.
            callback: called after every step.
        """
        cfg = self.config
        depth = quantizer.depth
        batch = labels.shape[0]
        device = labels.device
        tokens = torch.zeros(batch, length, depth, dtype=torch.long, device=device)
        counts = torch.full((batch, length), depth, dtype=torch.long, device=device)
        if (prompt_tokens is None) != (prompt_depths is None):
            raise ValueError("prompt_tokens and prompt_depths must be given together")
        if prompt_tokens is not None:
            if prompt_tokens.shape != tokens.shape:
                raise ValueError(
                    f"prompt_tokens must have shape {tuple(tokens.shape)}, "
                    f"got {tuple(prompt_tokens.shape)}"
                )
            if prompt_depths.min() < 0 or prompt_depths.max() > depth:
                raise ValueError(f"prompt_depths must lie in 0..{depth}")
            counts = depth - prompt_depths.to(device)
            tokens = torch.where(depth_mask(counts, depth), tokens, prompt_tokens.to(device))
        if padding is not None:
            counts = counts.masked_fill(padding, 0)
        targets = masked_targets(cfg.schedule, counts.sum(-1), cfg.steps)
        for step in range(1, cfg.steps + 1):
            progress = step / cfg.steps
            masked = depth_mask(counts, depth)
            visible, _ = split_embeddings(quantizer.embed(tokens), counts)
            hidden = self._guided_hidden(model, visible, counts, labels, padding, progress)
            params = model.head(hidden)
            z = sample_mixture(
                params,
                temperature=cfg.temperature,
                mixture_temperature=cfg.mixture_temperature,
                top_p=cfg.top_p,
                generator=generator,
            )
            quantized = quantizer.quantize_from(
                z, depth - counts, temperature=cfg.quantization_temperature
            )
            proposal = Proposal(
                tokens=torch.where(masked, quantized.tokens, tokens),
                masked=masked,
                mixture_log_density=mixture_log_prob(params, z) / z.shape[-1],
                quantization_log_probs=quantized.log_probs,
            )
            new_counts = reveal_most_confident(
                self.confidence(proposal),
                counts,
                targets[step - 1],
                gumbel_scale=cfg.gumbel_temperature * (1.0 - progress),
                generator=generator,
            )
            revealed = masked & ~depth_mask(new_counts, depth)
            tokens = torch.where(revealed, proposal.tokens, tokens)
            counts = new_counts
            if callback is not None:
                callback(step, tokens, counts)
        return tokens

    def _guided_hidden(
        self,
        model: SamplingModel,
        visible: Latents,
        counts: MaskCounts,
        labels: Labels,
        padding: Padding | None,
        progress: float,
    ) -> Hidden:
        if self.guider is None:
            return model.hidden(visible, counts, labels, padding)
        # One call on a doubled batch: conditional rows first, unconditional rows second.
        null = torch.full_like(labels, model.null_label)
        pad2 = None if padding is None else torch.cat([padding, padding])
        hidden = model.hidden(
            torch.cat([visible, visible]), torch.cat([counts, counts]), torch.cat([labels, null]),
            pad2,
        )
        cond, uncond = hidden.chunk(2)
        return self.guider.combine(cond, uncond, progress)

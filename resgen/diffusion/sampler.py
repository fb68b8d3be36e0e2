"""ResGen's iterative sampler: predict cumulative embeddings, residual-quantize, keep the surest.

The loop itself (:func:`unmask_iteratively`: initial state with prompts and padding, guided
network call, keep rule) is shared with the token-level baseline
(:class:`~resgen.diffusion.token_sampler.TokenSampler`); only the proposal step differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, runtime_checkable

import torch
from attrs import evolve, field, frozen, validators
from jaxtyping import Float
from torch import Tensor

from resgen.diffusion.confidence import CONFIDENCE_RULES, Confidence, Proposal
from resgen.diffusion.guidance import GuidedPasses, Guider
from resgen.diffusion.masking import depth_mask, split_embeddings
from resgen.diffusion.mixture import MixtureParams, mixture_log_prob, sample_mixture
from resgen.diffusion.schedules import CosineSchedule, MaskSchedule
from resgen.diffusion.unmasking import masked_targets, reveal_most_confident
from resgen.quantizers.residual_vq import ResidualQuantization
from resgen.typing import (
    DepthEmbeddings,
    DepthMask,
    Hidden,
    Labels,
    Latents,
    MaskCounts,
    Padding,
    Tokens,
)

__all__ = [
    "SamplerConfig",
    "HiddenModel",
    "DepthEmbedder",
    "SamplingModel",
    "SamplingQuantizer",
    "StepCallback",
    "Proposer",
    "GUIDANCE_TARGETS",
    "initial_state",
    "network_passes",
    "unmask_iteratively",
    "IterativeSampler",
    "ResGenSampler",
    "guided_mixture",
]


GUIDANCE_TARGETS = ("logits", "hidden")
"""What ResGen's classifier-free guidance combines (``SamplerConfig.guidance``): the mixture
``logits`` of the two passes, the Gaussians coming from the conditional pass (the default), or the
``hidden`` states before the head (earlier releases)."""


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
        confidence: name of the confidence rule in
            :data:`~resgen.diffusion.confidence.CONFIDENCE_RULES` (used unless the sampler is
            given a rule object). ``quantization`` is the default: at RVQ depth 16 on
            Fashion-MNIST it gave the best FID at 8, 16 and 32 steps (see the Results page).
        guidance: what classifier-free guidance combines, one of :data:`GUIDANCE_TARGETS`.
            ``logits`` (default): only the choice of component is guided, and the chosen
            component's Gaussian is the conditional pass's, so the sampled embedding stays near
            the codewords the component stands for. ``hidden``: the whole mixture is evaluated on
            combined hidden states (measured worse at both depths, see the Results page).
    """

    steps: int = field(default=16, validator=validators.ge(1))
    schedule: MaskSchedule = field(factory=CosineSchedule)
    temperature: float = field(default=1.0, validator=validators.ge(0.0))
    mixture_temperature: float = field(default=1.0, validator=validators.gt(0.0))
    top_p: float = field(default=1.0, validator=[validators.gt(0.0), validators.le(1.0)])
    gumbel_temperature: float = field(default=1.0, validator=validators.ge(0.0))
    quantization_temperature: float = field(default=1.0, validator=validators.gt(0.0))
    confidence: str = field(
        default="quantization", validator=validators.in_(tuple(CONFIDENCE_RULES))
    )
    guidance: str = field(default="logits", validator=validators.in_(GUIDANCE_TARGETS))


@runtime_checkable
class HiddenModel(Protocol):
    """What the iterative-sampling loop needs of a network: a backbone and a null label."""

    @property
    def null_label(self) -> int:
        """Label of the unconditional model."""
        ...

    def hidden(
        self, visible: Latents, counts: MaskCounts, labels: Labels, padding: Padding | None
    ) -> Hidden:
        """Backbone output."""
        ...


@runtime_checkable
class SamplingModel(HiddenModel, Protocol):
    """What the sampler needs of a network (e.g. :class:`~resgen.networks.MaskedRVQTransformer`)."""

    def mixture(self, hidden: Hidden) -> MixtureParams:
        """Mixture over the cumulative embedding of the masked depths, in the units of
        :meth:`target_scale`."""
        ...

    def mixture_logits(self, hidden: Hidden) -> Float[Tensor, "batch length comp"]:
        """:meth:`mixture`'s logits alone (what guidance reads of the unconditional pass)."""
        ...

    def target_scale(self, counts: MaskCounts) -> Float[Tensor, "batch length"]:
        """The fixed scale of each position's target: the mixture models ``z / scale``."""
        ...


@runtime_checkable
class DepthEmbedder(Protocol):
    """What the iterative-sampling loop needs of a quantizer: its depth and codeword embeddings."""

    @property
    def depth(self) -> int:
        """RVQ depth D."""
        ...

    def embed(self, tokens: Tokens) -> DepthEmbeddings:
        """Per-depth embeddings."""
        ...


@runtime_checkable
class SamplingQuantizer(DepthEmbedder, Protocol):
    """What the sampler needs of a quantizer (e.g. :class:`~resgen.quantizers.ResidualVQ`)."""

    def quantize_from(
        self, latents: Latents, start_depth: MaskCounts, temperature: float = 1.0
    ) -> ResidualQuantization:
        """Residual quantization from a per-position start depth."""
        ...


StepCallback = Callable[[int, Tokens, MaskCounts], None]
"""Called after each step with ``(step, tokens, counts)``; ``step`` counts from 1."""


@runtime_checkable
class Proposer(Protocol):
    """Turns one step's network passes into token proposals and their confidences.

    The part of an iterative sampler that differs between ResGen (mixture + residual quantization)
    and the token-level baseline (per-depth logits); everything else is :func:`unmask_iteratively`.
    The proposer decides which of its head's outputs guidance combines
    (:meth:`~resgen.diffusion.guidance.GuidedPasses.guide`).
    """

    def __call__(
        self,
        passes: GuidedPasses,
        tokens: Tokens,
        counts: MaskCounts,
        masked: DepthMask,
        generator: torch.Generator | None,
    ) -> tuple[Tokens, Float[Tensor, "batch length depth"]]:
        """``(proposed tokens, scores)``, each ``[batch, length, depth]``; only masked slots matter.

        Args:
            passes: the backbone's ``[batch, length, width]`` outputs: conditional and, under
                guidance, unconditional.
            tokens: ``[batch, length, depth]`` current tokens (valid where not masked).
            counts: ``[batch, length]`` masked depths per position.
            masked: ``[batch, length, depth]`` boolean view of ``counts``.
            generator: source of randomness.
        """
        ...


def initial_state(
    batch: int,
    length: int,
    depth: int,
    *,
    prompt_tokens: Tokens | None = None,
    prompt_depths: MaskCounts | None = None,
    padding: Padding | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tokens, MaskCounts]:
    """The starting state of an iterative sampler: everything masked except prompts and padding.

    Args:
        batch: number of samples.
        length: positions L.
        depth: RVQ depth D.
        prompt_tokens: ``[batch, length, depth]`` given tokens (with ``prompt_depths``).
        prompt_depths: ``[batch, length]`` how many coarse depths of each position are given.
        padding: ``[batch, length]`` padded positions (count 0: nothing to generate there).
        device: where the state lives.

    Returns:
        ``(tokens, counts)``: ``[batch, length, depth]`` tokens (prompts where given, 0 elsewhere)
        and ``[batch, length]`` masked depths per position.
    """
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
    return tokens, counts


def network_passes(
    model: HiddenModel,
    guider: Guider | None,
    visible: Latents,
    counts: MaskCounts,
    labels: Labels,
    padding: Padding | None,
    progress: float,
) -> GuidedPasses:
    """The backbone's outputs ``[batch, length, width]`` for one step, both passes under guidance.

    Under guidance the network runs once on a doubled batch (conditional rows first, then the
    same rows with the null label); what is combined is the proposer's choice.
    """
    if guider is None:
        return GuidedPasses(model.hidden(visible, counts, labels, padding))
    null = torch.full_like(labels, model.null_label)
    pad2 = None if padding is None else torch.cat([padding, padding])
    hidden = model.hidden(
        torch.cat([visible, visible]), torch.cat([counts, counts]), torch.cat([labels, null]), pad2
    )
    cond, uncond = hidden.chunk(2)
    return GuidedPasses(cond, uncond, guider, progress)


@torch.no_grad()
def unmask_iteratively(
    model: HiddenModel,
    quantizer: DepthEmbedder,
    labels: Labels,
    length: int,
    propose: Proposer,
    *,
    steps: int,
    schedule: MaskSchedule,
    gumbel_temperature: float = 1.0,
    guider: Guider | None = None,
    prompt_tokens: Tokens | None = None,
    prompt_depths: MaskCounts | None = None,
    padding: Padding | None = None,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> Tokens:
    """The loop shared by the iterative samplers (ResGen's and the token-level baseline's).

    Starts from :func:`initial_state`; at each of ``steps`` steps embeds the known tokens, runs
    the network once (:func:`network_passes`), lets ``propose`` fill the masked slots and score
    them, and reveals the best with :func:`~resgen.diffusion.unmasking.reveal_most_confident`
    (Gumbel noise of scale ``gumbel_temperature`` annealed linearly to 0) so that exactly the
    schedule's number of slots stays masked.

    Args:
        model: the network (``hidden`` and ``null_label``).
        quantizer: the codec's quantizer (``depth`` and ``embed``).
        labels: ``[batch]`` class labels.
        length: number of positions L.
        propose: the sampler-specific step (see :class:`Proposer`).
        steps: number of network evaluations T.
        schedule: masking schedule deciding how many slots stay masked after each step.
        gumbel_temperature: Gumbel noise scale on the confidences at the first step.
        guider: classifier-free guidance (``propose`` chooses what it combines); ``None`` = none.
        prompt_tokens: see :func:`initial_state`.
        prompt_depths: see :func:`initial_state`.
        padding: see :func:`initial_state`.
        generator: source of randomness.
        callback: called after every step.

    Returns:
        ``[batch, length, depth]`` tokens.
    """
    depth = quantizer.depth
    tokens, counts = initial_state(
        labels.shape[0],
        length,
        depth,
        prompt_tokens=prompt_tokens,
        prompt_depths=prompt_depths,
        padding=padding,
        device=labels.device,
    )
    targets = masked_targets(schedule, counts.sum(-1), steps)
    for step in range(1, steps + 1):
        progress = step / steps
        masked = depth_mask(counts, depth)
        visible, _ = split_embeddings(quantizer.embed(tokens), counts)
        passes = network_passes(model, guider, visible, counts, labels, padding, progress)
        proposed, scores = propose(passes, tokens, counts, masked, generator)
        new_counts = reveal_most_confident(
            scores,
            counts,
            targets[step - 1],
            gumbel_scale=gumbel_temperature * (1.0 - progress),
            generator=generator,
        )
        revealed = masked & ~depth_mask(new_counts, depth)
        tokens = torch.where(revealed, proposed, tokens)
        counts = new_counts
        if callback is not None:
            callback(step, tokens, counts)
    return tokens


class IterativeSampler(ABC):
    """The samplers that unmask in a fixed number of steps T (ResGen's and the token-level
    baseline's): :meth:`sample` runs :func:`unmask_iteratively` with the subclass's proposal step.

    Subclasses implement ``_propose(model, quantizer, passes, tokens, counts, masked, generator)``
    (the :class:`Proposer` signature with the model and quantizer first) and hold a ``config``
    with ``steps``, ``schedule`` and ``gumbel_temperature``.

    Args:
        guider: combines an output of the conditional and unconditional passes; ``None`` = no
            guidance.
    """

    config: Any

    def __init__(self, guider: Guider | None = None) -> None:
        self.guider = guider

    @torch.no_grad()
    def sample(
        self,
        model: HiddenModel,
        quantizer: DepthEmbedder,
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
            quantizer: the codec's quantizer (its codebooks embed the known tokens and, for
                ResGen, turn sampled embeddings into tokens).
            labels: ``[batch]`` class labels.
            length: number of positions L.
            prompt_tokens: ``[batch, length, depth]`` given tokens (with ``prompt_depths``).
            prompt_depths: ``[batch, length]`` how many coarse depths of each position are given
                (``depth`` = the whole position); given tokens are never changed.
            padding: ``[batch, length]`` padded positions (left untouched, never attended).
            generator: source of randomness; the same seed gives the same tokens.
            callback: called after every step with ``(step, tokens, counts)``.
        """
        cfg = self.config
        return unmask_iteratively(
            model,
            quantizer,
            labels,
            length,
            partial(self._propose, model, quantizer),
            steps=cfg.steps,
            schedule=cfg.schedule,
            gumbel_temperature=cfg.gumbel_temperature,
            guider=self.guider,
            prompt_tokens=prompt_tokens,
            prompt_depths=prompt_depths,
            padding=padding,
            generator=generator,
            callback=callback,
        )

    @abstractmethod
    def _propose(
        self,
        model: Any,
        quantizer: Any,
        passes: GuidedPasses,
        tokens: Tokens,
        counts: MaskCounts,
        masked: DepthMask,
        generator: torch.Generator | None,
    ) -> tuple[Tokens, Float[Tensor, "batch length depth"]]:
        """Proposed tokens and their confidence scores for one step (see :class:`Proposer`)."""


class ResGenSampler(IterativeSampler):
    """Iterative ResGen sampling in a fixed number of steps, whatever the RVQ depth.

    Each step runs the network once (on a doubled batch under guidance), samples a cumulative
    embedding ``z`` for every position that still has masked depths (guidance picks the
    component, see ``SamplerConfig.guidance``), residual-quantizes it from the position's first
    masked depth, scores the proposed tokens with a :class:`Confidence` rule and
    reveals the best ones, coarse before fine, so that exactly the schedule's number of slots stays
    masked. Given (prompt) tokens never change and ``k`` never increases. The loop itself is
    :func:`unmask_iteratively` (:meth:`IterativeSampler.sample`), shared with the token-level
    baseline. ``model`` must be a :class:`SamplingModel` and ``quantizer`` a
    :class:`SamplingQuantizer`.

    Args:
        config: a :class:`SamplerConfig`.
        guider: combines the conditional and unconditional passes' mixture logits (or hidden
            states, per ``config.guidance``); ``None`` = no guidance.
        confidence: the scoring rule (default: the one ``config.confidence`` names).
    """

    def __init__(
        self,
        config: SamplerConfig | None = None,
        guider: Guider | None = None,
        confidence: Confidence | None = None,
    ) -> None:
        super().__init__(guider)
        self.config = config or SamplerConfig()
        self.confidence = confidence or CONFIDENCE_RULES[self.config.confidence]()

    def _propose(
        self,
        model: SamplingModel,
        quantizer: SamplingQuantizer,
        passes: GuidedPasses,
        tokens: Tokens,
        counts: MaskCounts,
        masked: DepthMask,
        generator: torch.Generator | None,
    ) -> tuple[Tokens, Float[Tensor, "batch length depth"]]:
        """Sample ``z`` from the mixture, residual-quantize it, score the proposed tokens."""
        cfg = self.config
        params = guided_mixture(model, passes, cfg.guidance)
        z = sample_mixture(
            params,
            temperature=cfg.temperature,
            mixture_temperature=cfg.mixture_temperature,
            top_p=cfg.top_p,
            generator=generator,
        )
        scale = model.target_scale(counts)[..., None]
        quantized = quantizer.quantize_from(
            z * scale, quantizer.depth - counts, temperature=cfg.quantization_temperature
        )
        proposal = Proposal(
            tokens=torch.where(masked, quantized.tokens, tokens),
            masked=masked,
            # Density of z * scale, not of z: ranking positions of different counts by their
            # density in normalized units would ignore how narrow each count's target is.
            mixture_log_density=mixture_log_prob(params, z) / z.shape[-1] - scale[..., 0].log(),
            quantization_log_probs=quantized.log_probs,
        )
        return proposal.tokens, self.confidence(proposal)


def guided_mixture(model: SamplingModel, passes: GuidedPasses, guidance: str) -> MixtureParams:
    """The mixture one ResGen step samples from, guided as ``guidance`` says.

    ``"logits"``: the conditional pass's mixture with its logits guided by the unconditional
    pass's (of which only the logits are computed); ``"hidden"``: the mixture of the combined
    hidden states. Without guidance both are the conditional mixture.
    """
    if guidance not in GUIDANCE_TARGETS:
        raise ValueError(f"guidance must be one of {GUIDANCE_TARGETS}, got {guidance!r}")
    if guidance == "hidden":
        return model.mixture(passes.guided_hidden())
    params = model.mixture(passes.cond)
    if passes.uncond is None or passes.guider is None:
        return params
    uncond = model.mixture_logits(passes.uncond)
    return evolve(params, logits=passes.guider.combine(params.logits, uncond, passes.progress))

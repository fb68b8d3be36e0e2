"""The token-level baseline's sampler: MaskGIT-style iterative decoding with ResGen's keep rule.

Each step samples every masked token from the network's per-depth logits (temperature, top-p),
scores it by its log-probability under the model, and reveals the best with the same keep rule
as :class:`~resgen.diffusion.sampler.ResGenSampler` (coarse before fine, exact schedule). The
loop, the initial state (prompts, padding) and guidance are shared with ResGen's sampler
(:func:`~resgen.diffusion.sampler.unmask_iteratively`); only the proposal step differs.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from attrs import field, frozen, validators
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor

from resgen.diffusion.guidance import GuidedPasses, Guider
from resgen.diffusion.sampler import DepthEmbedder, HiddenModel, IterativeSampler
from resgen.diffusion.schedules import CosineSchedule, MaskSchedule
from resgen.typing import DepthMask, Hidden, MaskCounts, Tokens

__all__ = ["sample_categorical", "TokenSamplerConfig", "TokenSamplingModel", "TokenSampler"]


def sample_categorical(
    logits: Float[Tensor, "*shape codes"],
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Int[Tensor, "*shape"], Float[Tensor, "*shape"]]:
    """Draw one code per row of ``logits`` ``[..., codes]``.

    The distribution is ``softmax(logits / temperature)`` truncated to the smallest set of codes
    whose mass reaches ``top_p`` (the most likely code always stays); ``temperature = 0`` takes the
    most likely code.

    Returns:
        ``(codes, log_probs)``, each ``[...]``: the drawn codes and their log-probability under the
        model's own distribution ``log_softmax(logits)`` (untempered, untruncated), MaskGIT's
        confidence.
    """
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    shape = logits.shape[:-1]
    flat = rearrange(logits.float(), "... k -> (...) k")
    if temperature == 0:
        codes = flat.argmax(-1)
    else:
        scaled = flat / temperature
        if top_p < 1.0:
            probs = torch.softmax(scaled, dim=-1)
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            # Keep a code while the mass strictly before it is below top_p (the first always stays).
            keep_sorted = (sorted_probs.cumsum(-1) - sorted_probs) < top_p
            keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
            scaled = scaled.masked_fill(~keep, float("-inf"))
        # Gumbel-max: argmax(scaled + Gumbel noise) is a draw from softmax(scaled), several times
        # cheaper on the CPU than torch.multinomial for the small batches of the AR sampler.
        uniform = torch.rand(scaled.shape, generator=generator, device=scaled.device)
        codes = (scaled - torch.log(-torch.log(uniform.clamp(1e-20, 1.0)))).argmax(-1)
    log_probs = torch.log_softmax(flat, dim=-1).gather(-1, codes[:, None])[:, 0]
    return codes.reshape(shape), log_probs.reshape(shape)


@frozen
class TokenSamplerConfig:
    """Options of :class:`TokenSampler`.

    Attributes:
        steps: number of network evaluations T (independent of length and depth).
        schedule: masking schedule used to decide how many slots stay masked after each step.
        temperature: temperature of the token distributions (0 = most likely token).
        top_p: nucleus truncation of the token distributions.
        gumbel_temperature: scale of the Gumbel noise on confidences at the first step, annealed
            linearly to 0 at the last (MaskGIT's choice temperature).
    """

    steps: int = field(default=16, validator=validators.ge(1))
    schedule: MaskSchedule = field(factory=CosineSchedule)
    temperature: float = field(default=1.0, validator=validators.ge(0.0))
    top_p: float = field(default=1.0, validator=[validators.gt(0.0), validators.le(1.0)])
    gumbel_temperature: float = field(default=1.0, validator=validators.ge(0.0))


@runtime_checkable
class TokenSamplingModel(HiddenModel, Protocol):
    """What :class:`TokenSampler` needs of a network
    (e.g. :class:`~resgen.networks.token_head.MaskedTokenTransformer`)."""

    def token_logits(self, hidden: Hidden) -> Float[Tensor, "batch length depth codes"]:
        """Per-depth token logits."""
        ...


class TokenSampler(IterativeSampler):
    """MaskGIT-style sampling of the token-level baseline in a fixed number of steps.

    Each step runs the network once (on a doubled batch under guidance, which combines the two
    passes' token logits), samples a token for every masked slot from its logits, and
    keeps the most confident (log-probability plus annealed Gumbel noise), coarse before fine, so
    that exactly the schedule's number of slots stays masked. Given tokens never change. The loop
    is :meth:`~resgen.diffusion.sampler.IterativeSampler.sample`; ``model`` must be a
    :class:`TokenSamplingModel`.

    Args:
        config: a :class:`TokenSamplerConfig`.
        guider: combines the conditional and unconditional token logits; ``None`` = no guidance.
    """

    def __init__(self, config: TokenSamplerConfig | None = None, guider: Guider | None = None):
        super().__init__(guider)
        self.config = config or TokenSamplerConfig()

    def _propose(
        self,
        model: TokenSamplingModel,
        quantizer: DepthEmbedder,
        passes: GuidedPasses,
        tokens: Tokens,
        counts: MaskCounts,
        masked: DepthMask,
        generator: torch.Generator | None,
    ) -> tuple[Tokens, Float[Tensor, "batch length depth"]]:
        """Sample every masked token from its logits; its confidence is its log-probability."""
        logits = passes.guide(model.token_logits)
        if logits.shape[2] != quantizer.depth:
            raise ValueError(
                f"depth mismatch: the model predicts {logits.shape[2]} depths, "
                f"the codec has {quantizer.depth}"
            )
        codes = getattr(quantizer, "codes", None)
        if codes is not None and logits.shape[3] != codes:
            raise ValueError(
                f"codebook size mismatch: the model predicts {logits.shape[3]} codes per depth, "
                f"the codec has {codes}"
            )
        # Draw at masked slots only: known slots keep their token, the keep rule skips their score.
        drawn, log_probs = sample_categorical(
            logits[masked],
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            generator=generator,
        )
        proposed = tokens.masked_scatter(masked, drawn)
        scores = torch.zeros(tokens.shape, device=logits.device).masked_scatter(masked, log_probs)
        return proposed, scores

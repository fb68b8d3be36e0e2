"""ResGen's training objective: the mixture NLL of the cumulative embedding of masked tokens."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from attrs import field, frozen, validators
from jaxtyping import Bool, Float, Int
from torch import Tensor

from resgen.diffusion.masking import sample_training_counts, split_embeddings
from resgen.diffusion.mixture import (
    AssignedComponent,
    MixtureParams,
    gaussian_log_prob,
    mixture_log_prob,
)
from resgen.diffusion.schedules import MaskSchedule
from resgen.typing import DepthEmbeddings, Hidden, Labels, Latents, MaskCounts, Padding, Tokens

__all__ = [
    "ResGenLoss",
    "OBJECTIVES",
    "ResGenObjective",
    "MixtureModel",
    "masked_mixture_nll",
    "assigned_mixture_nll",
    "responsibility_mixture_bound",
    "first_masked_tokens",
    "EmbeddingModel",
    "TokenEmbedder",
    "resgen_loss",
]

OBJECTIVES = ("nll", "jensen", "clam")
"""The forms of the mixture loss: the exact NLL (:func:`masked_mixture_nll`), its Jensen split
with components assigned to the token at the first masked depth (:func:`assigned_mixture_nll`),
and CLaM-TTS's split with soft nearest-mean responsibilities and a fixed isotropic scale
(:func:`responsibility_mixture_bound`)."""


@frozen
class ResGenLoss:
    """A training loss with what was measured on the way.

    Attributes:
        loss: scalar to minimise: mean over masked positions of ``-log p(z_i) / dim`` (nats/dim).
        masked_positions: number of positions that contributed.
    """

    loss: Float[Tensor, ""]
    masked_positions: int


def _check_beta(beta: float) -> None:
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")


def _masked_mean(
    values: Float[Tensor, "batch length"], weight: Bool[Tensor, "batch length"]
) -> Float[Tensor, ""]:
    count = weight.sum()
    if int(count) == 0:
        raise ValueError("no masked position in the batch: the loss is undefined")
    return (values * weight).sum() / count


def masked_mixture_nll(
    params: MixtureParams,
    target: Latents,
    weight: Bool[Tensor, "batch length"],
    *,
    beta: float = 0.0,
) -> Float[Tensor, ""]:
    """Mean over positions where ``weight`` is true of ``-log p(target_i) / dim`` (nats per dim).

    With ``beta > 0`` each position's term is multiplied by its predicted variance to the power
    ``beta`` (detached; the mixture's weighted mean of ``sigma^2`` over components and dimensions),
    as in beta-NLL (Seitzer et al., 2022). Why: the cumulative embedding of a few fine depths is
    tiny next to that of a fully masked position, so under the plain NLL (``beta = 0``) the
    ``1 / sigma^2`` factor of the fine positions' gradients swamps the coarse ones. (On
    Fashion-MNIST this alone did not make the network use its context at fully masked positions;
    the Jensen objective did, see :func:`assigned_mixture_nll`.) The optimum of each position's
    density is unchanged; only the weighting across positions is.
    """
    _check_beta(beta)
    nll = -mixture_log_prob(params, target) / target.shape[-1]
    if beta > 0:
        with torch.no_grad():
            probs = torch.softmax(params.logits.float(), dim=-1)
            variance = (probs[..., None] * torch.exp(2 * params.log_scales.float())).sum(2)
        nll = nll * variance.mean(-1).pow(beta)
    return _masked_mean(nll, weight)


def assigned_mixture_nll(
    assigned: AssignedComponent,
    target: Latents,
    weight: Bool[Tensor, "batch length"],
    *,
    beta: float = 0.0,
    regression_weight: float = 1.0,
) -> Float[Tensor, ""]:
    """Jensen's bound on the mixture NLL with a known component per position (nats per dim).

    For any assignment ``c``:
    ``-log sum_k pi_k N(z; mu_k, s_k) <= -log pi_c - log N(z; mu_c, s_c)``,
    a classification term (cross-entropy of the mixture logits against ``c``) plus a regression
    term (the Gaussian NLL of the assigned component). ResGen assigns ``c`` = the token at the
    first masked depth, so there are as many components as codewords. Why: under the exact NLL the
    mixture weights get only a weak, responsibility-weighted gradient, and on Fashion-MNIST the
    network learned to ignore its context for fully masked positions; the cross-entropy term is the
    token-level baseline's loss on the coarsest unknown token, which learns context fast, while the
    regression term still fits the cumulative embedding of every masked depth.

    Args:
        assigned: weight, mean and scales of the assigned component per position
            (``MixtureOfGaussiansHead.assigned``).
        target: cumulative embeddings ``[batch, length, dim]``.
        weight: positions that count.
        beta: beta-NLL weight of the regression term: it is multiplied by the assigned
            component's (detached) mean variance to the power ``beta``. With ``beta = 1`` the
            means get squared-error gradients, whose size no longer grows as the predicted
            scales shrink; without it the fine depths' tiny scales swamp the classification
            term's gradient in the shared backbone (measured: context goes unused at ``beta =
            0``). The optimum of each Gaussian is unchanged. The returned value is then a
            weighted loss, not the bound itself.
        regression_weight: a constant factor on the regression term (1 = the bound). Its share
            of the backbone's gradient against the classification term's depends on the
            target's units under ``beta > 0``; with per-count target scales it sets that share.
    """
    _check_beta(beta)
    regression = -gaussian_log_prob(assigned.mean, assigned.log_scale, target)
    if beta > 0:
        variance = torch.exp(2 * assigned.log_scale.detach().float()).mean(-1)
        regression = regression * variance.pow(beta)
    per_dim = (regression_weight * regression - assigned.log_weight.float()) / target.shape[-1]
    return _masked_mean(per_dim, weight)


def responsibility_mixture_bound(
    params: MixtureParams,
    target: Latents,
    weight: Bool[Tensor, "batch length"],
    *,
    scale: float,
) -> Float[Tensor, ""]:
    """CLaM-TTS's Jensen bound on the mixture NLL with isotropic scale ``scale`` (nats per dim).

    The responsibility of component ``k`` is ``q(k | z) ∝ exp(-||z - mu_k||^2 / (2 scale^2))``
    (no prior weight, treated as a constant), and
    ``-log sum_k pi_k N(z; mu_k, scale^2 I) <= sum_k q_k (-log pi_k) + sum_k q_k (-log N(z; mu_k,
    scale^2 I))``: a cross-entropy of the mixture logits against ``q`` plus each mean's squared
    error weighted by ``q``. Every component near the target gets a share of the gradient, whatever
    token the data wrote.

    Args:
        params: the mixture (its ``log_scales`` are not read: the scale is ``scale``).
        target: ``[batch, length, dim]`` targets.
        weight: ``[batch, length]`` positions that count.
        scale: the components' standard deviation.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    dim = target.shape[-1]
    squared = (target.float()[:, :, None, :] - params.means.float()).pow(2).sum(-1)
    log_q = torch.log_softmax(-squared.detach() / (2 * scale**2), dim=-1)
    q = log_q.exp()
    log_weights = torch.log_softmax(params.logits.float(), dim=-1)
    classification = -(q * log_weights).sum(-1)
    gaussian_nll = squared / (2 * scale**2) + dim * (math.log(scale) + 0.5 * math.log(2 * math.pi))
    regression = (q * gaussian_nll).sum(-1)
    return _masked_mean((classification + regression) / dim, weight)


def first_masked_tokens(tokens: Tokens, counts: MaskCounts) -> Int[Tensor, "batch length"]:
    """The token at depth ``D - k_i`` (the coarsest masked one) per position ``[batch, length]``.

    Positions with ``k_i = 0`` get their last token (they are outside any loss).
    """
    depth = tokens.shape[-1]
    first = (depth - counts).clamp(max=depth - 1)
    return tokens.gather(-1, first[..., None])[..., 0]


@frozen
class ResGenObjective:
    """Which form of ResGen's mixture loss to train with.

    Attributes:
        kind: ``"nll"``, the exact mixture NLL (:func:`masked_mixture_nll`); ``"jensen"``, its
            Jensen split with the first masked token as the component
            (:func:`assigned_mixture_nll`; the head needs one component per codeword); or
            ``"clam"``, CLaM-TTS's split with soft nearest-mean responsibilities and a fixed
            isotropic scale (:func:`responsibility_mixture_bound`).
        beta: beta-NLL weighting exponent in ``[0, 1]`` (0 = none) of the ``nll`` and ``jensen``
            forms; see their functions.
        normalize_targets: divide each position's target by a fixed RMS for its mask count
            (:mod:`resgen.diffusion.target_scale`); a builder then gives the network those scales
            (``MaskedTransformerConfig.target_scales``). The loss reads them from the network in
            any case (ones when it has none), so this flag tells builders what to do.
        clam_scale: the ``clam`` form's fixed standard deviation, in the (normalised) target's
            units.
        regression_weight: the ``jensen`` form's weight of its regression term against its
            classification term (:func:`assigned_mixture_nll`).
    """

    kind: str = field(default="nll", validator=validators.in_(OBJECTIVES))
    beta: float = field(default=0.0, validator=[validators.ge(0.0), validators.le(1.0)])
    normalize_targets: bool = False
    clam_scale: float = field(default=0.25, validator=validators.gt(0.0))
    regression_weight: float = field(default=1.0, validator=validators.gt(0.0))

    def head_components(self, configured: int, codes: int) -> int:
        """Mixture components the head needs: ``codes`` (one per codeword) for the Jensen form,
        else the ``configured`` number."""
        return codes if self.kind == "jensen" else configured

    def head_fixed_scale(self) -> float | None:
        """The fixed standard deviation the head must use (the ``clam`` form's), else ``None``."""
        return self.clam_scale if self.kind == "clam" else None

    def __call__(
        self,
        model: MixtureModel,
        hidden: Hidden,
        tokens: Tokens,
        counts: MaskCounts,
        target: Latents,
        weight: Bool[Tensor, "batch length"],
    ) -> Float[Tensor, ""]:
        """The loss (nats per dim) of ``target`` ``[batch, length, dim]`` at ``weight``'s positions.

        ``hidden`` ``[batch, length, width]`` goes through ``model``'s head; ``tokens``
        ``[batch, length, depth]`` and ``counts`` ``[batch, length]`` give the assignment of the
        Jensen form. The target is divided by ``model.target_scale(counts)`` first.
        """
        target = target / model.target_scale(counts)[..., None]
        if self.kind == "clam":
            return responsibility_mixture_bound(
                model.mixture(hidden), target, weight, scale=self.clam_scale
            )
        if self.kind == "jensen":
            first = first_masked_tokens(tokens, counts)
            components = model.mixture_components
            if bool(((first >= components) & weight).any()):
                raise ValueError(
                    f"the Jensen objective needs one mixture component per codeword; the head "
                    f"has {components}, a token is {int(first.max())}"
                )
            assigned = model.assigned_component(hidden, first.clamp(max=components - 1))
            return assigned_mixture_nll(
                assigned, target, weight, beta=self.beta, regression_weight=self.regression_weight
            )
        return masked_mixture_nll(model.mixture(hidden), target, weight, beta=self.beta)


@runtime_checkable
class MixtureModel(Protocol):
    """What :class:`ResGenObjective` needs of a network: its mixture head, whole or one
    component per position, and the fixed scale of its targets."""

    def target_scale(self, counts: MaskCounts) -> Float[Tensor, "batch length"]:
        """The fixed scale ``[batch, length]`` of each position's target for its mask count."""
        ...

    @property
    def mixture_components(self) -> int:
        """Number of mixture components of the head."""
        ...

    def mixture(self, hidden: Hidden) -> MixtureParams:
        """The mixture for hidden states ``[batch, length, width]``."""
        ...

    def assigned_component(
        self, hidden: Hidden, component: Int[Tensor, "batch length"]
    ) -> AssignedComponent:
        """One given component per position."""
        ...


@runtime_checkable
class EmbeddingModel(MixtureModel, Protocol):
    """What :func:`resgen_loss` needs of a network: a backbone ``hidden(visible, counts, labels,
    padding)`` and a mixture head (:class:`MixtureModel`)."""

    def hidden(
        self, visible: Latents, counts: MaskCounts, labels: Labels, padding: Padding | None
    ) -> Hidden:
        """Backbone output ``[batch, length, width]``."""
        ...


@runtime_checkable
class TokenEmbedder(Protocol):
    """What :func:`resgen_loss` needs of a quantizer: per-depth codeword embeddings."""

    def embed(self, tokens: Tokens) -> DepthEmbeddings:
        """``[batch, length, depth, dim]`` embeddings of ``tokens``."""
        ...


def resgen_loss(
    model: EmbeddingModel,
    embedder: TokenEmbedder,
    tokens: Tokens,
    labels: Labels,
    schedule: MaskSchedule,
    *,
    padding: Padding | None = None,
    generator: torch.Generator | None = None,
    objective: ResGenObjective | None = None,
) -> ResGenLoss:
    """One Monte Carlo sample of ResGen's loss on a batch of tokens ``[batch, length, depth]``.

    Draws a mask state from ``schedule`` (:func:`~resgen.diffusion.masking.sample_training_counts`),
    feeds the known coarse embeddings to ``model`` and scores the cumulative embedding of the masked
    fine depths under the predicted mixture, in the form ``objective`` names (default: the exact
    NLL, :class:`ResGenObjective`).
    """
    objective = objective or ResGenObjective()
    batch, length, depth = tokens.shape
    counts = sample_training_counts(
        schedule, batch, length, depth, padding=padding, generator=generator, device=tokens.device
    )
    with torch.no_grad():
        visible, target = split_embeddings(embedder.embed(tokens), counts)
    hidden = model.hidden(visible, counts, labels, padding)
    weight = counts > 0
    if padding is not None:
        weight = weight & ~padding
    return ResGenLoss(
        loss=objective(model, hidden, tokens, counts, target, weight),
        masked_positions=int(weight.sum()),
    )

"""ResGen's training objective: the mixture NLL of the cumulative embedding of masked tokens."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from attrs import frozen
from jaxtyping import Bool, Float
from torch import Tensor

from resgen.diffusion.masking import sample_training_counts, split_embeddings
from resgen.diffusion.mixture import MixtureParams, mixture_log_prob
from resgen.diffusion.schedules import MaskSchedule
from resgen.typing import DepthEmbeddings, Labels, Latents, MaskCounts, Padding, Tokens

__all__ = ["ResGenLoss", "masked_mixture_nll", "EmbeddingModel", "TokenEmbedder", "resgen_loss"]


@frozen
class ResGenLoss:
    """A training loss with what was measured on the way.

    Attributes:
        loss: scalar to minimise: mean over masked positions of ``-log p(z_i) / dim`` (nats/dim).
        masked_positions: number of positions that contributed.
    """

    loss: Float[Tensor, ""]
    masked_positions: int


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
    ``1 / sigma^2`` factor of the fine positions' gradients swamps the coarse ones, and the network
    never learns to use its context for fully masked positions. ``beta = 0.5`` evens them out.
    The optimum of each position's density is unchanged; only the weighting across positions is.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    nll = -mixture_log_prob(params, target) / target.shape[-1]
    count = weight.sum()
    if int(count) == 0:
        raise ValueError("no masked position in the batch: the loss is undefined")
    if beta > 0:
        with torch.no_grad():
            probs = torch.softmax(params.logits.float(), dim=-1)
            variance = (probs[..., None] * torch.exp(2 * params.log_scales.float())).sum(2)
        nll = nll * variance.mean(-1).pow(beta)
    return (nll * weight).sum() / count


@runtime_checkable
class EmbeddingModel(Protocol):
    """What :func:`resgen_loss` needs of a network: ``(visible, counts, labels, padding)`` to
    mixture parameters."""

    def __call__(
        self, visible: Latents, counts: MaskCounts, labels: Labels, padding: Padding | None
    ) -> MixtureParams:
        """Mixture parameters per position."""
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
    beta: float = 0.0,
) -> ResGenLoss:
    """One Monte Carlo sample of ResGen's loss on a batch of tokens ``[batch, length, depth]``.

    Draws a mask state from ``schedule`` (:func:`~resgen.diffusion.masking.sample_training_counts`),
    feeds the known coarse embeddings to ``model`` and scores the cumulative embedding of the masked
    fine depths under the predicted mixture.
    """
    batch, length, depth = tokens.shape
    counts = sample_training_counts(
        schedule, batch, length, depth, padding=padding, generator=generator, device=tokens.device
    )
    with torch.no_grad():
        visible, target = split_embeddings(embedder.embed(tokens), counts)
    params = model(visible, counts, labels, padding)
    weight = counts > 0
    if padding is not None:
        weight = weight & ~padding
    return ResGenLoss(
        loss=masked_mixture_nll(params, target, weight, beta=beta),
        masked_positions=int(weight.sum()),
    )

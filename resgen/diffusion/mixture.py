"""Diagonal Gaussian mixtures over code space: the density ResGen's head predicts per position."""

from __future__ import annotations

import math

import torch
from attrs import frozen
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from resgen.typing import Latents

__all__ = [
    "MixtureParams",
    "AssignedComponent",
    "gaussian_log_prob",
    "mixture_log_prob",
    "mixture_mean",
    "sample_mixture",
]

_LOG_2PI = math.log(2 * math.pi)


@frozen
class MixtureParams:
    """Parameters of one diagonal Gaussian mixture per position.

    Attributes:
        logits: ``[batch, length, comp]`` unnormalised mixture weights.
        means: ``[batch, length, comp, dim]`` component means.
        log_scales: ``[batch, length, comp, dim]`` log standard deviations.
    """

    logits: Float[Tensor, "batch length comp"]
    means: Float[Tensor, "batch length comp dim"]
    log_scales: Float[Tensor, "batch length comp dim"]


@frozen
class AssignedComponent:
    """One given component of each position's mixture: what Jensen's split of the NLL scores.

    Attributes:
        log_weight: ``[batch, length]`` log mixture weight of the component.
        mean: ``[batch, length, dim]`` its mean.
        log_scale: ``[batch, length, dim]`` its log standard deviations.
    """

    log_weight: Float[Tensor, "batch length"]
    mean: Float[Tensor, "batch length dim"]
    log_scale: Float[Tensor, "batch length dim"]


def gaussian_log_prob(
    means: Float[Tensor, "*#batch dim"],
    log_scales: Float[Tensor, "*#batch dim"],
    z: Float[Tensor, "*#batch dim"],
) -> Float[Tensor, "*#batch"]:
    """``log N(z; mu, diag(sigma^2))`` over the last axis ``dim`` (inputs broadcast), in float32."""
    log_scales = log_scales.float()
    normed = (z.float() - means.float()) * torch.exp(-log_scales)
    return -0.5 * (normed.pow(2) + _LOG_2PI).sum(-1) - log_scales.sum(-1)


def mixture_log_prob(params: MixtureParams, z: Latents) -> Float[Tensor, "batch length"]:
    """Exact ``log sum_c pi_c N(z; mu_c, diag(sigma_c^2))`` of ``z`` ``[batch, length, dim]``.

    Computed in float32 with logsumexp whatever the input precision.
    """
    component = gaussian_log_prob(params.means, params.log_scales, z[:, :, None, :])
    log_weights = torch.log_softmax(params.logits.float(), dim=-1)
    return torch.logsumexp(log_weights + component, dim=-1)


def mixture_mean(params: MixtureParams) -> Latents:
    """The mixture's mean ``sum_c pi_c mu_c`` ``[batch, length, dim]``: the network's
    prediction of ``z`` under squared error (what a regression model would output)."""
    weights = torch.softmax(params.logits.float(), dim=-1)
    return einsum(weights, params.means.float(), "b l c, b l c d -> b l d")


def sample_mixture(
    params: MixtureParams,
    *,
    temperature: float = 1.0,
    mixture_temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Latents:
    """Draw one ``z`` ``[batch, length, dim]`` per position.

    A component is chosen from the mixture weights (sharpened by ``mixture_temperature`` and
    truncated to the smallest set whose mass reaches ``top_p``), then ``z ~ N(mu, (temperature *
    sigma)^2)``. ``temperature = 0`` returns the chosen component's mean.
    """
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    if temperature < 0 or mixture_temperature <= 0:
        raise ValueError("temperature must be >= 0 and mixture_temperature > 0")
    probs = torch.softmax(params.logits.float() / mixture_temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep a component while the mass before it is below top_p (the first always stays).
        keep_sorted = (sorted_probs.cumsum(-1) - sorted_probs) < top_p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    batch, length, comp = probs.shape
    flat = probs.reshape(-1, comp)
    choice = torch.multinomial(flat, 1, generator=generator).reshape(batch, length)
    index = choice[:, :, None, None].expand(-1, -1, 1, params.means.shape[-1])
    mean = params.means.float().gather(2, index)[:, :, 0]
    scale = params.log_scales.float().gather(2, index)[:, :, 0].exp()
    noise = torch.randn(mean.shape, generator=generator, device=mean.device)
    return mean + temperature * scale * noise

"""The three generators a recipe can train on the same tokens: ResGen and the paper's baselines.

``resgen`` (cumulative-embedding prediction with a mixture head), ``token`` (token-level masked
prediction, MaskGIT/SoundStorm-like) and ``ar`` (the autoregressive RQ-Transformer). Each kind is
built, trained and sampled through the three functions below, so a recipe switches between them
with one string and compares them at equal budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from attrs import asdict, fields
from torch import nn

from resgen.diffusion.ar_loss import ar_loss
from resgen.diffusion.ar_sampler import ARSampler, ARSamplerConfig
from resgen.diffusion.guidance import ClassifierFreeGuidance
from resgen.diffusion.loss import ResGenObjective, resgen_loss
from resgen.diffusion.sampler import ResGenSampler, SamplerConfig
from resgen.diffusion.schedules import MaskSchedule
from resgen.diffusion.target_scale import count_target_rms
from resgen.diffusion.token_loss import token_loss
from resgen.diffusion.token_sampler import TokenSampler, TokenSamplerConfig
from resgen.networks import (
    MaskedRVQTransformer,
    MaskedTokenTransformer,
    MaskedTokenTransformerConfig,
    MaskedTransformerConfig,
    RQTransformer,
    RQTransformerConfig,
)
from resgen.quantizers.residual_vq import ResidualVQ
from resgen.typing import Labels, Tokens

__all__ = [
    "GENERATOR_KINDS",
    "build_generator",
    "objective_target_scales",
    "rebuild_generator",
    "generator_loss",
    "make_sampler",
    "with_new_objective_options",
]

GENERATOR_KINDS = ("resgen", "token", "ar")
"""The generator kinds, in the order results tables list them."""

# Which keys of a recipe's ``network`` dict each kind takes (the rest are ignored for it).
_NETWORK_KEYS = {
    "resgen": {"width", "layers", "heads", "components", "head_rank", "class_dropout"},
    "token": {"width", "layers", "heads", "head_rank", "class_dropout"},
    "ar": {"width", "layers", "heads", "depth_layers", "class_dropout"},
}


def _check_kind(kind: str) -> None:
    if kind not in GENERATOR_KINDS:
        raise ValueError(f"unknown generator {kind!r}; choose one of {', '.join(GENERATOR_KINDS)}")


def build_generator(
    kind: str,
    quantizer: ResidualVQ,
    length: int,
    num_classes: int,
    network: dict[str, Any],
    objective: ResGenObjective | None = None,
    target_scales: Sequence[float] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A fresh generator of ``kind`` for tokens of ``quantizer``; returns it and its config dict.

    Args:
        kind: one of :data:`GENERATOR_KINDS`.
        quantizer: the codec's quantizer (depth, codebook size and code dimension).
        length: token positions L.
        num_classes: class labels (a null label is added for guidance).
        network: width, layers, heads and kind-specific sizes (``components``, ``head_rank``,
            ``depth_layers``); keys another kind uses are ignored.
        objective: ResGen's training objective; its Jensen form fixes the mixture to one
            component per codeword (``components`` is then taken from the quantizer), its CLaM
            form the components' scale, and with ``normalize_targets`` the network needs
            ``target_scales``.
        target_scales: ResGen's ``depth + 1`` target scales by mask count
            (:func:`~resgen.diffusion.target_scale.count_target_rms` of training tokens); read
            only when ``objective.normalize_targets``.
    """
    _check_kind(kind)
    sizes = {k: v for k, v in network.items() if k in _NETWORK_KEYS[kind]}
    if kind == "resgen" and objective is not None:
        configured = sizes.get("components", fields(MaskedTransformerConfig).components.default)
        sizes["components"] = objective.head_components(configured, quantizer.codes)
        sizes["fixed_scale"] = objective.head_fixed_scale()
        if objective.normalize_targets:
            if target_scales is None:
                raise ValueError("the objective normalises targets: give the target scales")
            sizes["target_scales"] = tuple(float(v) for v in target_scales)
    shape = {"length": length, "depth": quantizer.depth, "num_classes": num_classes}
    if kind == "resgen":
        config = MaskedTransformerConfig(dim=quantizer.dim, **shape, **sizes)
        model: nn.Module = MaskedRVQTransformer(config)
    elif kind == "token":
        config = MaskedTokenTransformerConfig(
            dim=quantizer.dim, codes=quantizer.codes, **shape, **sizes
        )
        model = MaskedTokenTransformer(config)
    else:
        config = RQTransformerConfig(codes=quantizer.codes, **shape, **sizes)
        model = RQTransformer(config)
    return model, {"kind": kind, **config.to_dict()}


def objective_target_scales(
    objective: ResGenObjective | None,
    quantizer: ResidualVQ,
    tokens: Tokens,
    *,
    max_examples: int = 4096,
) -> list[float] | None:
    """The per-count target scales a ResGen network trained with ``objective`` needs, measured
    on (the first ``max_examples`` of) its training tokens ``[n, length, depth]``; ``None``
    when the objective does not normalise its targets."""
    if objective is None or not objective.normalize_targets:
        return None
    with torch.no_grad():
        sample = tokens[:max_examples].to(quantizer.codebooks.device)
        return count_target_rms(quantizer.embed(sample)).tolist()


def rebuild_generator(saved: dict[str, Any]) -> nn.Module:
    """The generator a config dict from :func:`build_generator` describes (weights not loaded)."""
    fields = dict(saved)
    kind = fields.pop("kind", "resgen")
    _check_kind(kind)
    if kind == "resgen":
        return MaskedRVQTransformer(MaskedTransformerConfig(**fields))
    if kind == "token":
        return MaskedTokenTransformer(MaskedTokenTransformerConfig(**fields))
    return RQTransformer(RQTransformerConfig(**fields))


def generator_loss(
    kind: str,
    model: nn.Module,
    quantizer: ResidualVQ,
    tokens: Tokens,
    labels: Labels,
    schedule: MaskSchedule,
    generator: torch.Generator | None = None,
    objective: ResGenObjective | None = None,
) -> torch.Tensor:
    """One training loss of ``kind`` on tokens ``[batch, length, depth]`` (a scalar tensor).

    ResGen's is in nats per code dimension (in the form ``objective`` names); the baselines' are
    cross-entropies in nats per token.
    """
    _check_kind(kind)
    if kind == "resgen":
        return resgen_loss(
            model, quantizer, tokens, labels, schedule, generator=generator, objective=objective
        ).loss
    if kind == "token":
        return token_loss(model, quantizer, tokens, labels, schedule, generator=generator).loss
    return ar_loss(model, tokens, labels).loss


def make_sampler(
    kind: str, options: SamplerConfig, guidance_scale: float
) -> ResGenSampler | TokenSampler | ARSampler:
    """The sampler of ``kind``, sharing ``options`` where the kinds have the same knob.

    Every sampler has ``sample(model, quantizer, labels, length, *, generator=...)``. The masked
    samplers take ``steps``, ``schedule``, ``top_p`` and ``gumbel_temperature`` from ``options``;
    the token distributions of the baselines are sampled at temperature 1 (``options.temperature``
    is ResGen's Gaussian temperature, which has no token-level counterpart).
    """
    _check_kind(kind)
    guider = ClassifierFreeGuidance(guidance_scale) if guidance_scale != 1 else None
    if kind == "resgen":
        return ResGenSampler(options, guider=guider)
    if kind == "token":
        token_options = TokenSamplerConfig(
            steps=options.steps,
            schedule=options.schedule,
            top_p=options.top_p,
            gumbel_temperature=options.gumbel_temperature,
        )
        return TokenSampler(token_options, guider=guider)
    return ARSampler(ARSamplerConfig(top_p=options.top_p), guider=guider)


def with_new_objective_options(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved recipe configuration (``recipe.json``) with the options its ``objective`` gained
    since it was written, at their defaults: every new option's default is the behaviour runs
    had before it existed, so an old run compares equal to the same settings today.

    Args:
        saved: the configuration as read from the run folder.

    Returns:
        ``saved`` with a complete ``objective`` (unchanged when it has none, or when its options
        are unknown or invalid: the comparison that follows then names it).
    """
    objective = saved.get("objective")
    if isinstance(objective, dict):
        try:
            saved = {**saved, "objective": asdict(ResGenObjective(**objective))}
        except (TypeError, ValueError):
            pass
    return saved

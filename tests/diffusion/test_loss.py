"""ResGen's loss against a direct float64 computation, and the mixture sampler."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resgen.diffusion.loss import (
    ResGenObjective,
    assigned_mixture_nll,
    first_masked_tokens,
    masked_mixture_nll,
    resgen_loss,
    responsibility_mixture_bound,
)
from resgen.diffusion.masking import depth_mask, split_embeddings
from resgen.diffusion.mixture import (
    AssignedComponent,
    MixtureParams,
    mixture_log_prob,
    mixture_mean,
    sample_mixture,
)
from resgen.diffusion.schedules import CosineSchedule
from resgen.networks import MaskedRVQTransformer, MaskedTransformerConfig
from resgen.networks.heads import MixtureOfGaussiansHead
from resgen.quantizers import ResidualVQ, ResidualVQConfig


def _direct_log_prob(params: MixtureParams, z: torch.Tensor) -> torch.Tensor:
    """log sum_c pi_c prod_d N(z_d; mu_cd, sigma_cd), written out term by term in float64."""
    logits, means, log_scales = (
        t.double() for t in (params.logits, params.means, params.log_scales)
    )
    weights = torch.softmax(logits, -1)
    sigma = log_scales.exp()
    z = z.double()[:, :, None, :]
    density = torch.exp(-0.5 * ((z - means) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return torch.log((weights * density.prod(-1)).sum(-1))


@settings(max_examples=25, deadline=None)
@given(
    comp=st.integers(1, 5),
    dim=st.integers(1, 6),
    scale=st.floats(0.2, 2.0),
    seed=st.integers(0, 10_000),
)
def test_mixture_log_prob_matches_float64(comp: int, dim: int, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    params = MixtureParams(
        logits=torch.randn(2, 3, comp, generator=g),
        means=torch.randn(2, 3, comp, dim, generator=g),
        log_scales=torch.randn(2, 3, comp, dim, generator=g) * 0.3 + math.log(scale),
    )
    z = torch.randn(2, 3, dim, generator=g)
    expected = _direct_log_prob(params, z)
    assert torch.allclose(mixture_log_prob(params, z).double(), expected, rtol=1e-4, atol=1e-4)


def test_masked_nll_averages_only_masked_positions_per_dimension() -> None:
    params = MixtureParams(
        logits=torch.zeros(1, 3, 1),
        means=torch.zeros(1, 3, 1, 2),
        log_scales=torch.zeros(1, 3, 1, 2),
    )
    z = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]]])
    weight = torch.tensor([[True, True, False]])
    # Standard normal: -log N(0) = 0.5 log(2 pi) per dim; -log N(1) adds 0.5 per dim.
    expected = 0.5 * math.log(2 * math.pi) + 0.25
    assert masked_mixture_nll(params, z, weight).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="no masked position"):
        masked_mixture_nll(params, z, torch.zeros(1, 3, dtype=torch.bool))


def test_resgen_loss_targets_the_cumulative_masked_embedding() -> None:
    depth, dim, length = 3, 4, 5
    quantizer = ResidualVQ(ResidualVQConfig(dim=dim, codes=8, depth=depth)).train()
    quantizer(torch.randn(4, length, dim))
    quantizer.eval()
    tokens = torch.randint(0, 8, (2, length, depth))
    seen = {}

    class Recorder(torch.nn.Module):
        mixture_components = 1

        def hidden(self, visible, counts, labels, padding):  # noqa: ANN001, ANN201
            seen["visible"], seen["counts"] = visible, counts
            return visible

        def assigned_component(self, hidden, component):  # noqa: ANN001, ANN201
            raise AssertionError("the exact objective scores the whole mixture")

        def target_scale(self, counts):  # noqa: ANN001, ANN201
            return torch.ones(counts.shape)

        def mixture(self, hidden):  # noqa: ANN001, ANN201
            batch = hidden.shape[0]
            return MixtureParams(
                logits=torch.zeros(batch, length, 1),
                means=torch.zeros(batch, length, 1, dim),
                log_scales=torch.zeros(batch, length, 1, dim),
            )

    out = resgen_loss(Recorder(), quantizer, tokens, torch.tensor([0, 1]), CosineSchedule())
    emb = quantizer.embed(tokens).double()
    masked = depth_mask(seen["counts"], depth)[..., None]
    target = (emb * masked).sum(2)
    visible = (emb * ~masked).sum(2)
    assert torch.allclose(seen["visible"].double(), visible, atol=1e-5)
    weight = seen["counts"] > 0
    nll = 0.5 * (target**2 + math.log(2 * math.pi)).sum(-1) / dim
    expected = (nll * weight).sum() / weight.sum()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.masked_positions == int(weight.sum())


def test_sample_mixture_top_p_and_temperature() -> None:
    params = MixtureParams(
        logits=torch.log(torch.tensor([0.7, 0.2, 0.1]))[None, None].expand(1, 500, 3),
        means=torch.tensor([0.0, 10.0, 20.0])[None, None, :, None].expand(1, 500, 3, 1),
        log_scales=torch.zeros(1, 500, 3, 1),
    )
    g = torch.Generator().manual_seed(0)
    z = sample_mixture(params, top_p=0.5, temperature=0.0, generator=g)
    assert torch.all(z == 0.0)  # only the 0.7 component survives top-p 0.5; tau 0 gives its mean
    z = sample_mixture(params, top_p=0.85, temperature=0.0, generator=g)
    assert set(z.unique().tolist()) == {0.0, 10.0}
    with pytest.raises(ValueError, match="top_p"):
        sample_mixture(params, top_p=0.0)


def test_mixture_mean_is_the_weighted_mean_of_the_components_and_of_samples() -> None:
    params = MixtureParams(
        logits=torch.log(torch.tensor([0.7, 0.2, 0.1]))[None, None].expand(1, 4000, 3),
        means=torch.tensor([0.0, 10.0, 20.0])[None, None, :, None].expand(1, 4000, 3, 1),
        log_scales=torch.zeros(1, 4000, 3, 1),
    )
    assert torch.allclose(mixture_mean(params), torch.full((1, 4000, 1), 4.0))
    draws = sample_mixture(params, generator=torch.Generator().manual_seed(0))
    assert float(draws.mean()) == pytest.approx(4.0, abs=0.5)  # sd of the mean of the draws: 0.11


def test_network_rejects_depth_mismatch() -> None:
    model = MaskedRVQTransformer(
        MaskedTransformerConfig(
            length=4, depth=2, dim=3, num_classes=2, width=16, layers=1, heads=2
        )
    )
    with pytest.raises(ValueError, match="model's RVQ depth"):
        model(torch.zeros(1, 4, 3), torch.full((1, 4), 5), torch.tensor([0]))
    with pytest.raises(ValueError, match="visible embeddings"):
        model(torch.zeros(1, 5, 3), torch.zeros(1, 5, dtype=torch.long), torch.tensor([0]))
    with pytest.raises(ValueError, match="labels must lie"):
        model(torch.zeros(1, 4, 3), torch.zeros(1, 4, dtype=torch.long), torch.tensor([7]))


def test_training_reduces_the_loss_on_a_fixed_batch() -> None:
    depth, dim, length = 2, 4, 6
    quantizer = ResidualVQ(ResidualVQConfig(dim=dim, codes=8, depth=depth)).train()
    quantizer(torch.randn(16, length, dim))
    quantizer.eval()
    model = MaskedRVQTransformer(
        MaskedTransformerConfig(
            length=length,
            depth=depth,
            dim=dim,
            num_classes=2,
            width=32,
            layers=1,
            heads=2,
            components=4,
            head_rank=16,
        )
    )
    tokens = torch.randint(0, 8, (8, length, depth))
    labels = torch.randint(0, 2, (8,))
    opt = torch.optim.Adam(model.parameters(), 3e-3)

    def loss_at(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return resgen_loss(model, quantizer, tokens, labels, CosineSchedule(), generator=g).loss

    before = sum(loss_at(s).item() for s in range(5))
    for step in range(60):
        loss = loss_at(100 + step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = sum(loss_at(s).item() for s in range(5))
    assert after < before - 0.5


def test_beta_nll_weights_positions_by_predicted_variance() -> None:
    params = MixtureParams(
        logits=torch.zeros(1, 2, 1),
        means=torch.zeros(1, 2, 1, 2),
        log_scales=torch.log(torch.tensor([1.0, 0.1]))[None, :, None, None].expand(1, 2, 1, 2),
    )
    z = torch.zeros(1, 2, 2)
    weight = torch.ones(1, 2, dtype=torch.bool)
    plain = -mixture_log_prob(params, z)[0] / 2
    expected = (plain * torch.tensor([1.0, 0.1])).mean()  # variance^0.5 = sigma
    got = masked_mixture_nll(params, z, weight, beta=0.5)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert masked_mixture_nll(params, z, weight).item() == pytest.approx(plain.mean().item())
    with pytest.raises(ValueError, match="beta"):
        masked_mixture_nll(params, z, weight, beta=2.0)


def _random_params(g: torch.Generator, batch: int, length: int, comp: int, dim: int):
    return MixtureParams(
        logits=torch.randn(batch, length, comp, generator=g),
        means=torch.randn(batch, length, comp, dim, generator=g),
        log_scales=0.5 * torch.randn(batch, length, comp, dim, generator=g),
    )


@settings(max_examples=25, deadline=None)
@given(comp=st.integers(1, 5), dim=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_jensen_split_matches_float64_and_bounds_the_exact_nll(
    comp: int, dim: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    params = _random_params(g, 2, 3, comp, dim)
    z = torch.randn(2, 3, dim, generator=g)
    component = torch.randint(comp, (2, 3), generator=g)
    weight = torch.rand(2, 3, generator=g) < 0.7
    weight[0, 0] = True
    log_w = torch.log_softmax(params.logits, -1).gather(-1, component[..., None])[..., 0]
    pick_f = component[:, :, None, None].expand(-1, -1, 1, dim)
    assigned = AssignedComponent(
        log_weight=log_w,
        mean=params.means.gather(2, pick_f)[:, :, 0],
        log_scale=params.log_scales.gather(2, pick_f)[:, :, 0],
    )
    got = assigned_mixture_nll(assigned, z, weight)
    # Written out in float64: -log pi_c - sum_d log N(z_d; mu_cd, sigma_cd), per dim.
    log_pi = torch.log_softmax(params.logits.double(), -1).gather(-1, component[..., None])[..., 0]
    pick = component[:, :, None, None].expand(-1, -1, 1, dim)
    mu = params.means.double().gather(2, pick)[:, :, 0]
    sigma = params.log_scales.double().gather(2, pick)[:, :, 0].exp()
    log_n = torch.log(
        torch.exp(-0.5 * ((z.double() - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    ).sum(-1)
    expected = ((-(log_pi + log_n) / dim) * weight).sum() / weight.sum()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-5)
    exact = masked_mixture_nll(params, z, weight)
    assert got.item() >= exact.item() - 1e-5  # Jensen: the split never undercuts the exact NLL


def test_jensen_split_with_beta_one_gives_squared_error_gradients_to_the_means() -> None:
    mean = torch.zeros(1, 1, 3, requires_grad=True)
    assigned = AssignedComponent(
        log_weight=torch.zeros(1, 1), mean=mean, log_scale=torch.full((1, 1, 3), math.log(0.01))
    )
    z = torch.tensor([[[1.0, -2.0, 0.5]]])
    one = torch.ones(1, 1, dtype=torch.bool)
    assigned_mixture_nll(assigned, z, one, beta=1.0).backward()
    # d/dmu of sigma^2 * (z - mu)^2 / (2 sigma^2) / dim = -(z - mu) / dim.
    assert torch.allclose(mean.grad[0, 0], -z[0, 0] / 3, atol=1e-5)


def test_regression_weight_scales_only_the_regression_term() -> None:
    mean = torch.zeros(1, 1, 2, requires_grad=True)
    log_weight = torch.tensor([[-1.5]], requires_grad=True)
    assigned = AssignedComponent(
        log_weight=log_weight, mean=mean, log_scale=torch.full((1, 1, 2), math.log(0.5))
    )
    z = torch.tensor([[[1.0, -1.0]]])
    one = torch.ones(1, 1, dtype=torch.bool)
    full = assigned_mixture_nll(assigned, z, one, beta=1.0)
    full.backward()
    mean_grad, weight_grad = mean.grad.clone(), log_weight.grad.clone()
    mean.grad, log_weight.grad = None, None
    tenth = assigned_mixture_nll(assigned, z, one, beta=1.0, regression_weight=0.1)
    tenth.backward()
    classification = 1.5 / 2  # -log pi per dimension
    assert tenth.item() == pytest.approx(classification + 0.1 * (full.item() - classification))
    assert torch.allclose(mean.grad, 0.1 * mean_grad)
    assert torch.allclose(log_weight.grad, weight_grad)  # the classification term is untouched


def test_head_assigned_equals_picking_from_the_full_mixture() -> None:
    torch.manual_seed(0)
    head = MixtureOfGaussiansHead(width=8, dim=3, components=5, rank=4)
    hidden = torch.randn(2, 6, 8)
    component = torch.randint(5, (2, 6))
    full = head(hidden)
    got = head.assigned(hidden, component)
    pick = component[:, :, None, None].expand(-1, -1, 1, 3)
    log_w = torch.log_softmax(full.logits, -1).gather(-1, component[..., None])[..., 0]
    assert torch.allclose(got.log_weight, log_w, atol=1e-6)
    assert torch.allclose(got.mean, full.means.gather(2, pick)[:, :, 0])
    assert torch.allclose(got.log_scale, full.log_scales.gather(2, pick)[:, :, 0])


@pytest.mark.parametrize("fixed_scale", [None, 0.5])
def test_head_logits_alone_equal_the_full_mixtures_logits(fixed_scale: float | None) -> None:
    torch.manual_seed(0)
    head = MixtureOfGaussiansHead(width=8, dim=3, components=5, rank=4, fixed_scale=fixed_scale)
    hidden = torch.randn(2, 6, 8)
    logits = head.logits(hidden)
    assert logits.shape == (2, 6, 5)
    # same products, summed in another order by the smaller matmul
    assert torch.allclose(logits, head(hidden).logits, atol=1e-6)


def test_first_masked_tokens_picks_the_coarsest_masked_depth() -> None:
    tokens = torch.tensor([[[10, 11, 12], [20, 21, 22], [30, 31, 32]]])
    counts = torch.tensor([[3, 1, 0]])
    assert first_masked_tokens(tokens, counts).tolist() == [[10, 22, 32]]


def test_objective_validation_and_jensen_component_range() -> None:
    with pytest.raises(ValueError):
        ResGenObjective(kind="mse")
    with pytest.raises(ValueError):
        ResGenObjective(kind="jensen", beta=1.5)
    model = MaskedRVQTransformer(
        MaskedTransformerConfig(
            length=2, depth=2, dim=2, num_classes=2, width=8, layers=1, heads=2, components=4
        )
    )
    tokens = torch.tensor([[[0, 1], [7, 2]]])
    counts = torch.tensor([[2, 2]])
    hidden = torch.zeros(1, 2, 8)
    one = torch.ones(1, 2, dtype=torch.bool)
    jensen = ResGenObjective(kind="jensen")
    with pytest.raises(ValueError, match="one mixture component per codeword"):
        jensen(model, hidden, tokens, counts, torch.zeros(1, 2, 2), one)


def test_jensen_objective_trains_through_resgen_loss() -> None:
    torch.manual_seed(0)
    quantizer = ResidualVQ(ResidualVQConfig(dim=4, codes=8, depth=3))
    model = MaskedRVQTransformer(
        MaskedTransformerConfig(
            length=6, depth=3, dim=4, num_classes=2, width=16, layers=1, heads=2, components=8
        )
    )
    tokens = torch.randint(8, (4, 6, 3))
    labels = torch.tensor([0, 1, 0, 1])
    objective = ResGenObjective(kind="jensen", beta=1.0)
    out = resgen_loss(model, quantizer, tokens, labels, CosineSchedule(), objective=objective)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.head.up.weight.grad is not None


def test_jensen_objective_learns_to_read_the_context() -> None:
    """The failure the Jensen objective fixes: a fully masked position must use its neighbours.

    Every position's coarse token copies position 0's, so a fully masked position is predictable
    only from the context. After a short training run the cross-entropy of its first masked token
    must be far below chance with the true context and high with a wrong one.
    """
    torch.manual_seed(0)
    codes, length = 8, 4
    quantizer = ResidualVQ(ResidualVQConfig(dim=4, codes=codes, depth=2))
    quantizer(torch.randn(256, 1, 4))  # k-means initialisation of the codebooks
    quantizer.eval()
    model = MaskedRVQTransformer(
        MaskedTransformerConfig(
            length=length,
            depth=2,
            dim=4,
            num_classes=1,
            width=32,
            layers=2,
            heads=2,
            components=codes,
            class_dropout=0.0,
        )
    )

    def batch(n: int) -> torch.Tensor:
        tokens = torch.randint(codes, (n, length, 2))
        tokens[:, :, 0] = tokens[:, :1, 0]
        return tokens

    opt = torch.optim.Adam(model.parameters(), 3e-3)
    objective = ResGenObjective(kind="jensen", beta=1.0)
    for _ in range(150):
        tokens = batch(32)
        loss = resgen_loss(
            model,
            quantizer,
            tokens,
            torch.zeros(32, dtype=torch.long),
            CosineSchedule(),
            objective=objective,
        ).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.eval()
    tokens = batch(64)
    counts = torch.tensor([0, 2, 2, 2]).expand(64, -1)  # position 0 known, the rest masked
    wrong = tokens.clone()
    wrong[:, 0, 0] = (tokens[:, 0, 0] + 1 + torch.randint(codes - 1, (64,))) % codes

    def first_token_ce(context: torch.Tensor) -> float:
        with torch.no_grad():
            visible, _ = split_embeddings(quantizer.embed(context), counts)
            hidden = model.hidden(visible, counts, torch.zeros(64, dtype=torch.long), None)
            log_w = torch.log_softmax(model.mixture(hidden).logits, -1)[:, 1:]
        return float(-log_w.gather(-1, tokens[:, 1:, :1]).mean())

    chance = math.log(codes)
    assert first_token_ce(tokens) < 0.5 * chance
    assert first_token_ce(wrong) > chance


@settings(max_examples=25, deadline=None)
@given(
    comp=st.integers(1, 5),
    dim=st.integers(1, 4),
    scale=st.floats(0.1, 2.0),
    seed=st.integers(0, 10_000),
)
def test_clam_bound_matches_float64_and_bounds_the_exact_nll(
    comp: int, dim: int, scale: float, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    params = _random_params(g, 2, 3, comp, dim)
    z = torch.randn(2, 3, dim, generator=g)
    weight = torch.ones(2, 3, dtype=torch.bool)
    got = responsibility_mixture_bound(params, z, weight, scale=scale)
    # float64: q ∝ exp(-||z - mu||^2 / 2 s^2); sum_k q_k (-log pi_k - log N(z; mu_k, s^2 I)).
    sq = ((z.double()[:, :, None] - params.means.double()) ** 2).sum(-1)
    q = torch.softmax(-sq / (2 * scale**2), -1)
    log_pi = torch.log_softmax(params.logits.double(), -1)
    log_n = -sq / (2 * scale**2) - dim * math.log(scale * math.sqrt(2 * math.pi))
    expected = (-(q * (log_pi + log_n)).sum(-1) / dim).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-5)
    fixed = MixtureParams(
        logits=params.logits,
        means=params.means,
        log_scales=torch.full_like(params.log_scales, math.log(scale)),
    )
    # The bound holds in exact arithmetic; compare in float64 so float32 rounding of two
    # equal values (one component: bound == NLL) cannot decide it.
    exact_nll = (-torch.logsumexp(log_pi + log_n, -1) / dim).mean()
    assert expected.item() >= exact_nll.item() - 1e-12
    assert masked_mixture_nll(fixed, z, weight).item() == pytest.approx(
        exact_nll.item(), rel=1e-5, abs=1e-5
    )


def test_clam_bound_teaches_every_nearby_component_not_only_the_written_token() -> None:
    means = torch.tensor([[[[0.0, 0.0], [0.2, 0.0], [5.0, 5.0]]]], requires_grad=True)
    params = MixtureParams(
        logits=torch.zeros(1, 1, 3), means=means, log_scales=torch.zeros(1, 1, 3, 2)
    )
    z = torch.tensor([[[0.1, 0.0]]])
    responsibility_mixture_bound(
        params, z, torch.ones(1, 1, dtype=torch.bool), scale=0.5
    ).backward()
    grads = means.grad[0, 0].norm(dim=-1)
    assert grads[0] > 0 and grads[1] > 0, "both near means move towards the target"
    assert grads[2] < 1e-6 * grads[0], "a far mean has no responsibility"
    with pytest.raises(ValueError):
        responsibility_mixture_bound(params, z, torch.ones(1, 1, dtype=torch.bool), scale=0.0)


def test_fixed_scale_head_predicts_only_logits_and_means() -> None:
    free = MixtureOfGaussiansHead(width=8, dim=3, components=5, rank=4)
    fixed = MixtureOfGaussiansHead(width=8, dim=3, components=5, rank=4, fixed_scale=0.3)
    assert fixed.up.out_features == 5 * (1 + 3) < free.up.out_features
    out = fixed(torch.randn(2, 4, 8))
    assert torch.allclose(out.log_scales, torch.full((2, 4, 5, 3), math.log(0.3)))
    assigned = fixed.assigned(torch.randn(2, 4, 8), torch.zeros(2, 4, dtype=torch.long))
    assert torch.allclose(assigned.log_scale, torch.full((2, 4, 3), math.log(0.3)))
    model = MaskedRVQTransformer(
        MaskedTransformerConfig(
            length=2, depth=2, dim=3, num_classes=2, width=8, layers=1, heads=2, fixed_scale=0.3
        )
    )
    assert model.head.fixed_scale == 0.3
    with pytest.raises(ValueError):
        MixtureOfGaussiansHead(width=8, dim=3, components=5, fixed_scale=-1.0)

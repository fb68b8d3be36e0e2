"""Per-count target scales: what they measure, and that loss and sampler use them consistently."""

from __future__ import annotations

import math

import pytest
import torch

from resgen.diffusion.loss import ResGenObjective
from resgen.diffusion.masking import split_embeddings
from resgen.diffusion.mixture import MixtureParams
from resgen.diffusion.sampler import ResGenSampler, SamplerConfig
from resgen.diffusion.target_scale import count_target_rms, scale_of_counts
from resgen.networks import MaskedRVQTransformer, MaskedTransformerConfig
from resgen.networks.heads import MixtureOfGaussiansHead
from resgen.quantizers import ResidualVQ, ResidualVQConfig


def test_count_target_rms_is_the_rms_of_the_top_depths_sum() -> None:
    g = torch.Generator().manual_seed(0)
    # Depth j has size 2^-j: the finer the depth, the smaller its codewords.
    embeddings = torch.randn(3, 5, 4, 2, generator=g) * (0.5 ** torch.arange(4.0))[:, None]
    scales = count_target_rms(embeddings)
    assert scales.shape == (5,) and scales[0] == 1.0
    for k in range(1, 5):
        top = embeddings[:, :, 4 - k :].sum(2)
        assert scales[k].item() == pytest.approx(top.pow(2).mean().sqrt().item(), rel=1e-5)
    assert bool((scales[1:-1] < scales[2:]).all()), "more masked depths, a larger target"
    padded = torch.zeros(3, 5, dtype=torch.bool)
    padded[:, 0] = True
    assert not torch.allclose(count_target_rms(embeddings, padded), scales)
    counts = torch.tensor([[0, 4, 1]])
    assert scale_of_counts(scales, counts).tolist() == [[1.0, scales[4].item(), scales[1].item()]]
    with pytest.raises(ValueError, match="zero everywhere"):
        count_target_rms(torch.zeros(1, 2, 3, 2))


def _model(depth: int, scales: list[float] | None, components: int = 4) -> MaskedRVQTransformer:
    return MaskedRVQTransformer(
        MaskedTransformerConfig(
            length=3,
            depth=depth,
            dim=2,
            num_classes=2,
            width=8,
            layers=1,
            heads=2,
            components=components,
            target_scales=scales,
        )
    )


def test_scaled_objective_equals_the_plain_one_on_the_divided_target() -> None:
    """The defining property: training with scales s on z is training without them on z / s."""
    torch.manual_seed(0)
    scales = [1.0, 0.01, 0.1, 0.5]
    scaled, plain = _model(3, scales), _model(3, None)
    plain.load_state_dict(scaled.state_dict())  # the scales are configuration, not weights
    hidden = torch.randn(2, 3, 8)
    counts = torch.tensor([[1, 2, 3], [3, 0, 1]])
    target = torch.randn(2, 3, 2)
    weight = counts > 0
    divided = target / torch.tensor(scales)[counts][..., None]
    tokens = torch.randint(4, (2, 3, 3))
    for objective in (
        ResGenObjective(kind="nll"),
        ResGenObjective(kind="jensen", beta=1.0),
        ResGenObjective(kind="clam"),
    ):
        with_scales = objective(scaled, hidden, tokens, counts, target, weight)
        without = objective(plain, hidden, tokens, counts, divided, weight)
        assert with_scales.item() == pytest.approx(without.item(), rel=1e-6)


def test_config_checks_and_round_trips_the_scales() -> None:
    with pytest.raises(ValueError, match="depth \\+ 1"):
        MaskedTransformerConfig(length=3, depth=3, dim=2, num_classes=2, target_scales=[1.0, 2.0])
    config = _model(2, [1, 0.5, 0.25]).config
    assert config.target_scales == (1.0, 0.5, 0.25)
    assert MaskedTransformerConfig(**config.to_dict()) == config
    # The scales are not part of the weights: old checkpoints load into a scaled network.
    assert "head.target_scales" not in _model(2, [1, 0.5, 0.25]).state_dict()


class _ConstantMixture(torch.nn.Module):
    """A network whose mixture has one component: mean ``means[k]`` at every position with
    ``k`` masked depths (in scaled units), scale tiny."""

    null_label = 1

    def __init__(self, depth: int, scales: torch.Tensor, means: torch.Tensor) -> None:
        super().__init__()
        self.head = MixtureOfGaussiansHead(4, 2, 1, target_scales=scales.tolist())
        self.depth, self.means = depth, means
        self.counts: torch.Tensor | None = None

    def hidden(self, visible, counts, labels, padding):  # noqa: ANN001, ANN201
        self.counts = counts
        return torch.zeros(*counts.shape, 4)

    def mixture(self, hidden):  # noqa: ANN001, ANN201
        counts = self.counts
        return MixtureParams(
            logits=torch.zeros(*counts.shape, 1),
            means=self.means[counts][:, :, None, :],
            log_scales=torch.full((*counts.shape, 1, 2), math.log(1e-4)),
        )

    def mixture_logits(self, hidden):  # noqa: ANN001, ANN201
        return self.mixture(hidden).logits

    def target_scale(self, counts):  # noqa: ANN001, ANN201
        return self.head.target_scale(counts)


def test_sampler_multiplies_the_scaled_draw_back_before_quantizing() -> None:
    """A network predicting z / s exactly yields the data's tokens only if the sampler
    multiplies by s: with the division left out it would write other codewords."""
    torch.manual_seed(0)
    depth = 3
    quantizer = ResidualVQ(ResidualVQConfig(dim=2, codes=8, depth=depth)).train()
    quantizer(torch.randn(16, 3, 2) * torch.tensor([1.0, 1.0]))
    quantizer.eval()
    data = torch.randint(8, (1, 1, depth))
    embeddings = quantizer.embed(data)[0, 0]  # [depth, dim]
    scales = torch.tensor([1.0, 0.05, 0.2, 0.7])
    # Mean for count k: the true cumulative embedding of the top k depths, divided by s_k.
    means = torch.stack(
        [torch.zeros(2)] + [embeddings[depth - k :].sum(0) / scales[k] for k in range(1, 4)]
    )
    model = _ConstantMixture(depth, scales, means)
    sampler = ResGenSampler(SamplerConfig(steps=3, temperature=0.0, gumbel_temperature=0.0))
    tokens = sampler.sample(model, quantizer, torch.tensor([0]), 1)
    visible, target = split_embeddings(quantizer.embed(tokens), torch.full((1, 1), depth))
    assert torch.allclose(target, embeddings.sum(0)[None, None], atol=1e-4)
    assert torch.equal(tokens, data)

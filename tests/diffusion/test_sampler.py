"""Sampler invariants (DESIGN.md section 6, bullet 4) on a small random network."""

from __future__ import annotations

import pytest
import torch

from resgen.diffusion.confidence import (
    CoarseFirstConfidence,
    CombinedConfidence,
    MixtureConfidence,
    Proposal,
    QuantizationConfidence,
)
from resgen.diffusion.guidance import ClassifierFreeGuidance, GuidedPasses
from resgen.diffusion.masking import depth_mask
from resgen.diffusion.sampler import ResGenSampler, SamplerConfig, guided_mixture
from resgen.diffusion.schedules import CosineSchedule
from resgen.diffusion.unmasking import masked_targets, reveal_most_confident
from resgen.networks import MaskedRVQTransformer, MaskedTransformerConfig
from resgen.quantizers import ResidualVQ, ResidualVQConfig

LENGTH, DIM = 12, 4


def _parts(depth: int) -> tuple[MaskedRVQTransformer, ResidualVQ]:
    quantizer = ResidualVQ(ResidualVQConfig(dim=DIM, codes=16, depth=depth))
    quantizer.train()
    quantizer(torch.randn(8, LENGTH, DIM))
    quantizer.eval()
    model = MaskedRVQTransformer(
        MaskedTransformerConfig(
            length=LENGTH,
            depth=depth,
            dim=DIM,
            num_classes=3,
            width=32,
            layers=1,
            heads=2,
            components=3,
            head_rank=8,
        )
    ).eval()
    return model, quantizer


class _CountingModel:
    """Wraps a model and records the batch size of every network call."""

    def __init__(self, model: MaskedRVQTransformer) -> None:
        self.model = model
        self.rows: list[int] = []

    @property
    def null_label(self) -> int:
        return self.model.null_label

    def hidden(self, visible, counts, labels, padding):  # noqa: ANN001, ANN201
        self.rows.append(visible.shape[0])
        return self.model.hidden(visible, counts, labels, padding)

    def mixture(self, hidden):  # noqa: ANN001, ANN201
        return self.model.head(hidden)

    def mixture_logits(self, hidden):  # noqa: ANN001, ANN201
        return self.model.head.logits(hidden)

    def target_scale(self, counts):  # noqa: ANN001, ANN201
        return self.model.target_scale(counts)


@pytest.mark.parametrize("depth", [1, 3, 8])
@pytest.mark.parametrize("guided", [False, True])
def test_calls_schedule_and_completion(depth: int, guided: bool) -> None:
    model, quantizer = _parts(depth)
    steps = 5
    sampler = ResGenSampler(
        SamplerConfig(steps=steps), guider=ClassifierFreeGuidance(2.0) if guided else None
    )
    counting = _CountingModel(model)
    masked_after: list[int] = []
    previous = [torch.full((4, LENGTH), depth)]

    def callback(step: int, tokens: torch.Tensor, counts: torch.Tensor) -> None:
        masked_after.append(int(counts.sum()))
        assert bool((counts <= previous[-1]).all()), "a mask count increased"
        previous.append(counts)

    tokens = sampler.sample(
        counting, quantizer, torch.tensor([0, 1, 2, 0]), LENGTH, callback=callback
    )
    assert tokens.shape == (4, LENGTH, depth)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 16
    # T network calls whatever the depth; 2B rows under guidance (one doubled batch).
    assert counting.rows == [8 if guided else 4] * steps
    # The masked count follows the schedule exactly, and nothing is masked at the end.
    expected = masked_targets(CosineSchedule(), torch.full((4,), LENGTH * depth), steps).sum(-1)
    assert masked_after == expected.tolist()
    assert masked_after[-1] == 0


def test_same_seed_same_output_and_prompt_kept() -> None:
    depth = 4
    model, quantizer = _parts(depth)
    sampler = ResGenSampler(SamplerConfig(steps=4), guider=ClassifierFreeGuidance(1.5))
    labels = torch.tensor([0, 2])
    prompt = torch.randint(0, 16, (2, LENGTH, depth))
    given = torch.randint(0, depth + 1, (2, LENGTH))
    runs = [
        sampler.sample(
            model,
            quantizer,
            labels,
            LENGTH,
            prompt_tokens=prompt,
            prompt_depths=given,
            generator=torch.Generator().manual_seed(7),
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0], runs[1])
    known = ~depth_mask(depth - given, depth)
    assert torch.equal(runs[0][known], prompt[known])
    other = sampler.sample(
        model,
        quantizer,
        labels,
        LENGTH,
        prompt_tokens=prompt,
        prompt_depths=given,
        generator=torch.Generator().manual_seed(8),
    )
    assert not torch.equal(other, runs[0])


@pytest.mark.parametrize(
    "confidence",
    [
        MixtureConfidence(),
        QuantizationConfidence(),
        CombinedConfidence(0.5),
        CoarseFirstConfidence(),
    ],
)
def test_confidence_rules_complete(confidence: object) -> None:
    model, quantizer = _parts(3)
    sampler = ResGenSampler(
        SamplerConfig(steps=3, top_p=0.8, temperature=0.7), confidence=confidence
    )
    tokens = sampler.sample(model, quantizer, torch.tensor([1]), LENGTH)
    assert tokens.shape == (1, LENGTH, 3)


def test_padding_positions_are_untouched() -> None:
    model, quantizer = _parts(2)
    padding = torch.zeros(2, LENGTH, dtype=torch.bool)
    padding[0, -3:] = True
    seen: list[torch.Tensor] = []
    ResGenSampler(SamplerConfig(steps=3)).sample(
        model,
        quantizer,
        torch.tensor([0, 1]),
        LENGTH,
        padding=padding,
        callback=lambda s, t, c: seen.append(c),
    )
    assert all(int(c[0, -3:].sum()) == 0 for c in seen)
    assert int(seen[-1].sum()) == 0


def test_keep_rule_is_coarse_to_fine_with_ties() -> None:
    # Equal scores everywhere: ties must go to the coarser depth, keeping masks top-contiguous.
    counts = torch.tensor([[3, 3, 2, 0]])
    scores = torch.zeros(1, 4, 3)
    new = reveal_most_confident(scores, counts, torch.tensor([4]))
    assert int(new.sum()) == 4
    assert bool((new <= counts).all())
    # A fine token can never be revealed before a coarser one of its position.
    scores = torch.tensor([[[0.0, 9.0, 9.0], [5.0, 5.0, 5.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])
    new = reveal_most_confident(scores, torch.tensor([[3, 3, 3, 3]]), torch.tensor([9]))
    assert new.tolist() == [[3, 0, 3, 3]]


def test_coarse_first_reveals_a_depth_everywhere_before_the_next() -> None:
    # position 1 is far surer at every depth, yet its depth 1 waits for depth 0 everywhere
    log_probs = torch.tensor([[[-9.0, -9.0], [0.0, 0.0], [-5.0, -5.0]]])

    def proposal(scores: torch.Tensor) -> Proposal:
        return Proposal(
            tokens=torch.zeros(1, 3, 2, dtype=torch.long),
            masked=torch.ones(1, 3, 2, dtype=torch.bool),
            mixture_log_density=torch.zeros(1, 3),
            quantization_log_probs=scores,
        )

    counts, keep = torch.tensor([[2, 2, 2]]), torch.tensor([3])
    scores = CoarseFirstConfidence()(proposal(log_probs))
    assert reveal_most_confident(scores, counts, keep, gumbel_scale=1.0).tolist() == [[1, 1, 1]]
    assert reveal_most_confident(log_probs, counts, keep).tolist() == [[2, 0, 1]]
    # an infinite score does not spoil the others
    log_probs[0, 0, 0] = -float("inf")
    assert torch.isfinite(CoarseFirstConfidence()(proposal(log_probs))[0, 1:]).all()


def test_keep_rule_rejects_growing_mask() -> None:
    with pytest.raises(ValueError, match="n_masked_next"):
        reveal_most_confident(torch.zeros(1, 2, 2), torch.tensor([[1, 0]]), torch.tensor([2]))


def test_guidance_weight_schedule() -> None:
    cfg = ClassifierFreeGuidance(scale=3.0, ramp=True, start=0.25, stop=0.75)
    assert cfg.weight(0.1) == 1.0 and cfg.weight(0.9) == 1.0
    assert cfg.weight(0.5) == pytest.approx(2.0)
    cond, uncond = torch.ones(2), torch.zeros(2)
    assert torch.allclose(ClassifierFreeGuidance(4.0).combine(cond, uncond, 0.5), 4 * cond)


def test_bad_prompt_shape_is_refused() -> None:
    model, quantizer = _parts(2)
    with pytest.raises(ValueError, match="prompt_tokens must have shape"):
        ResGenSampler().sample(
            model,
            quantizer,
            torch.tensor([0]),
            LENGTH,
            prompt_tokens=torch.zeros(1, LENGTH, 3, dtype=torch.long),
            prompt_depths=torch.zeros(1, LENGTH, dtype=torch.long),
        )


def test_guided_passes_combine_what_is_read_and_need_a_guider() -> None:
    cond, uncond = torch.ones(1, 2, 3), torch.zeros(1, 2, 3)
    passes = GuidedPasses(cond, uncond, ClassifierFreeGuidance(3.0), 0.5)
    assert torch.allclose(passes.guide(lambda h: 2 * h), torch.full((1, 2, 3), 6.0))
    assert torch.allclose(passes.guided_hidden(), torch.full((1, 2, 3), 3.0))
    assert torch.equal(GuidedPasses(cond).guide(lambda h: h + 1), cond + 1)
    with pytest.raises(ValueError, match="together"):
        GuidedPasses(cond, uncond)


def test_logit_guidance_guides_the_choice_and_keeps_the_conditional_gaussians() -> None:
    """The defining property of ``guidance="logits"``: the means and scales are the conditional
    pass's, whatever the scale; only the logits move, by ``w (cond - uncond)``."""
    model, _ = _parts(3)
    g = torch.Generator().manual_seed(1)
    cond, uncond = torch.randn(2, LENGTH, 32, generator=g), torch.randn(2, LENGTH, 32, generator=g)
    plain = model.mixture(cond)
    for scale in (1.0, 3.0, 7.0):
        passes = GuidedPasses(cond, uncond, ClassifierFreeGuidance(scale), 0.5)
        guided = guided_mixture(model, passes, "logits")
        assert torch.equal(guided.means, plain.means)
        assert torch.equal(guided.log_scales, plain.log_scales)
        off = model.mixture(uncond).logits
        assert torch.allclose(guided.logits, off + scale * (plain.logits - off), atol=1e-5)
        on_hidden = guided_mixture(model, passes, "hidden")
        if scale != 1.0:  # the old rule moves the means too
            assert not torch.allclose(on_hidden.means, plain.means, atol=1e-3)
    assert guided_mixture(model, GuidedPasses(cond), "logits").means.equal(plain.means)
    with pytest.raises(ValueError, match="guidance must be one of"):
        guided_mixture(model, GuidedPasses(cond), "means")
    with pytest.raises(ValueError):
        SamplerConfig(guidance="means")


@pytest.mark.parametrize("guidance", ["logits", "hidden"])
def test_both_guidance_targets_sample_completely(guidance: str) -> None:
    model, quantizer = _parts(3)
    sampler = ResGenSampler(
        SamplerConfig(steps=4, guidance=guidance), guider=ClassifierFreeGuidance(3.0)
    )
    tokens = sampler.sample(
        model, quantizer, torch.tensor([0, 1]), LENGTH, generator=torch.Generator().manual_seed(0)
    )
    assert tokens.shape == (2, LENGTH, 3) and int(tokens.max()) < 16

"""The token-level masked baseline: head, loss and MaskGIT-style sampler (DESIGN.md §3, §6)."""

from __future__ import annotations

import pytest
import torch

from resgen.diffusion.guidance import ClassifierFreeGuidance
from resgen.diffusion.masking import depth_mask
from resgen.diffusion.schedules import CosineSchedule
from resgen.diffusion.token_loss import token_loss
from resgen.diffusion.token_sampler import TokenSampler, TokenSamplerConfig, sample_categorical
from resgen.diffusion.unmasking import masked_targets
from resgen.networks.token_head import (
    MaskedTokenTransformer,
    MaskedTokenTransformerConfig,
    TokenHead,
)
from resgen.quantizers import ResidualVQ, ResidualVQConfig

LENGTH, DIM, CODES = 6, 4, 8


def _quantizer(depth: int) -> ResidualVQ:
    quantizer = ResidualVQ(ResidualVQConfig(dim=DIM, codes=CODES, depth=depth))
    quantizer.train()
    quantizer(torch.randn(8, LENGTH, DIM))
    return quantizer.eval()


def _model(depth: int, **kwargs: object) -> MaskedTokenTransformer:
    config = dict(
        length=LENGTH,
        depth=depth,
        dim=DIM,
        codes=CODES,
        num_classes=3,
        width=32,
        layers=1,
        heads=2,
        head_rank=8,
    )
    config.update(kwargs)
    return MaskedTokenTransformer(MaskedTokenTransformerConfig(**config)).eval()


class _Counting:
    """Wraps a model and records the batch size of every backbone call."""

    def __init__(self, model: MaskedTokenTransformer) -> None:
        self.model = model
        self.rows: list[int] = []

    @property
    def null_label(self) -> int:
        return self.model.null_label

    def hidden(self, visible, counts, labels, padding):  # noqa: ANN001, ANN201
        self.rows.append(visible.shape[0])
        return self.model.hidden(visible, counts, labels, padding)

    def token_logits(self, hidden):  # noqa: ANN001, ANN201
        return self.model.head(hidden)


def test_head_shapes_and_low_rank() -> None:
    head = TokenHead(width=32, depth=5, codes=7, rank=4)
    assert head(torch.randn(2, 3, 32)).shape == (2, 3, 5, 7)
    params = sum(p.numel() for p in head.parameters())
    assert params == (32 * 4 + 4) + (4 * 5 * 7 + 5 * 7)
    with pytest.raises(ValueError, match="must be >= 1"):
        TokenHead(width=32, depth=0, codes=7)


def test_model_forward_shape_and_shares_resgen_input() -> None:
    model = _model(3)
    visible = torch.randn(2, LENGTH, DIM)
    counts = torch.randint(0, 4, (2, LENGTH))
    logits = model(visible, counts, torch.tensor([0, 3]))
    assert logits.shape == (2, LENGTH, 3, CODES)
    with pytest.raises(ValueError, match="mask counts must lie in 0..3"):
        model(visible, torch.full((2, LENGTH), 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="visible embeddings of shape"):
        model(
            torch.randn(2, LENGTH + 1, DIM),
            torch.zeros(2, LENGTH + 1, dtype=torch.long),
            torch.tensor([0, 1]),
        )


def test_loss_is_finite_and_decreases_when_overfitting() -> None:
    depth = 3
    quantizer = _quantizer(depth)
    model = _model(depth, class_dropout=0.0).train()
    tokens = torch.randint(0, CODES, (4, LENGTH, depth))
    labels = torch.tensor([0, 1, 2, 0])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(30):
        generator = torch.Generator().manual_seed(step % 4)
        out = token_loss(model, quantizer, tokens, labels, CosineSchedule(), generator=generator)
        assert torch.isfinite(out.loss) and out.masked_tokens > 0
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert first == pytest.approx(torch.log(torch.tensor(float(CODES))).item(), rel=0.3)
    assert last < 0.6 * first, (first, last)


def test_loss_ignores_padding_and_refuses_mismatch() -> None:
    quantizer = _quantizer(2)
    model = _model(2)
    tokens = torch.randint(0, CODES, (2, LENGTH, 2))
    padding = torch.zeros(2, LENGTH, dtype=torch.bool)
    padding[:, -2:] = True
    out = token_loss(
        model, quantizer, tokens, torch.tensor([0, 1]), CosineSchedule(), padding=padding
    )
    assert out.masked_tokens <= 2 * (LENGTH - 2) * 2
    with pytest.raises(ValueError, match="does not match the codec"):
        token_loss(_model(3), quantizer, tokens, torch.tensor([0, 1]), CosineSchedule())


@pytest.mark.parametrize("depth", [1, 4, 8])
@pytest.mark.parametrize("guided", [False, True])
def test_sampler_calls_schedule_and_completion(depth: int, guided: bool) -> None:
    steps = 4
    quantizer, counting = _quantizer(depth), _Counting(_model(depth))
    sampler = TokenSampler(
        TokenSamplerConfig(steps=steps, top_p=0.9),
        guider=ClassifierFreeGuidance(2.0) if guided else None,
    )
    masked_after: list[int] = []
    tokens = sampler.sample(
        counting,
        quantizer,
        torch.tensor([0, 1, 2]),
        LENGTH,
        callback=lambda s, t, c: masked_after.append(int(c.sum())),
    )
    assert tokens.shape == (3, LENGTH, depth)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < CODES
    # T network calls whatever the depth; 2B rows under guidance (one doubled batch).
    assert counting.rows == [6 if guided else 3] * steps
    expected = masked_targets(CosineSchedule(), torch.full((3,), LENGTH * depth), steps).sum(-1)
    assert masked_after == expected.tolist()
    assert masked_after[-1] == 0


def test_sampler_same_seed_same_output_and_prompt_kept() -> None:
    depth = 3
    quantizer, model = _quantizer(depth), _model(depth)
    sampler = TokenSampler(TokenSamplerConfig(steps=3), guider=ClassifierFreeGuidance(1.5))
    labels = torch.tensor([0, 2])
    prompt = torch.randint(0, CODES, (2, LENGTH, depth))
    given = torch.randint(0, depth + 1, (2, LENGTH))

    def run(seed: int) -> torch.Tensor:
        return sampler.sample(
            model,
            quantizer,
            labels,
            LENGTH,
            prompt_tokens=prompt,
            prompt_depths=given,
            generator=torch.Generator().manual_seed(seed),
        )

    first, second = run(7), run(7)
    assert torch.equal(first, second)
    known = ~depth_mask(depth - given, depth)
    assert torch.equal(first[known], prompt[known])
    assert not torch.equal(run(8), first)


def test_sampler_padding_untouched_and_errors() -> None:
    quantizer, model = _quantizer(2), _model(2)
    padding = torch.zeros(2, LENGTH, dtype=torch.bool)
    padding[0, -2:] = True
    seen: list[torch.Tensor] = []
    TokenSampler(TokenSamplerConfig(steps=2)).sample(
        model,
        quantizer,
        torch.tensor([0, 1]),
        LENGTH,
        padding=padding,
        callback=lambda s, t, c: seen.append(c),
    )
    assert all(int(c[0, -2:].sum()) == 0 for c in seen) and int(seen[-1].sum()) == 0
    with pytest.raises(ValueError, match="depth mismatch"):
        TokenSampler(TokenSamplerConfig(steps=2)).sample(
            _model(3), quantizer, torch.tensor([0]), LENGTH
        )
    with pytest.raises(ValueError, match="prompt_tokens and prompt_depths"):
        TokenSampler().sample(
            model,
            quantizer,
            torch.tensor([0]),
            LENGTH,
            prompt_tokens=torch.zeros(1, LENGTH, 2, dtype=torch.long),
        )


def test_sample_categorical_truncation_and_greedy() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(2000, -1)
    codes, log_probs = sample_categorical(
        logits, top_p=0.7, generator=torch.Generator().manual_seed(0)
    )
    assert set(codes.tolist()) == {0, 1}
    # Renormalised over the kept codes: P(0) = 0.5 / 0.8 (standard error about 0.011).
    assert abs(float((codes == 0).float().mean()) - 0.625) < 0.045
    assert torch.allclose(log_probs, logits.gather(-1, codes[:, None])[:, 0])
    greedy, _ = sample_categorical(torch.randn(3, 5, 7), temperature=0.0)
    assert greedy.shape == (3, 5)
    with pytest.raises(ValueError, match="top_p"):
        sample_categorical(logits, top_p=0.0)


def test_sampler_fully_given_prompt_is_returned_unchanged() -> None:
    depth = 2
    quantizer, model = _quantizer(depth), _model(depth)
    prompt = torch.randint(0, CODES, (1, LENGTH, depth))
    out = TokenSampler(TokenSamplerConfig(steps=2)).sample(
        model,
        quantizer,
        torch.tensor([1]),
        LENGTH,
        prompt_tokens=prompt,
        prompt_depths=torch.full((1, LENGTH), depth),
    )
    assert torch.equal(out, prompt)

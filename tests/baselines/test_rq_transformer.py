"""The autoregressive RQ-Transformer baseline: KV caches, loss and sampler (DESIGN.md §3, §6)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resgen.diffusion.ar_loss import ar_loss
from resgen.diffusion.ar_sampler import ARSampler, ARSamplerConfig
from resgen.diffusion.guidance import ClassifierFreeGuidance
from resgen.networks.rq_transformer import (
    KVCache,
    RQTransformer,
    RQTransformerConfig,
    causal_transformer,
)
from resgen.networks.transformer import Transformer

LENGTH, CODES = 5, 6


class _Depth:
    """A stand-in quantizer: the AR sampler only reads the depth."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


def _model(depth: int, **kwargs: object) -> RQTransformer:
    config = dict(
        length=LENGTH,
        depth=depth,
        codes=CODES,
        num_classes=3,
        width=32,
        layers=2,
        heads=2,
        depth_layers=2,
    )
    config.update(kwargs)
    model = RQTransformer(RQTransformerConfig(**config)).eval()
    # adaLN-Zero starts every block as the identity; randomise the gates so the test is not vacuous.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.weight.abs().sum() == 0:
                nn.init.normal_(module.weight, std=0.2)
                nn.init.normal_(module.bias, std=0.2)
    return model


class _Counting:
    """Wraps an RQTransformer and counts spatial and depth calls (and their rows)."""

    def __init__(self, model: RQTransformer) -> None:
        self.model, self.config = model, model.config
        self.spatial: list[int] = []
        self.depth: list[int] = []

    @property
    def null_label(self) -> int:
        return self.model.null_label

    def new_cache(self, labels):  # noqa: ANN001, ANN201
        return self.model.new_cache(labels)

    def spatial_step(self, previous, cache):  # noqa: ANN001, ANN201
        out = self.model.spatial_step(previous, cache)
        self.spatial.append(out.shape[0])
        return out

    def depth_step(self, previous, cache):  # noqa: ANN001, ANN201
        out = self.model.depth_step(previous, cache)
        self.depth.append(out.shape[0])
        return out


def test_causal_transformer_chunked_cache_matches_full_pass() -> None:
    torch.manual_seed(1)
    net = Transformer(16, 2, 2)
    for block in net.blocks:
        nn.init.normal_(block.modulation.weight, std=0.3)
    x, cond = torch.randn(3, 7, 16), torch.randn(3, 16)
    full = causal_transformer(net, x, cond)
    cache = KVCache(2, 3, 2, 7, 8)
    parts = [causal_transformer(net, x[:, a:b], cond, cache) for a, b in [(0, 3), (3, 4), (4, 7)]]
    assert cache.length == 7
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
    # The future never leaks into the past.
    changed = x.clone()
    changed[:, 5:] += 1.0
    assert torch.allclose(causal_transformer(net, changed, cond)[:, :5], full[:, :5], atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        causal_transformer(net, x[:, :1], cond, cache)


@pytest.mark.parametrize("depth", [1, 3])
def test_incremental_decoding_matches_teacher_forced_logits(depth: int) -> None:
    model = _model(depth)
    tokens = torch.randint(0, CODES, (2, LENGTH, depth))
    labels = torch.tensor([1, 3])
    with torch.no_grad():
        full = model(tokens, labels)
        cache = model.new_cache(labels)
        steps = torch.empty_like(full)
        for i in range(LENGTH):
            model.spatial_step(None if i == 0 else tokens[:, i - 1], cache)
            for d in range(depth):
                steps[:, i, d] = model.depth_step(None if d == 0 else tokens[:, i, d - 1], cache)
    assert full.shape == (2, LENGTH, depth, CODES)
    assert torch.allclose(steps, full, atol=1e-4), (steps - full).abs().max()


def test_logits_are_causal_over_positions_and_depths() -> None:
    model = _model(3)
    tokens = torch.randint(0, CODES, (1, LENGTH, 3))
    labels = torch.tensor([0])
    with torch.no_grad():
        base = model(tokens, labels)
        changed = tokens.clone()
        changed[0, 2, 1] = (changed[0, 2, 1] + 1) % CODES
        after = model(changed, labels)
    assert torch.allclose(after[0, :2], base[0, :2])  # earlier positions
    assert torch.allclose(after[0, 2, :2], base[0, 2, :2])  # earlier and same depth of position 2
    assert not torch.allclose(after[0, 2, 2], base[0, 2, 2])  # later depth sees it


def test_ar_loss_finite_decreases_and_ignores_padding() -> None:
    model = _model(2, class_dropout=0.0).train()
    tokens = torch.randint(0, CODES, (3, LENGTH, 2))
    labels = torch.tensor([0, 1, 2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        out = ar_loss(model, tokens, labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.6 * losses[0], losses
    padding = torch.zeros(3, LENGTH, dtype=torch.bool)
    padding[0, -2:] = True
    assert ar_loss(model, tokens, labels, padding=padding).tokens == (3 * LENGTH - 2) * 2


def test_padding_skips_positions_without_changing_the_loss_or_its_gradients() -> None:
    model = _model(3, class_dropout=0.0).eval()
    tokens = torch.randint(0, CODES, (3, LENGTH, 3))
    labels = torch.tensor([0, 1, 2])
    padding = torch.zeros(3, LENGTH, dtype=torch.bool)
    padding[0, -2:] = True
    padding[2, 1:] = True
    full, packed = model(tokens, labels), model(tokens, labels, padding)
    assert packed.shape == (int((~padding).sum()), 3, CODES)  # the padding is never computed
    torch.testing.assert_close(packed, full[~padding])

    def gradients(skip: bool) -> list[torch.Tensor]:
        model.zero_grad()

        def every_position(t: torch.Tensor, y: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
            return model(t, y)[~pad]  # every position computed, then the real ones packed

        loss = ar_loss(model if skip else every_position, tokens, labels, padding=padding)
        loss.loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    for with_skip, without in zip(gradients(True), gradients(False), strict=True):
        torch.testing.assert_close(with_skip, without)


@pytest.mark.parametrize("depth", [1, 4])
@pytest.mark.parametrize("guided", [False, True])
def test_sampler_makes_l_spatial_and_ld_depth_calls(depth: int, guided: bool) -> None:
    counting = _Counting(_model(depth))
    sampler = ARSampler(
        ARSamplerConfig(top_p=0.9), guider=ClassifierFreeGuidance(2.0) if guided else None
    )
    done: list[int] = []
    tokens = sampler.sample(
        counting,
        _Depth(depth),
        torch.tensor([0, 2]),
        LENGTH,
        callback=lambda s, t, c: done.append(int((c == 0).sum())),
    )
    assert tokens.shape == (2, LENGTH, depth)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < CODES
    rows = 4 if guided else 2
    assert counting.spatial == [rows] * LENGTH
    assert counting.depth == [rows] * (LENGTH * depth)
    assert done == [2 * (i + 1) for i in range(LENGTH)]


def test_sampler_same_seed_prompt_and_padding() -> None:
    depth = 3
    model = _model(depth)
    sampler = ARSampler(guider=ClassifierFreeGuidance(1.5))
    labels = torch.tensor([0, 2])
    prompt = torch.randint(0, CODES, (2, LENGTH, depth))
    given = torch.randint(0, depth + 1, (2, LENGTH))
    padding = torch.zeros(2, LENGTH, dtype=torch.bool)
    padding[1, -1] = True

    def run(seed: int) -> torch.Tensor:
        return sampler.sample(
            model,
            _Depth(depth),
            labels,
            LENGTH,
            prompt_tokens=prompt,
            prompt_depths=given,
            padding=padding,
            generator=torch.Generator().manual_seed(seed),
        )

    first = run(3)
    assert torch.equal(first, run(3))
    assert not torch.equal(first, run(4))
    known = (torch.arange(depth) < given[..., None]) & ~padding[..., None]
    assert torch.equal(first[known], prompt[known])
    assert int(first[1, -1].abs().sum()) == 0


def test_clear_errors() -> None:
    model = _model(2)
    with pytest.raises(ValueError, match="depth mismatch"):
        ARSampler().sample(model, _Depth(3), torch.tensor([0]), LENGTH)
    with pytest.raises(ValueError, match="length must lie in"):
        ARSampler().sample(model, _Depth(2), torch.tensor([0]), LENGTH + 1)
    with pytest.raises(ValueError, match="token out of range"):
        model(torch.full((1, LENGTH, 2), CODES), torch.tensor([0]))
    with pytest.raises(ValueError, match="expected tokens of shape"):
        model(torch.zeros(1, LENGTH, 3, dtype=torch.long), torch.tensor([0]))
    cache = model.new_cache(torch.tensor([0]))
    with pytest.raises(ValueError, match="spatial_step before depth_step"):
        model.depth_step(None, cache)
    with pytest.raises(ValueError, match="previous tokens are required"):
        model.spatial_step(torch.zeros(1, 2, dtype=torch.long), cache)
    model.spatial_step(None, cache)
    model.depth_step(None, cache)
    with pytest.raises(ValueError, match="token out of range"):
        model.depth_step(torch.tensor([CODES]), cache)

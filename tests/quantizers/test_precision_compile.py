"""Mixed precision (bf16/fp16 autocast, half inputs) and torch.compile of ``encode``."""

import jaxtyping
import pytest
import torch

from resgen.quantizers import ResidualVQ, ResidualVQConfig


def fitted(**kw):
    cfg = dict(dim=8, codes=32, depth=3)
    cfg.update(kw)
    q = ResidualVQ(ResidualVQConfig(**cfg))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 48, cfg.get("input_dim") or 8, generator=gen) * 3
    for _ in range(3):
        q(x)
    return q, x


def _autocast_ok(dtype) -> bool:
    try:
        with torch.autocast("cpu", dtype=dtype):
            torch.ones(2, 2) @ torch.ones(2, 2)
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_distances_in_float32(dtype):
    if not _autocast_ok(dtype):
        pytest.skip(f"CPU autocast does not support {dtype}")
    q, x = fitted()
    q.eval()
    want = q.encode(x)
    with torch.autocast("cpu", dtype=dtype):
        got = q.encode(x)
        out = q(x)
        res = q.quantize_from(q.embed(want).sum(2), 0)
    assert torch.equal(got, want)  # identical tokens: the search never ran in half precision
    assert torch.equal(out.tokens, want)
    assert out.quantized.dtype == torch.float32 and torch.isfinite(out.quantized).all()
    assert res.log_probs.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_training_under_autocast_with_projections(dtype):
    if not _autocast_ok(dtype):
        pytest.skip(f"CPU autocast does not support {dtype}")
    q, x = fitted(input_dim=16, codebook_update="gradient")
    x = x.requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        out = q(x)
        loss = out.quantized.float().pow(2).mean() + out.loss
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(q.codebooks.grad).all()
    assert out.quantized.dtype == torch.float32
    assert torch.isfinite(q.ema_sizes).all()


def test_half_precision_latents():
    q, x = fitted()
    out = q(x.bfloat16())
    assert out.quantized.dtype == torch.bfloat16
    q.eval()
    assert torch.equal(q.encode(x.bfloat16()), q.encode(x.bfloat16().float()))


@pytest.fixture
def no_runtime_typecheck():
    # The suite's jaxtyping/beartype hook wraps every function; Dynamo cannot trace those
    # wrappers, so they are switched off here (users' code has no such hook).
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", False)


def test_torch_compile_encode_fullgraph(no_runtime_typecheck):
    torch._dynamo.reset()
    q, x = fitted()
    q.eval()
    compiled = torch.compile(q.encode, fullgraph=True)
    assert torch.equal(compiled(x), q.encode(x))
    y = torch.randn_like(x)
    assert torch.equal(compiled(y), q.encode(y))

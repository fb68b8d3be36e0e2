"""Cases for the Triton kernel, run on the CPU by Triton's interpreter, against the blocked torch
reference: random inputs (hypothesis), exact ties, sizes that are not powers of two.

Not collected on its own (the name does not start with ``test_``): ``test_triton_interpret.py``
runs this file in a fresh process with ``TRITON_INTERPRET=1``, because Triton fixes interpreted
or compiled mode for its whole standard library when it is first imported.
"""

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resgen.quantizers import nearest_code, residual_quantize

pytest.importorskip("triton")

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip(
        "run through test_triton_interpret.py (needs TRITON_INTERPRET=1)", allow_module_level=True
    )


def reference(x, cb, temperature=None):
    return nearest_code(x, cb, temperature=temperature, backend="torch", block_codes=17)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 70),
    k=st.integers(1, 150),
    dim=st.integers(1, 37),
    temperature=st.sampled_from([None, 0.5, 2.0]),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_reference(n, k, dim, temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen)
    cb = torch.randn(k, dim, generator=gen)
    got = nearest_code(x, cb, temperature=temperature, backend="triton")
    want = reference(x, cb, temperature)
    # Dot products may round differently: indices agree unless two codes are within rounding.
    d = (x[:, None, :] - cb[None]).pow(2).sum(-1)
    chosen = d.gather(1, got.indices[:, None]).squeeze(1)
    best = d.min(-1).values
    assert torch.all(chosen <= best + 1e-4 * (1 + best))
    if k > 1:
        separated = (d.sort(-1).values[:, 1] - best) > 1e-4 * (1 + best)
        assert torch.equal(got.indices[separated], want.indices[separated])
    torch.testing.assert_close(got.distances, want.distances, atol=1e-3, rtol=1e-4)
    if temperature is not None:
        torch.testing.assert_close(got.log_probs, want.log_probs, atol=1e-3, rtol=1e-3)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 50),
    k=st.integers(2, 140),
    dim=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_kernel_ties_match_reference_exactly(n, k, dim, seed):
    # Small integers make every score exact, so duplicated codes tie exactly: lowest index wins,
    # also across the kernel's code blocks (64 codes per block under the interpreter).
    gen = torch.Generator().manual_seed(seed)
    cb = torch.randint(-2, 3, (k, dim), generator=gen).float()
    cb[-1] = cb[0]
    cb[k // 2] = cb[min(k - 1, 65) // 3]
    x = torch.randint(-2, 3, (n, dim), generator=gen).float()
    got = nearest_code(x, cb, backend="triton")
    want = reference(x, cb)
    assert torch.equal(got.indices, want.indices)
    assert torch.equal(got.distances, want.distances)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 60),
    depth=st.integers(1, 4),
    k=st.integers(1, 100),
    dim=st.integers(1, 24),
    seed=st.integers(0, 2**16),
)
def test_fused_residual_update_matches_reference(n, depth, k, dim, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-4, 5, (n, dim), generator=gen).float()
    scales = 2.0 ** -torch.arange(depth, dtype=torch.float32)  # exact in binary
    cbs = torch.randint(-4, 5, (depth, k, dim), generator=gen).float() * scales[:, None, None]
    start = torch.randint(0, depth + 1, (n,), generator=gen)
    got = residual_quantize(x, cbs, start=start, temperature=1.0, backend="triton")
    want = residual_quantize(x, cbs, start=start, temperature=1.0, backend="torch")
    assert torch.equal(got.tokens, want.tokens)
    assert torch.equal(got.residual, want.residual)
    torch.testing.assert_close(got.log_probs, want.log_probs, atol=1e-3, rtol=1e-3)


def test_quantizer_runs_on_the_triton_backend():
    from resgen.quantizers import ResidualVQ, ResidualVQConfig

    cfg = dict(dim=12, codes=40, depth=3)
    q = ResidualVQ(ResidualVQConfig(**cfg))
    x = torch.randn(2, 30, 12)
    q(x)
    q.eval()
    q_triton = ResidualVQ(ResidualVQConfig(**cfg, backend="triton")).eval()
    q_triton.load_state_dict(q.state_dict())
    tokens = q_triton.encode(x)
    agree = (tokens == q.encode(x)).float().mean()
    assert agree > 0.99
    z = q.embed(tokens).sum(2)
    start = torch.randint(0, 4, (2, 30))
    a = q_triton.quantize_from(z, start)
    b = q.quantize_from(z, start)
    assert (a.tokens == b.tokens).float().mean() > 0.99

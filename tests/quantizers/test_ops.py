"""The blocked torch nearest-code op against a brute-force reference."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resgen.quantizers import nearest_code, residual_quantize, resolve_backend


def brute_force(x: torch.Tensor, cb: torch.Tensor, temperature: float | None = None):
    d = (x.double()[:, None, :] - cb.double()[None, :, :]).pow(2).sum(-1)
    idx = d.argmin(-1)  # the first minimum on ties
    dist = d.gather(1, idx[:, None]).squeeze(1)
    logp = None
    if temperature is not None:
        logp = torch.log_softmax(-d / temperature, -1).gather(1, idx[:, None]).squeeze(1)
    return idx, dist, logp, d


def assert_matches(found, x, cb, temperature=None, atol=1e-4):
    idx, dist, logp, d = brute_force(x, cb, temperature)
    # Indices must agree except where two codes are within rounding of each other.
    chosen = d.gather(1, found.indices[:, None]).squeeze(1)
    assert torch.all(chosen <= dist + atol * (1 + dist)), "a farther code was chosen"
    separated = (d.sort(-1).values[:, 1] - dist) > atol * (1 + dist) if d.shape[1] > 1 else None
    if separated is not None:
        assert torch.equal(found.indices[separated], idx[separated])
    torch.testing.assert_close(found.distances.double(), dist, atol=atol * 10, rtol=1e-4)
    if temperature is not None:
        torch.testing.assert_close(found.log_probs.double(), logp, atol=1e-3, rtol=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 70),
    k=st.integers(1, 90),
    dim=st.integers(1, 19),
    block_rows=st.integers(1, 40),
    block_codes=st.integers(1, 40),
    temperature=st.sampled_from([None, 0.3, 1.0, 4.0]),
    seed=st.integers(0, 2**16),
)
def test_torch_matches_brute_force(n, k, dim, block_rows, block_codes, temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen)
    cb = torch.randn(k, dim, generator=gen)
    found = nearest_code(
        x,
        cb,
        temperature=temperature,
        block_rows=block_rows,
        block_codes=block_codes,
        backend="torch",
    )
    assert found.indices.dtype == torch.long and found.indices.shape == (n,)
    assert_matches(found, x, cb, temperature)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    k=st.integers(2, 50),
    dim=st.integers(1, 9),
    block_codes=st.integers(1, 17),
    seed=st.integers(0, 2**16),
)
def test_ties_go_to_the_lowest_index(n, k, dim, block_codes, seed):
    # Small integers: every distance is exact in float32, and duplicated codes tie exactly.
    gen = torch.Generator().manual_seed(seed)
    cb = torch.randint(-3, 4, (k, dim), generator=gen).float()
    cb[-1] = cb[0]  # a duplicate across blocks
    cb[k // 2] = cb[k // 3]
    x = torch.randint(-3, 4, (n, dim), generator=gen).float()
    found = nearest_code(x, cb, block_codes=block_codes, block_rows=7, backend="torch")
    idx, dist, _, _ = brute_force(x, cb)
    assert torch.equal(found.indices, idx)
    assert torch.equal(found.distances.double(), dist)


def test_residual_quantize_matches_a_naive_loop():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(50, 6, generator=gen)
    cbs = torch.randn(3, 20, 6, generator=gen) * torch.tensor([1.0, 0.5, 0.25])[:, None, None]
    start = torch.randint(0, 4, (50,), generator=gen)
    out = residual_quantize(x, cbs, start=start, temperature=0.5, block_codes=7, backend="torch")
    r = x.clone()
    for j in range(3):
        for i in range(50):
            if start[i] <= j:
                t = int((r[i] - cbs[j]).pow(2).sum(-1).argmin())
                assert out.tokens[i, j] == t
                r[i] -= cbs[j, t]
            else:
                assert out.tokens[i, j] == 0 and out.log_probs[i, j] == 0
    torch.testing.assert_close(out.residual, r)
    assert torch.equal(x, torch.randn(50, 6, generator=torch.Generator().manual_seed(1)))


def test_memory_stays_bounded_by_the_tile(monkeypatch):
    # Every matrix the op allocates is at most block_rows x block_codes, never n x codes.
    n, k, rows, cols = 300, 500, 32, 64
    seen = []
    real_empty = torch.empty

    def spy(*shape, **kw):
        t = real_empty(*shape, **kw)
        seen.append(t.numel())
        return t

    monkeypatch.setattr(torch, "empty", spy)
    nearest_code(
        torch.randn(n, 4), torch.randn(k, 4), block_rows=rows, block_codes=cols, backend="torch"
    )
    assert seen and max(seen) <= max(rows * cols, n)


def test_distances_are_float32_for_half_inputs():
    x, cb = torch.randn(10, 8), torch.randn(30, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        found = nearest_code(x.bfloat16(), cb.bfloat16(), temperature=1.0, backend="torch")
    assert found.distances.dtype == torch.float32 and found.log_probs.dtype == torch.float32
    assert torch.equal(
        found.indices, nearest_code(x.bfloat16().float(), cb.bfloat16().float()).indices
    )


def test_clear_errors():
    # Under the test suite's jaxtyping hook the annotation check may fire first (a TypeError).
    with pytest.raises((ValueError, TypeError), match="dim"):
        nearest_code(torch.randn(3, 4), torch.randn(5, 6))
    with pytest.raises(ValueError, match="block"):
        nearest_code(torch.randn(3, 4), torch.randn(5, 4), block_codes=0)
    with pytest.raises(ValueError, match="temperature"):
        nearest_code(torch.randn(3, 4), torch.randn(5, 4), temperature=0.0)
    with pytest.raises(ValueError, match="start"):
        residual_quantize(torch.randn(3, 4), torch.randn(2, 5, 4), start=3)
    with pytest.raises((ValueError, TypeError), match="backend"):
        resolve_backend("cuda", torch.device("cpu"))  # type: ignore[arg-type]


def test_auto_backend_is_torch_on_cpu_and_import_stays_light():
    import subprocess
    import sys

    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    code = (
        "import sys, torch, resgen, resgen.quantizers as q;"
        "q.ResidualVQ(q.ResidualVQConfig(dim=4, codes=8, depth=2)).encode(torch.randn(1, 3, 4));"
        "print('triton' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""Triton kernel: fused nearest-code search and residual update, one RVQ depth per launch.

This module imports Triton at the top, so it is itself imported lazily (by
:mod:`resgen.quantizers.ops`) only when the Triton backend runs: ``import resgen`` never loads
Triton.

Each program owns ``BLOCK_N`` rows of the residual. It loads them once, then walks the codebook in
blocks of ``BLOCK_K`` codes: ``s = ||e||^2 - 2 r.e`` by ``tl.dot`` (float32, IEEE precision, so the
argmin agrees with the torch reference), a running minimum and argmin (strictly-smaller updates, so
ties go to the lowest index), and optionally a running log-sum-exp of ``-s / temperature`` for the
per-token confidence. At the end it writes the token, the distance (and log-probability), and
subtracts the winning code from its residual rows in place. Rows whose start depth lies above the
current depth are left untouched. The ``N x K`` score matrix never leaves the registers.

The kernel bodies carry ``@no_type_check`` so that jaxtyping's import hook leaves them to Triton.
``triton.jit`` is applied when the kernels are first needed (and again if ``TRITON_INTERPRET``
changes), because Triton decides at decoration time whether a kernel is compiled or interpreted.
"""

from __future__ import annotations

import functools
import os
from typing import no_type_check

import torch
import triton
import triton.language as tl
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["triton_nearest_code", "triton_residual_quantize"]


@no_type_check
def _nearest_code_kernel(
    x_ptr,  # [N, C] float32 residual rows (updated in place when UPDATE_RESIDUAL)
    cb_ptr,  # [K, C] float32 codebook
    cb_sq_ptr,  # [K] float32 squared code norms
    start_ptr,  # [N] int64 start depth of each row (read when HAS_START)
    idx_ptr,  # [N] int64 out: token
    dist_ptr,  # [N] float32 out: squared distance
    logp_ptr,  # [N] float32 out: log-softmax of the chosen code (written when WITH_LOGP)
    n_rows,
    depth,
    neg_inv_temp,
    K: tl.constexpr,
    C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_C: tl.constexpr,
    HAS_START: tl.constexpr,
    WITH_LOGP: tl.constexpr,
    UPDATE_RESIDUAL: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_C)
    row_ok = rows < n_rows
    col_ok = cols < C
    if HAS_START:
        start = tl.load(start_ptr + rows, mask=row_ok, other=K)
        active = row_ok & (start <= depth)
    else:
        active = row_ok
    x_offsets = rows[:, None].to(tl.int64) * C + cols[None, :]
    x_mask = row_ok[:, None] & col_ok[None, :]
    x = tl.load(x_ptr + x_offsets, mask=x_mask, other=0.0)

    best = tl.full((BLOCK_N,), float("inf"), tl.float32)
    best_idx = tl.zeros((BLOCK_N,), tl.int64)
    run_max = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    run_sum = tl.zeros((BLOCK_N,), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        codes = k0 + tl.arange(0, BLOCK_K)
        code_ok = codes < K
        e = tl.load(
            cb_ptr + codes[:, None].to(tl.int64) * C + cols[None, :],
            mask=code_ok[:, None] & col_ok[None, :],
            other=0.0,
        )
        e_sq = tl.load(cb_sq_ptr + codes, mask=code_ok, other=0.0)
        dots = tl.dot(x, tl.trans(e), input_precision="ieee")
        scores = e_sq[None, :] - 2.0 * dots
        scores = tl.where(code_ok[None, :], scores, float("inf"))
        blk_best = tl.min(scores, axis=1)
        blk_idx = tl.argmin(scores, axis=1).to(tl.int64) + k0
        better = blk_best < best
        best = tl.where(better, blk_best, best)
        best_idx = tl.where(better, blk_idx, best_idx)
        if WITH_LOGP:
            logits = scores * neg_inv_temp
            logits = tl.where(code_ok[None, :], logits, float("-inf"))
            new_max = tl.maximum(run_max, tl.max(logits, axis=1))
            run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(
                tl.exp(logits - new_max[:, None]), axis=1
            )
            run_max = new_max

    x_sq = tl.sum(x * x, axis=1)
    dist = tl.maximum(best + x_sq, 0.0)
    tl.store(idx_ptr + rows, best_idx, mask=active)
    tl.store(dist_ptr + rows, dist, mask=active)
    if WITH_LOGP:
        logp = best * neg_inv_temp - (run_max + tl.log(run_sum))
        tl.store(logp_ptr + rows, logp, mask=active)
    if UPDATE_RESIDUAL:
        chosen = tl.load(
            cb_ptr + best_idx[:, None] * C + cols[None, :],
            mask=active[:, None] & col_ok[None, :],
            other=0.0,
        )
        tl.store(x_ptr + x_offsets, x - chosen, mask=active[:, None] & col_ok[None, :])


@functools.cache
def _jitted(interpret: bool):  # noqa: ARG001 - the cache key: Triton reads the env at jit time
    return triton.jit(_nearest_code_kernel)


def _kernel():
    return _jitted(os.environ.get("TRITON_INTERPRET", "0") == "1")


def _block_sizes(n: int, c: int, device: torch.device) -> tuple[int, int, int]:
    block_c = max(16, triton.next_power_of_2(c))
    if device.type != "cuda":  # the interpreter: fewer, larger numpy steps
        return 32, 64, block_c
    # Keep the row tile plus a code tile within registers for wide codes.
    block_n = 64 if block_c <= 128 else 32
    block_k = 64 if block_c <= 256 else 32
    return block_n, block_k, block_c


def _launch(
    residual: Tensor,
    codebook: Tensor,
    start: Tensor | None,
    depth: int,
    idx: Tensor,
    dist: Tensor,
    logp: Tensor | None,
    temperature: float | None,
    update_residual: bool,
) -> None:
    n, c = residual.shape
    k = codebook.shape[0]
    if n == 0:
        return
    block_n, block_k, block_c = _block_sizes(n, c, residual.device)
    cb_sq = codebook.pow(2).sum(-1).contiguous()
    grid = (triton.cdiv(n, block_n),)
    _kernel()[grid](
        residual,
        codebook,
        cb_sq,
        start if start is not None else idx,  # never read when HAS_START is False
        idx,
        dist,
        logp if logp is not None else dist,  # never written when WITH_LOGP is False
        n,
        depth,
        -1.0 / temperature if temperature is not None else -1.0,
        K=k,
        C=c,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        BLOCK_C=block_c,
        HAS_START=start is not None,
        WITH_LOGP=logp is not None,
        UPDATE_RESIDUAL=update_residual,
    )


def triton_nearest_code(
    vectors: Float[Tensor, "n dim"],
    codebook: Float[Tensor, "codes dim"],
    *,
    temperature: float | None = None,
) -> tuple[Int[Tensor, " n"], Float[Tensor, " n"], Float[Tensor, " n"] | None]:
    """Nearest code of each vector with the Triton kernel (no residual update).

    Args:
        vectors: ``[n, dim]`` contiguous float32 vectors.
        codebook: ``[codes, dim]`` contiguous float32 codewords.
        temperature: if given, also return the chosen code's log-softmax of ``-d^2/temperature``.

    Returns:
        ``(indices [n], distances [n], log_probs [n] or None)``.
    """
    n = vectors.shape[0]
    idx = torch.zeros(n, dtype=torch.long, device=vectors.device)
    dist = torch.zeros(n, device=vectors.device)
    logp = torch.zeros(n, device=vectors.device) if temperature is not None else None
    _launch(vectors, codebook, None, 0, idx, dist, logp, temperature, update_residual=False)
    return idx, dist, logp


def triton_residual_quantize(
    residual: Float[Tensor, "n dim"],
    codebooks: Float[Tensor, "depth codes dim"],
    start: Int[Tensor, " n"],
    tokens: Int[Tensor, "n depth"],
    log_probs: Float[Tensor, "n depth"] | None,
    temperature: float | None,
) -> None:
    """Residual quantization through every depth with the Triton kernel, in place.

    Args:
        residual: ``[n, dim]`` contiguous float32; on return, what is left after the last depth.
        codebooks: ``[depth, codes, dim]`` float32.
        start: ``[n]`` int64 first depth of each row.
        tokens: ``[n, depth]`` int64 output, zero-initialised (rows below their start keep 0).
        log_probs: ``[n, depth]`` float32 output (zero-initialised) or ``None``.
        temperature: temperature of ``log_probs``.
    """
    n = residual.shape[0]
    depth = codebooks.shape[0]
    idx = torch.zeros(n, dtype=torch.long, device=residual.device)
    dist = torch.zeros(n, device=residual.device)
    logp = torch.zeros(n, device=residual.device) if log_probs is not None else None
    for j in range(depth):
        idx.zero_()
        if logp is not None:
            logp.zero_()
        codebook = codebooks[j].contiguous()
        _launch(residual, codebook, start, j, idx, dist, logp, temperature, update_residual=True)
        tokens[:, j] = idx
        if log_probs is not None:
            log_probs[:, j] = logp

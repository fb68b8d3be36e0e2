"""Nearest-codeword search fused with the residual update, without the full ``N x K`` matrix.

Two implementations share one contract:

* **torch** (any device): the ``N x K`` score matrix is walked in tiles of ``block_rows x
  block_codes``. Each tile is one ``addmm`` (``||e||^2 - 2 x.e``; the ``||x||^2`` term is
  constant per row and added only to the winner) followed by a row minimum, with a running
  minimum (and, when asked, a running log-sum-exp) across code blocks. Peak extra memory is
  ``block_rows * block_codes`` floats (32 MiB by default) whatever ``N`` and ``K`` are.
* **triton** (CUDA, or the CPU under ``TRITON_INTERPRET=1``): one program per block of rows
  loops over code blocks with ``tl.dot``, keeps the running minimum / log-sum-exp in registers,
  and subtracts the winning code from the residual in place (see
  :mod:`resgen.quantizers.triton_kernels`).

``backend="auto"`` picks Triton for CUDA tensors when Triton is installed and torch otherwise.
Distances are always computed in float32, even under autocast; ties go to the lowest index.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
from attrs import frozen
from jaxtyping import Float, Int
from torch import Tensor

__all__ = [
    "Backend",
    "NearestCode",
    "ResidualCodes",
    "nearest_code",
    "residual_quantize",
    "residual_quantize_tensors",
    "resolve_backend",
    "TILE_ELEMENTS",
    "TRITON_MAX_DIM",
]

Backend = Literal["auto", "torch", "triton"]
"""Which nearest-code implementation to run: ``"auto"`` (Triton on CUDA when available, torch
otherwise), ``"torch"`` (blocked torch, any device) or ``"triton"`` (forced: CUDA tensors, or any
tensors under ``TRITON_INTERPRET=1``, the interpreter the tests use on the CPU)."""


@frozen
class NearestCode:
    """Result of :func:`nearest_code`.

    Attributes:
        indices: ``Int[n]``, index of the nearest code of each vector (lowest index on ties).
        distances: ``Float[n]``, squared Euclidean distance to that code.
        log_probs: ``Float[n]`` or ``None``: ``log softmax(-d^2 / temperature)`` of the chosen
            code over the whole codebook, present when a temperature was given.
    """

    indices: Int[Tensor, " n"]
    distances: Float[Tensor, " n"]
    log_probs: Float[Tensor, " n"] | None = None


@frozen
class ResidualCodes:
    """Result of :func:`residual_quantize`.

    Attributes:
        tokens: ``Int[n, depth]``; 0 below each vector's start depth.
        log_probs: ``Float[n, depth]`` per-token log-softmax of ``-d^2 / temperature`` (0 below
            the start depth), or ``None`` when no temperature was given.
        residual: ``Float[n, dim]``, what is left after the last depth.
    """

    tokens: Int[Tensor, "n depth"]
    log_probs: Float[Tensor, "n depth"] | None
    residual: Float[Tensor, "n dim"]


TRITON_MAX_DIM = 512
"""Widest code dimension the Triton kernel handles (a row tile and a code tile must fit on chip);
``backend="auto"`` falls back to torch above it."""


def resolve_backend(
    backend: Backend, device: torch.device, dim: int = 0
) -> Literal["torch", "triton"]:
    """Turn ``backend`` into the implementation that will run on ``device``.

    Args:
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.
        device: where the tensors live.
        dim: code dimension (Triton handles up to :data:`TRITON_MAX_DIM`).

    Returns:
        ``"torch"`` or ``"triton"``.

    Raises:
        ValueError: for an unknown backend name.
        RuntimeError: ``"triton"`` was forced on CPU tensors without ``TRITON_INTERPRET=1``, or
            Triton is not installed.
        ValueError: ``"triton"`` was forced for codes wider than :data:`TRITON_MAX_DIM`.
    """
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    if backend == "torch":
        return "torch"
    if backend == "auto":
        fits = dim <= TRITON_MAX_DIM
        return "triton" if device.type == "cuda" and fits and _triton_available() else "torch"
    if dim > TRITON_MAX_DIM:
        raise ValueError(
            f"backend='triton' handles code dimensions up to {TRITON_MAX_DIM}, got {dim}; "
            "use backend='torch'"
        )
    if not _triton_available():
        raise RuntimeError("backend='triton' needs the triton package, which is not installed")
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise RuntimeError(
            f"backend='triton' needs CUDA tensors (got {device.type}); on the CPU set "
            "TRITON_INTERPRET=1 to run the kernel in Triton's interpreter"
        )
    return "triton"


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _check_pair(vectors: Tensor, codebook: Tensor) -> None:
    if vectors.shape[-1] != codebook.shape[-1]:
        raise ValueError(
            f"vectors have dimension {vectors.shape[-1]} but the codebook has dimension "
            f"{codebook.shape[-1]}"
        )
    if codebook.shape[0] == 0:
        raise ValueError("the codebook is empty")
    if vectors.device != codebook.device:
        raise ValueError(f"vectors are on {vectors.device} but the codebook on {codebook.device}")


def _check_blocks(block_rows: int | None, block_codes: int) -> None:
    if (block_rows is not None and block_rows < 1) or block_codes < 1:
        raise ValueError(
            f"block_rows and block_codes must be >= 1, got {block_rows} and {block_codes}"
        )


def nearest_code(
    vectors: Float[Tensor, "n dim"],
    codebook: Float[Tensor, "codes dim"],
    *,
    temperature: float | None = None,
    block_codes: int = 4096,
    block_rows: int | None = None,
    backend: Backend = "auto",
) -> NearestCode:
    """Find the nearest codeword of each vector (squared Euclidean distance, ties to lowest index).

    Args:
        vectors: ``[n, dim]`` query vectors (any float dtype; scored in float32).
        codebook: ``[codes, dim]`` codewords.
        temperature: if given, also return the log-softmax of ``-distance / temperature`` at the
            chosen code (a per-token confidence).
        block_codes: codes scored per tile (torch backend).
        block_rows: vectors scored per tile (torch backend; default ``TILE_ELEMENTS //
            block_codes``); extra memory is bounded by ``block_rows * block_codes`` floats.
        backend: ``"auto"``, ``"torch"`` or ``"triton"`` (see :data:`Backend`).

    Returns:
        A :class:`NearestCode` with ``indices``, ``distances`` (and ``log_probs``) of shape ``[n]``.
    """
    _check_pair(vectors, codebook)
    _check_blocks(block_rows, block_codes)
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    with torch.autocast(device_type=vectors.device.type, enabled=False):
        x = vectors.float()
        cb = codebook.detach().float()
        if resolve_backend(backend, x.device, x.shape[-1]) == "triton":
            from resgen.quantizers.triton_kernels import triton_nearest_code

            idx, dist, logp = triton_nearest_code(
                x.detach().contiguous(), cb.contiguous(), temperature=temperature
            )
            return NearestCode(indices=idx, distances=dist, log_probs=logp)
        idx, dist, logp = _torch_nearest(x.detach(), cb, temperature, block_rows, block_codes)
    return NearestCode(indices=idx, distances=dist, log_probs=logp)


TILE_ELEMENTS = 1 << 23
"""Default tile size of the torch search (8 Mi scores, 32 MiB): with ``block_rows=None`` the row
block is ``TILE_ELEMENTS // block_codes`` vectors."""


def _rows_per_tile(block_rows: int | None, cols: int) -> int:
    return block_rows if block_rows is not None else max(1, TILE_ELEMENTS // cols)


def _torch_nearest(
    x: Tensor,
    cb: Tensor,
    temperature: float | None,
    block_rows: int | None,
    block_codes: int,
    update_residual: bool = False,
    need_distances: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Blocked torch search; ``x`` and ``cb`` are float32. Returns (indices, distances, logp).

    With ``update_residual`` the winning code is subtracted from ``x`` in place, one row block at
    a time while the block is still in cache (the fused residual update). The number of tensor ops
    per tile is kept small on purpose: on a busy CPU each parallel op can wait for a time slice.
    """
    n, k = x.shape[0], cb.shape[0]
    cb_sq = cb.pow(2).sum(-1)
    # ||x - e||^2 = ||x||^2 + (||e||^2 - 2 x.e): only the bracket decides the argmin.
    neg2_cb_t = (cb * -2.0).t()
    best = torch.empty(n, device=x.device)
    best_idx = torch.empty(n, dtype=torch.long, device=x.device)
    lse = torch.empty(n, device=x.device) if temperature is not None else None
    cols = min(block_codes, k)
    rows = min(_rows_per_tile(block_rows, cols), max(n, 1))
    tile = torch.empty(rows, cols, device=x.device)
    for r0 in range(0, n, rows):
        xr = x[r0 : r0 + rows]
        m = xr.shape[0]
        out_best, out_idx = best[r0 : r0 + m], best_idx[r0 : r0 + m]
        row_lse = None
        for c0 in range(0, k, cols):
            c1 = min(c0 + cols, k)
            scores = tile[:m, : c1 - c0]
            torch.addmm(cb_sq[c0:c1], xr, neg2_cb_t[:, c0:c1], out=scores)
            if temperature is not None:
                blk_lse = torch.logsumexp(scores * (-1.0 / temperature), dim=-1)
                row_lse = blk_lse if row_lse is None else torch.logaddexp(row_lse, blk_lse)
            if c0 == 0:
                torch.min(scores, dim=-1, out=(out_best, out_idx))
            else:
                blk_best, blk_idx = scores.min(dim=-1)
                better = blk_best < out_best  # strict: earlier blocks win ties
                out_best.copy_(torch.where(better, blk_best, out_best))
                out_idx.copy_(torch.where(better, blk_idx + c0, out_idx))
        if lse is not None:
            lse[r0 : r0 + m] = row_lse
        if update_residual:
            xr.sub_(cb[out_idx])
    log_probs = None if lse is None else -best / temperature - lse
    distances = None
    if need_distances:
        distances = (best + x.pow(2).sum(-1)).clamp_min_(0.0)
    return best_idx, distances, log_probs


def residual_quantize(
    vectors: Float[Tensor, "n dim"],
    codebooks: Float[Tensor, "depth codes dim"],
    *,
    start: Int[Tensor, " n"] | int = 0,
    temperature: float | None = None,
    block_codes: int = 4096,
    block_rows: int | None = None,
    backend: Backend = "auto",
) -> ResidualCodes:
    """Residual-quantize ``vectors`` through ``codebooks``, depth by depth.

    For each vector ``i`` and each depth ``j >= start[i]``: ``t_ij = argmin_v ||r_i - e_j(v)||``,
    then ``r_i -= e_j(t_ij)`` (distance, argmin and residual update fused per depth).

    Args:
        vectors: ``[n, dim]`` vectors (scored in float32; the input is not modified).
        codebooks: ``[depth, codes, dim]``, one codebook per depth.
        start: ``[n]`` (or one int) first depth to fill for each vector, in ``0..depth``.
        temperature: if given, also return per-token log-softmax confidences.
        block_codes: see :func:`nearest_code`.
        block_rows: see :func:`nearest_code`.
        backend: ``"auto"``, ``"torch"`` or ``"triton"`` (see :data:`Backend`).

    Returns:
        A :class:`ResidualCodes` (tokens ``[n, depth]``, log-probs, final residual ``[n, dim]``).
    """
    tokens, log_probs, residual = residual_quantize_tensors(
        vectors,
        codebooks,
        start=start,
        temperature=temperature,
        block_codes=block_codes,
        block_rows=block_rows,
        backend=backend,
    )
    return ResidualCodes(tokens=tokens, log_probs=log_probs, residual=residual)


def residual_quantize_tensors(
    vectors: Float[Tensor, "n dim"],
    codebooks: Float[Tensor, "depth codes dim"],
    *,
    start: Int[Tensor, " n"] | int = 0,
    temperature: float | None = None,
    block_codes: int = 4096,
    block_rows: int | None = None,
    backend: Backend = "auto",
) -> tuple[Int[Tensor, "n depth"], Float[Tensor, "n depth"] | None, Float[Tensor, "n dim"]]:
    """:func:`residual_quantize` returning a plain ``(tokens, log_probs, residual)`` tuple.

    The form ``torch.compile`` traces without a graph break (a frozen attrs result breaks it).
    Arguments are those of :func:`residual_quantize`.
    """
    if codebooks.shape[0] == 0 or codebooks.shape[1] == 0:
        raise ValueError(f"codebooks must be non-empty, got shape {tuple(codebooks.shape)}")
    _check_pair(vectors, codebooks[0])
    _check_blocks(block_rows, block_codes)
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    depth = codebooks.shape[0]
    n = vectors.shape[0]
    device = vectors.device
    with torch.autocast(device_type=device.type, enabled=False):
        residual = vectors.detach().float().clone()
        cbs = codebooks.detach().float()
        tokens = torch.zeros(n, depth, dtype=torch.long, device=device)
        log_probs = torch.zeros(n, depth, device=device) if temperature is not None else None
        uniform = isinstance(start, int)
        if uniform:
            if not 0 <= start <= depth:
                raise ValueError(f"start must lie in 0..{depth}, got {start}")
        else:
            start = start.to(device)
            if start.numel() and (int(start.min()) < 0 or int(start.max()) > depth):
                raise ValueError(f"start depths must lie in 0..{depth}")
        if resolve_backend(backend, device, vectors.shape[-1]) == "triton":
            from resgen.quantizers.triton_kernels import triton_residual_quantize

            start_t = (
                torch.full((n,), start, dtype=torch.long, device=device)
                if uniform
                else start.long().contiguous()
            )
            triton_residual_quantize(
                residual, cbs.contiguous(), start_t, tokens, log_probs, temperature
            )
            return tokens, log_probs, residual
        for j in range(depth):
            if uniform:
                if j < start:
                    continue
                rows = None
            else:
                active = start <= j
                if not bool(active.any()):
                    continue
                rows = None if bool(active.all()) else active.nonzero().squeeze(1)
            r = residual if rows is None else residual.index_select(0, rows)
            idx, _, logp = _torch_nearest(
                r,
                cbs[j],
                temperature,
                block_rows,
                block_codes,
                update_residual=True,
                need_distances=False,
            )
            if rows is None:
                tokens[:, j] = idx
                if log_probs is not None:
                    log_probs[:, j] = logp
            else:
                residual.index_copy_(0, rows, r)
                tokens[rows, j] = idx
                if log_probs is not None:
                    log_probs[rows, j] = logp
    return tokens, log_probs, residual

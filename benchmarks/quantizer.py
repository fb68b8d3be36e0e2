"""Encode throughput of resgen's ResidualVQ against vector-quantize-pytorch's, and the matmul limit.

For each configuration, in one process, on the same data and the same codebooks, in eval mode:

* ``resgen``: ``ResidualVQ.encode`` (the blocked nearest-code op on the CPU, Triton on CUDA);
* ``peer``: ``vector_quantize_pytorch.ResidualVQ.forward`` (its encode path: it returns the
  indices together with the quantized output), a benchmark-only dependency;
* ``matmul limit``: the distance matmuls alone, ``N * K * dim`` multiply-adds per depth, timed as
  the fastest of a few tilings (one big matmul, row tiles into a preallocated output) so that it is
  the compute bound of any exact nearest-code search, not of our own tiling.

Runs are interleaved (resgen, peer, matmul, resgen, ...) and the best of the repetitions is kept,
so that load from other processes on a shared machine hits all three alike. Peak memory is the
extra resident memory (CPU; sampled every millisecond in a separate, untimed run) or the peak
allocated memory (CUDA) of one encode call, beyond its inputs.

Prints a table, then, last, one JSON line per configuration with the keys ``config``,
``resgen_vps``, ``peer_vps``, ``ratio_vs_peer``, ``fraction_of_matmul_limit``, ``peak_mem_mb``
(and a few more). ``--quick`` shrinks N and the repetitions to finish in well under a minute.

Usage::

    python benchmarks/quantizer.py [--quick] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable

import torch

from resgen.quantizers import ResidualVQ, ResidualVQConfig
from resgen.training.trainer import resolve_device

CONFIGS = [
    {"name": "dim256-codes1024-depth8", "dim": 256, "codes": 1024, "depth": 8, "n": 65536},
    {"name": "dim64-codes16384-depth4", "dim": 64, "codes": 16384, "depth": 4, "n": 16384},
]
LENGTH = 256  # positions per sequence; the batch is n / LENGTH sequences


def _fixed_mmap_threshold() -> None:
    """Make glibc serve every allocation of 64 KiB or more with its own mmap, returned to the
    system when freed, so that resident memory tracks live tensors (glibc otherwise raises the
    threshold after the first large free and keeps freed memory resident), and trim the heap.
    Called only by the memory measurement, after the timed runs, so it cannot change timings."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)  # hand freed heap pages back, so reusing them shows in RSS again
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_extra_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Extra memory (MiB) that one call of ``fn`` needs beyond what exists before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    _fixed_mmap_threshold()
    baseline = _rss_bytes()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(0.0, (peak - baseline) / 2**20)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def make_codebooks(depth: int, codes: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """RVQ-like codebooks: each depth's codes are about half the scale of the previous depth's."""
    scales = 0.5 ** torch.arange(depth, dtype=torch.float32)
    return torch.randn(depth, codes, dim, generator=gen) * scales[:, None, None]


def matmul_limit(
    x: torch.Tensor, codebooks: torch.Tensor, device: torch.device
) -> dict[str, Callable[[], None]]:
    """Candidate timings of the bare distance matmuls (``depth`` times ``[N, C] @ [C, K]``)."""
    n = x.shape[0]
    depth, codes, _ = codebooks.shape
    cands: dict[str, Callable[[], None]] = {}
    if n * codes <= 2**28:  # one big matmul per depth (up to 1 GiB of output)

        def full() -> None:
            for j in range(depth):
                torch.mm(x, codebooks[j].t())

        cands["full"] = full
    for rows in (512, 2048):
        rows = min(rows, n)
        out = torch.empty(rows, codes, device=device)

        def tiled(rows: int = rows, out: torch.Tensor = out) -> None:
            for j in range(depth):
                cbt = codebooks[j].t()
                for r0 in range(0, n, rows):
                    xr = x[r0 : r0 + rows]
                    torch.mm(xr, cbt, out=out[: xr.shape[0]])

        cands[f"rows{rows}"] = tiled
    return cands


def run_config(
    cfg: dict, *, quick: bool, device: torch.device, reps: int, peer_cls: type | None
) -> dict:
    """Benchmark one configuration; returns the result row."""
    n = cfg["n"] // 16 if quick else cfg["n"]
    dim, codes, depth = cfg["dim"], cfg["codes"], cfg["depth"]
    gen = torch.Generator().manual_seed(0)
    codebooks = make_codebooks(depth, codes, dim, gen).to(device)
    latents = torch.randn(n // LENGTH, LENGTH, dim, generator=gen).to(device)
    flat = latents.reshape(n, dim)

    ours = ResidualVQ(ResidualVQConfig(dim=dim, codes=codes, depth=depth)).to(device).eval()
    ours.codebooks.copy_(codebooks)
    ours.initialized.fill_(True)

    peer = None
    if peer_cls is not None:
        peer = peer_cls(dim=dim, num_quantizers=depth, codebook_size=codes).to(device).eval()
        with torch.no_grad():
            for j, layer in enumerate(peer.layers):
                layer._codebook.embed.copy_(codebooks[j][None])

    def run_ours() -> torch.Tensor:
        return ours.encode(latents)

    def run_peer() -> torch.Tensor:
        with torch.no_grad():
            return peer(latents)[1]

    limits = matmul_limit(flat, codebooks, device)
    funcs: dict[str, Callable[[], object]] = {"resgen": run_ours, **limits}
    if peer is not None:
        funcs["peer"] = run_peer
    # Warm up every path once (allocator, thread pool), checking the tokens agree.
    tokens = run_ours()
    agreement = None
    if peer is not None:
        peer_tokens = run_peer()
        agreement = float((peer_tokens.to(tokens.device) == tokens).float().mean())
    for name, fn in funcs.items():
        if name not in ("resgen", "peer"):
            fn()
    times: dict[str, list[float]] = {name: [] for name in funcs}
    for _ in range(reps):
        for name, fn in funcs.items():
            times[name].append(_timed(fn, device))
    best = {name: min(ts) for name, ts in times.items()}
    limit_name = min(limits, key=lambda k: best[k])
    t_ours, t_limit = best["resgen"], best[limit_name]
    t_peer = best.get("peer")

    peak_ours = peak_extra_memory_mb(run_ours, device)
    peak_peer = None
    if peer is not None and not quick:
        peak_peer = peak_extra_memory_mb(run_peer, device)
    row = {
        "config": cfg["name"],
        "resgen_vps": n / t_ours,
        "peer_vps": n / t_peer if t_peer else None,
        "ratio_vs_peer": t_peer / t_ours if t_peer else None,
        "fraction_of_matmul_limit": t_limit / t_ours,
        "peak_mem_mb": peak_ours,
        "peer_peak_mem_mb": peak_peer,
        "matmul_limit_vps": n / t_limit,
        "matmul_limit_tiling": limit_name,
        "matmul_gflops": 2 * n * codes * dim * depth / t_limit / 1e9,
        "token_agreement": agreement,
        "n": n,
        "dim": dim,
        "codes": codes,
        "depth": depth,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "reps": reps,
        "quick": quick,
    }
    return row


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, few repetitions (< 60 s)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu; e.g. cuda)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per path")
    parser.add_argument("--no-peer", action="store_true", help="skip vector-quantize-pytorch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    reps = args.reps or (2 if args.quick else 5)
    peer_cls = None
    if not args.no_peer:
        try:
            from vector_quantize_pytorch import ResidualVQ as PeerResidualVQ
        except ImportError:
            print("vector-quantize-pytorch is not installed: peer columns left empty")
        else:
            peer_cls = PeerResidualVQ

    rows = [
        run_config(cfg, quick=args.quick, device=device, reps=reps, peer_cls=peer_cls)
        for cfg in CONFIGS
    ]
    header = (
        f"{'config':<26} {'N':>6} {'resgen vec/s':>13} {'peer vec/s':>12} {'ratio':>6} "
        f"{'matmul vec/s':>13} {'frac':>5} {'GFLOP/s':>8} {'mem MiB':>8} {'peer MiB':>9} "
        f"{'agree':>6}"
    )
    print(f"device {device}, {torch.get_num_threads()} threads, best of {reps}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['config']:<26} {r['n']:>6} {r['resgen_vps']:>13,.0f} "
            f"{_fmt(r['peer_vps'], '>12,.0f')} {_fmt(r['ratio_vs_peer'], '>6.2f')} "
            f"{r['matmul_limit_vps']:>13,.0f} {r['fraction_of_matmul_limit']:>5.2f} "
            f"{r['matmul_gflops']:>8.1f} {r['peak_mem_mb']:>8.1f} "
            f"{_fmt(r['peer_peak_mem_mb'], '>9.1f')} {_fmt(r['token_agreement'], '>6.3f')}"
        )
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()

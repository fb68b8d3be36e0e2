"""Two CPU ranks (gloo): codebooks stay identical through k-means init, EMA updates and dead-code
restarts on different data, and nothing hangs when only one rank's data leaves codes unused."""

import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from resgen.quantizers import ResidualVQ, ResidualVQConfig

WORLD = 2
DEADLINE_S = 90


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scenarios(rank: int):
    gen = torch.Generator().manual_seed(1000 + rank)

    # 1. Different data per rank (and different batch sizes), per-depth codebooks.
    def spread(step: int) -> torch.Tensor:
        n = 6 if rank == 0 else 4
        return torch.randn(n, 32, 6, generator=gen) * (1 + rank) + 2 * rank

    # 2. Rank 1 only ever sees three distinct vectors: most codes are unused on rank 1 alone, and
    #    fast decay with a high threshold makes globally dead codes appear within a few steps.
    def lopsided(step: int) -> torch.Tensor:
        if rank == 0:
            return torch.randn(4, 32, 6, generator=gen)
        few = torch.randn(3, 6, generator=gen)
        return few[torch.randint(0, 3, (2, 16), generator=gen)]

    return [
        ("spread", dict(dim=6, codes=24, depth=3), spread),
        ("lopsided", dict(dim=6, codes=24, depth=2, decay=0.5, dead_code_threshold=2.0), lopsided),
        (
            "shared",
            dict(
                dim=6,
                codes=16,
                depth=3,
                shared_codebook=True,
                decay=0.5,
                dead_code_threshold=1.0,
                dropout_prob=0.5,
            ),
            lopsided,
        ),
    ]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=40))
    try:
        results = {}
        for name, cfg, data in _scenarios(rank):
            torch.manual_seed(rank)  # different initial codebooks and random draws per rank
            q = ResidualVQ(ResidualVQConfig(**cfg, kmeans_iters=3))
            restarted = 0
            for step in range(6):
                out = q(data(step))
                restarted += int(out.restarted)
            results[name] = {
                "codebooks": q.codebooks.detach().clone(),
                "ema_sizes": q.ema_sizes.clone(),
                "ema_sums": q.ema_sums.clone(),
                "restarted": restarted,
                "perplexity": out.perplexity.clone(),
            }
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_hold_identical_codebooks(tmp_path):
    ctx = mp.start_processes(
        _worker,
        args=(_free_port(), str(tmp_path)),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"the 2-rank quantizer run hung (no exit within {DEADLINE_S} s)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for name in r0:
        for key in ("codebooks", "ema_sizes", "ema_sums", "perplexity"):
            assert torch.equal(r0[name][key], r1[name][key]), (name, key)
        assert r0[name]["restarted"] == r1[name]["restarted"], name
    assert r0["lopsided"]["restarted"] > 0  # restarts really happened, on both ranks alike
    assert r0["shared"]["restarted"] > 0
    assert r0["spread"]["codebooks"].abs().sum() > 0

"""Sampling cost against RVQ depth: ResGen, the token-level masked baseline, the RQ-Transformer.

The paper's second claim is that ResGen's sampling cost does not grow with the RVQ depth ``D``,
unlike an autoregressive RQ-Transformer's. For ``D`` in {4, 8, 16, 32} at ``L = 64`` positions,
batch 16, on the CPU, with randomly initialised networks of the same width and blocks:

* ``resgen``: :class:`~resgen.networks.MaskedRVQTransformer` + :class:`ResGenSampler`, ``T = 16``;
* ``token``: :class:`MaskedTokenTransformer` + :class:`TokenSampler` (MaskGIT-style), ``T = 16``;
* ``ar``: :class:`RQTransformer` (spatial transformer with ``layers`` blocks, plus a depth
  transformer with ``--depth-layers`` blocks, as in the original) + :class:`ARSampler`, with key/
  value caches: ``L`` spatial steps and ``L * D`` depth steps.

Network calls are counted by wrapping the networks' entry points (``hidden`` for the masked
networks, ``spatial_step`` and ``depth_step`` for the RQ-Transformer); one call serves the whole
batch, so calls per batch = network evaluations per sample. Wall seconds per sample = seconds per
batch / batch. After a short warm-up of every network, each round runs all twelve (method, depth)
pairs back to back (depth order alternating between rounds) and the fastest round of each pair is
kept, so that load from other processes hits all of them alike. One CPU thread by default: on a
shared 2-core machine, two threads make small operations (the AR steps) erratically slow.

Reading the numbers: calls per sample are what the paper's claim is about (``T`` for both masked
samplers whatever ``D``; ``L + L * D`` for the RQ-Transformer). Wall time also depends on the
arithmetic per call. Per position, a masked sampler evaluates ``T * layers`` blocks (every position
at every step) while the KV-cached RQ-Transformer evaluates ``layers + D * depth_layers`` blocks
(e.g. 64 against 36 at 4 blocks and ``D = 16``); ResGen adds ``D`` nearest-code searches
per position and step, the token baseline ``D * K`` logits. Where each step is arithmetic-bound,
as on a CPU at batch 16, the RQ-Transformer's many small steps cost about what the masked
samplers' few large ones do; the call-count advantage becomes a wall-time advantage where a step
costs a fixed latency whatever its size (accelerators, small widths).

Prints a table, then, last, one JSON line with the keys ``resgen_time_ratio_d32_d4``,
``token_time_ratio_d32_d4``, ``ar_time_ratio_d32_d4``, ``resgen_vs_ar_speedup_d16`` (AR seconds
over ResGen seconds at ``D = 16``), and the raw numbers. ``--quick`` uses 4 blocks instead of 6
(same width and ``D`` grid) and starts no new round after 20 s, to finish in under a minute. The
width stays at 256 because the ResGen ratio depends on it: ResGen's only depth-dependent work,
residual quantization, does not shrink with the network, so a narrower quick network would
exaggerate its share (at width 128 the ratio is about 1.5 instead of 1.1).

``--device cuda`` runs the networks, the quantizers and the sampling noise on a GPU (the CPU by
default); each timed call is then bracketed by ``torch.cuda.synchronize()``.

Usage::

    python benchmarks/sampling.py [--quick] [--device cpu|cuda] [--threads N] [--width W]
        [--layers N] [--depth-layers N] [--codes K] [--dim C] [--repeats R] [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from resgen.diffusion.ar_sampler import ARSampler, ARSamplerConfig
from resgen.diffusion.sampler import ResGenSampler, SamplerConfig
from resgen.diffusion.token_sampler import TokenSampler, TokenSamplerConfig
from resgen.networks.masked_transformer import MaskedRVQTransformer, MaskedTransformerConfig
from resgen.networks.rq_transformer import RQTransformer, RQTransformerConfig
from resgen.networks.token_head import MaskedTokenTransformer, MaskedTokenTransformerConfig
from resgen.quantizers import ResidualVQ, ResidualVQConfig
from resgen.training.trainer import resolve_device

DEPTHS = (4, 8, 16, 32)
LENGTH, BATCH, STEPS, CLASSES = 64, 16, 16, 10
METHODS = ("resgen", "token", "ar")


def count_calls(model: torch.nn.Module, names: tuple[str, ...]) -> dict[str, int]:
    """Wrap ``model``'s methods ``names`` in place so that each call increments a counter."""
    counts = dict.fromkeys(names, 0)
    for name in names:
        method = getattr(model, name)

        def counted(*args: object, _name: str = name, _method: Callable = method, **kw: object):
            counts[_name] += 1
            return _method(*args, **kw)

        object.__setattr__(model, name, counted)  # instance attribute shadows the method
    return counts


def synchronize(device: torch.device) -> None:
    """Wait for the queued work of ``device`` (CUDA); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(method: str, depth: int, args: argparse.Namespace) -> tuple[object, object, dict]:
    """(sampler, model, call counters) of ``method`` at ``depth``."""
    common = dict(
        length=LENGTH,
        depth=depth,
        num_classes=CLASSES,
        width=args.width,
        layers=args.layers,
        heads=args.heads,
    )
    if method == "resgen":
        model = MaskedRVQTransformer(MaskedTransformerConfig(dim=args.dim, **common))
        return ResGenSampler(SamplerConfig(steps=STEPS)), model, count_calls(model, ("hidden",))
    if method == "token":
        model = MaskedTokenTransformer(
            MaskedTokenTransformerConfig(dim=args.dim, codes=args.codes, **common)
        )
        return TokenSampler(TokenSamplerConfig(steps=STEPS)), model, count_calls(model, ("hidden",))
    model = RQTransformer(
        RQTransformerConfig(codes=args.codes, depth_layers=args.depth_layers, **common)
    )
    calls = count_calls(model, ("spatial_step", "depth_step"))
    return ARSampler(ARSamplerConfig()), model, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 blocks, 20 s budget")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu; e.g. cuda)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--width", type=int, default=None, help="width (default 256)")
    parser.add_argument("--layers", type=int, default=None, help="blocks (default 6; quick 4)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--depth-layers", type=int, default=2, help="RQ depth-transformer blocks")
    parser.add_argument("--codes", type=int, default=256, help="codebook size K")
    parser.add_argument("--dim", type=int, default=16, help="code dimension C")
    parser.add_argument("--repeats", type=int, default=3, help="most timed rounds (default 3)")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds after which no new round starts (default: none; quick: 20)",
    )
    args = parser.parse_args()
    args.width = args.width or 256
    args.layers = args.layers or (4 if args.quick else 6)
    args.budget = args.budget if args.budget is not None else (20.0 if args.quick else None)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    labels = (torch.arange(BATCH) % CLASSES).to(device)
    started = time.perf_counter()

    runs = {}
    for depth in DEPTHS:
        quantizer = ResidualVQ(ResidualVQConfig(dim=args.dim, codes=args.codes, depth=depth))
        quantizer = quantizer.to(device).eval()
        for method in METHODS:
            sampler, model, counter = build(method, depth, args)
            runs[method, depth] = (sampler, model.to(device).eval(), counter, quantizer)
    warm_samplers = {
        "resgen": ResGenSampler(SamplerConfig(steps=2)),
        "token": TokenSampler(TokenSamplerConfig(steps=2)),
        "ar": ARSampler(ARSamplerConfig()),
    }
    best = dict.fromkeys(runs, float("inf"))
    calls: dict[str, dict[int, int]] = {m: {} for m in METHODS}
    with torch.no_grad():
        for (method, _depth), (_, model, _, quantizer) in runs.items():  # warm-up, not timed
            length = 2 if method == "ar" else LENGTH
            warm_samplers[method].sample(model, quantizer, labels, length)
        synchronize(device)
        # Every round runs all (method, depth) pairs, alternating the order of the depths, so that
        # slow drifts of the machine's load do not masquerade as a trend in depth.
        rounds = 0
        while rounds < args.repeats:
            if rounds and args.budget is not None and time.perf_counter() - started > args.budget:
                break
            order = DEPTHS if rounds % 2 == 0 else DEPTHS[::-1]
            rounds += 1
            for depth in order:
                for method in METHODS:
                    sampler, model, counter, quantizer = runs[method, depth]
                    for key in counter:
                        counter[key] = 0
                    generator = torch.Generator(device=device).manual_seed(0)
                    synchronize(device)
                    tic = time.perf_counter()
                    sampler.sample(model, quantizer, labels, LENGTH, generator=generator)
                    synchronize(device)
                    best[method, depth] = min(best[method, depth], time.perf_counter() - tic)
                    calls[method][depth] = sum(counter.values())
    seconds = {m: {d: best[m, d] / BATCH for d in DEPTHS} for m in METHODS}

    ar_layers = f"{args.layers} spatial + {args.depth_layers} depth blocks"
    print(
        f"Sampling cost, L={LENGTH}, batch {BATCH}, width {args.width}, {args.layers} blocks "
        f"(RQ-Transformer: {ar_layers}), K={args.codes}, C={args.dim}, T={STEPS}, "
        f"device {device}, {args.threads} thread(s), best of {rounds} round(s)"
    )
    print(f"{'D':>4} | {'calls/sample':^27} | {'wall seconds/sample':^33} | {'AR/ResGen':>9}")
    print(
        f"{'':>4} | {'resgen':>7} {'token':>7} {'ar':>11} | {'resgen':>10} {'token':>10} "
        f"{'ar':>11} | {'':>9}"
    )
    for depth in DEPTHS:
        s = {m: seconds[m][depth] for m in METHODS}
        print(
            f"{depth:>4} | {calls['resgen'][depth]:>7} {calls['token'][depth]:>7} "
            f"{calls['ar'][depth]:>11} | {s['resgen']:>10.4f} {s['token']:>10.4f} "
            f"{s['ar']:>11.4f} | {s['ar'] / s['resgen']:>8.1f}x"
        )
    ratio = {m: seconds[m][32] / seconds[m][4] for m in METHODS}
    print(
        f"time ratio D=32 / D=4: resgen {ratio['resgen']:.2f}, token {ratio['token']:.2f}, "
        f"ar {ratio['ar']:.2f}; total {time.perf_counter() - started:.1f} s"
    )
    result = {
        "resgen_time_ratio_d32_d4": round(ratio["resgen"], 3),
        "token_time_ratio_d32_d4": round(ratio["token"], 3),
        "ar_time_ratio_d32_d4": round(ratio["ar"], 3),
        "resgen_vs_ar_speedup_d16": round(seconds["ar"][16] / seconds["resgen"][16], 3),
        "seconds_per_sample": {
            m: {str(d): round(v, 5) for d, v in seconds[m].items()} for m in METHODS
        },
        "calls_per_sample": {m: {str(d): v for d, v in calls[m].items()} for m in METHODS},
        "settings": {
            "length": LENGTH,
            "batch": BATCH,
            "steps": STEPS,
            "width": args.width,
            "layers": args.layers,
            "depth_layers": args.depth_layers,
            "codes": args.codes,
            "dim": args.dim,
            "device": str(device),
            "threads": args.threads,
            "rounds": rounds,
            "quick": args.quick,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

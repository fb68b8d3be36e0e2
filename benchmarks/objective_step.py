"""Training-step throughput of ResGen's two objectives at the image demo's sizes.

The exact NLL evaluates every component of the mixture at every masked position; the Jensen split
needs the mixture weights and one component (``MixtureOfGaussiansHead.assigned``). Both run in one
process on the same synthetic tokens; the last line is JSON with ``jensen_vs_nll_speedup``.

    python benchmarks/objective_step.py [--steps 10] [--components 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from resgen.diffusion.loss import ResGenObjective, resgen_loss
from resgen.diffusion.schedules import CosineSchedule
from resgen.networks import MaskedRVQTransformer, MaskedTransformerConfig
from resgen.quantizers import ResidualVQ, ResidualVQConfig
from resgen.training.trainer import resolve_device


def steps_per_second(kind: str, args: argparse.Namespace, device: torch.device) -> float:
    """Optimiser steps per second of one objective (after 3 warm-up steps)."""
    torch.manual_seed(0)
    quantizer = ResidualVQ(ResidualVQConfig(dim=16, codes=args.components, depth=8)).to(device)
    config = MaskedTransformerConfig(
        length=49, depth=8, dim=16, num_classes=10, components=args.components
    )
    model = MaskedRVQTransformer(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    tokens = torch.randint(args.components, (args.batch, 49, 8), device=device)
    labels = torch.randint(10, (args.batch,), device=device)
    objective = ResGenObjective(kind=kind, beta=1.0)
    for step in range(args.steps + 3):
        if step == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            tick = time.perf_counter()
        loss = resgen_loss(model, quantizer, tokens, labels, CosineSchedule(), objective=objective)
        opt.zero_grad()
        loss.loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps / (time.perf_counter() - tick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--components", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    rates = {kind: steps_per_second(kind, args, device) for kind in ("nll", "jensen")}
    for kind, rate in rates.items():
        print(f"{kind:>6}: {rate:.2f} steps/s")
    print(
        json.dumps(
            {
                **{f"{k}_steps_per_s": v for k, v in rates.items()},
                "jensen_vs_nll_speedup": rates["jensen"] / rates["nll"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

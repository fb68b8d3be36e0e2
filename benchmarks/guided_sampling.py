"""What classifier-free guidance on the mixture logits costs a ResGen sampling step.

Guidance on the logits (the default, ``SamplerConfig.guidance="logits"``) reads only the
mixture logits of the unconditional pass. The head computes them alone
(:meth:`MixtureOfGaussiansHead.logits`, one output per component) instead of the whole mixture
(``1 + 2 * dim`` outputs per component: logits, means and scales). This script samples the same
batch twice with the same seed, with the network as it is and with a wrapper whose
``mixture_logits`` evaluates the whole mixture and keeps its logits (the earlier behaviour),
checks that both write the same tokens, and prints seconds per batch of each and their ratio.

The default shape is the image benchmark's (``benchmarks/generator_quality.py``: width 128,
4 blocks, 49 positions, 256 codes of dimension 16, ``D = 16``, 16 steps) at batch 250.

Usage::

    python benchmarks/guided_sampling.py [--depth D] [--batch B] [--repeats R] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from resgen.diffusion.guidance import ClassifierFreeGuidance
from resgen.diffusion.sampler import ResGenSampler, SamplerConfig
from resgen.networks.masked_transformer import MaskedRVQTransformer, MaskedTransformerConfig
from resgen.quantizers import ResidualVQ, ResidualVQConfig


class FullMixtureLogits:
    """A ResGen network whose ``mixture_logits`` computes the whole mixture first."""

    def __init__(self, model: MaskedRVQTransformer) -> None:
        self.model = model

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def mixture_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The logits of the full mixture ``[batch, length, comp]``."""
        return self.model.mixture(hidden).logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the fastest is kept")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    length, codes, dim = 49, 256, 16
    quantizer = ResidualVQ(ResidualVQConfig(dim=dim, codes=codes, depth=args.depth)).eval()
    model = MaskedRVQTransformer(
        MaskedTransformerConfig(
            dim=dim,
            length=length,
            depth=args.depth,
            num_classes=10,
            width=128,
            layers=4,
            heads=4,
            components=codes,
            head_rank=128,
        )
    ).eval()
    sampler = ResGenSampler(SamplerConfig(steps=16, temperature=0.5), ClassifierFreeGuidance(3.0))
    labels = torch.arange(args.batch) % 10
    variants = {"logits_only": model, "full_mixture": FullMixtureLogits(model)}
    seconds: dict[str, float] = {name: float("inf") for name in variants}
    tokens = {}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, network in variants.items():  # alternate, so load hits both alike
                tick = time.perf_counter()
                tokens[name] = sampler.sample(
                    network, quantizer, labels, length, generator=torch.Generator().manual_seed(0)
                )
                seconds[name] = min(seconds[name], time.perf_counter() - tick)
    same = bool(torch.equal(tokens["logits_only"], tokens["full_mixture"]))
    print(f"D = {args.depth}, batch {args.batch}, 16 guided steps, {args.threads} threads")
    for name, value in seconds.items():
        print(f"  {name:13s} {value:7.2f} s/batch  {value / args.batch * 1e3:6.1f} ms/sample")
    ratio = seconds["full_mixture"] / seconds["logits_only"]
    print(f"  speed-up {ratio:.2f}x; same tokens: {same}")
    print(
        json.dumps(
            {
                "depth": args.depth,
                "batch": args.batch,
                "seconds": seconds,
                "speedup": ratio,
                "same_tokens": same,
            }
        )
    )
    if not same:
        raise SystemExit("the two variants wrote different tokens")


if __name__ == "__main__":
    main()

"""A generator stage run by the multi-process tests, under torchrun or in the test's process.

``python ddp_stage_worker.py RUN_DIR [--kill-at STEP] [--fsdp]`` trains a small ResGen generator
(the recipes' :func:`~resgen.recipes.generators.build_generator` and ``generator_loss``) on fixed
random tokens for :data:`SPEC`, micro-batched, and writes nothing but the stage folder (with
``--fsdp``: :data:`FSDP_SPEC`, sharded, with a weight average and a validation). With
``--kill-at``, rank 1 sends itself SIGKILL when it reaches that step, the first time only (a
marker file beside the run folder remembers it), as a crashed machine or the out-of-memory killer
would; the same command run again resumes the stage.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import attrs
import torch
from torch import nn

from resgen.diffusion.loss import ResGenObjective
from resgen.diffusion.schedules import CosineSchedule
from resgen.quantizers import ResidualVQ, ResidualVQConfig
from resgen.recipes.generators import build_generator, generator_loss
from resgen.training import distributed
from resgen.training.trainer import BatchPart, StageSpec, batch_generator, run_stage

SPEC = StageSpec(steps=12, batch_size=8, lr=3e-3, checkpoint_every=4, micro_batches=2)
FSDP_SPEC = attrs.evolve(SPEC, sharding="fsdp", ema_decay=0.8)
SEED = 5
NETWORK = {"width": 16, "layers": 1, "heads": 2, "components": 4, "head_rank": 8}


OBJECTIVE = ResGenObjective(kind="jensen", beta=1.0)


def build() -> tuple[nn.Module, dict, ResidualVQ]:
    """The generator (initialised from the global generator), its config and the quantizer."""
    quantizer = ResidualVQ(ResidualVQConfig(dim=4, codes=8, depth=3)).eval()
    model, network = build_generator("resgen", quantizer, 4, 3, NETWORK, OBJECTIVE)
    return model, network, quantizer


def train(folder: Path, kill_at: int | None = None, fsdp: bool = False) -> nn.Module:
    """Train the stage into ``folder`` (resuming what is there); returns the generator."""
    data = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 8, (40, 4, 3), generator=data)
    labels = torch.randint(0, 3, (40,), generator=data)
    torch.manual_seed(0)
    model, network, quantizer = build()
    schedule = CosineSchedule()

    def loss_fn(step: int, part: BatchPart) -> tuple[torch.Tensor, dict[str, float]]:
        if kill_at is not None and step == kill_at and distributed.rank() == 1:
            marker = folder.parent / f"{folder.name}.killed"
            if not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        idx = torch.randint(len(tokens), (SPEC.batch_size,), generator=batch_generator(SEED, step))
        idx = part.rows(idx)
        loss = generator_loss(
            "resgen",
            model,
            quantizer,
            tokens[idx],
            labels[idx],
            schedule,
            part.generator(SEED),
            OBJECTIVE,
        )
        return loss, {}

    def validate() -> float:  # the loss of fixed examples with fixed masks
        gen = torch.Generator().manual_seed(99)
        return float(
            generator_loss(
                "resgen", model, quantizer, tokens[:6], labels[:6], schedule, gen, OBJECTIVE
            )
        )

    spec = FSDP_SPEC if fsdp else SPEC
    run_stage(
        "generator",
        folder,
        {"generator": model},
        spec,
        loss_fn,
        {"network": network},
        validate=validate if fsdp else None,
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--kill-at", type=int, default=None)
    parser.add_argument("--fsdp", action="store_true")
    args = parser.parse_args()
    distributed.init_from_env("cpu")
    try:
        model = train(Path(args.folder), args.kill_at, args.fsdp)
        if args.fsdp and distributed.rank() == 1:  # whole again: usable without the others
            assert all(type(p) is nn.Parameter for p in model.parameters())
            with torch.no_grad():
                model.eval()
        del model  # unreachable before release() collects: see its docstring
    finally:
        distributed.release()


if __name__ == "__main__":
    main()

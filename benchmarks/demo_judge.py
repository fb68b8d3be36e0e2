"""An independent judge of the image demo's samples.

The image recipe scores its own samples with the classifier it trains (``FashionClassifier``),
the same network whose features give its FID: a generator could learn what that one network
reads. This script trains a second classifier that shares nothing with it (another
architecture, normalisation, augmentation, optimiser settings and seed), reports its accuracy on
the real test split (the ceiling a generator can reach), then samples a finished run of the image
recipe and reports the share of samples the judge assigns to the class they were asked for,
with a 95 % percentile-bootstrap interval. The bundled classifier's score of the same images is
printed beside it.

    python benchmarks/demo_judge.py --run runs/demo --out runs/judge

The judge is trained once into ``--out/judge`` (re-running reuses it); the result, with the
command, date and git commit, goes to ``--json`` (default ``docs/results/demo_judge.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from resgen.data.fashion_mnist import load_fashion_mnist
from resgen.eval.bootstrap import ratio_interval
from resgen.eval.classifier import FashionClassifier
from resgen.eval.provenance import git_commit
from resgen.recipes.image_fashion import (
    NUM_CLASSES,
    generate_images,
    load_trained,
    make_recipe_sampler,
)
from resgen.training.checkpoint import finished_checkpoint, load_checkpoint
from resgen.training.trainer import StageSpec, batch_generator, run_stage

_DEFAULT_JSON = Path(__file__).resolve().parents[1] / "docs" / "results" / "demo_judge.json"
JUDGE_SEED = 20261204
JUDGE_STAGE = StageSpec(steps=3000, batch_size=128, lr=3e-3, weight_decay=0.05, warmup=150)


class JudgeNet(nn.Module):
    """A classifier unlike the recipe's: a 5x5 stem, GroupNorm and GELU, strided downsampling
    instead of pooling, global average pooling instead of a flattened dense layer.

    Images are ``[batch, 1, 28, 28]`` in ``[-1, 1]``; returns logits ``[batch, classes]``.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()

        def stage(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2),
                nn.GroupNorm(8, c_out),
                nn.GELU(),
            )

        self.body = nn.Sequential(
            stage(1, 32, 5, 1), stage(32, 64, 3, 2), stage(64, 64, 3, 1), stage(64, 128, 3, 2)
        )
        self.head = nn.Linear(128, num_classes)

    def forward(self, images: Float[Tensor, "batch 1 28 28"]) -> Float[Tensor, "batch classes"]:
        """Class logits of ``images``."""
        return self.head(self.body(images).mean((-2, -1)))


def shift_crop(
    images: Float[Tensor, "batch 1 28 28"], generator: torch.Generator
) -> Float[Tensor, "batch 1 28 28"]:
    """Each image shifted by up to 2 pixels in each direction (zero-padded with background -1)."""
    padded = F.pad(images, (2, 2, 2, 2), value=-1.0)
    dy, dx = torch.randint(0, 5, (2, len(images)), generator=generator)
    return torch.stack(
        [p[:, y : y + 28, x : x + 28] for p, y, x in zip(padded, dy.tolist(), dx.tolist())]
    )


def train_judge(
    images: Float[Tensor, "n 1 28 28"], labels: Int[Tensor, " n"], folder: Path
) -> JudgeNet:
    """Train (or load, when ``folder`` holds a finished stage) the judge on real images."""
    torch.manual_seed(JUDGE_SEED)
    judge = JudgeNet()

    def loss_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        gen = batch_generator(JUDGE_SEED, step)
        idx = torch.randint(len(images), (JUDGE_STAGE.batch_size,), generator=gen)
        batch = shift_crop(images[idx], gen)
        return F.cross_entropy(judge(batch), labels[idx], label_smoothing=0.1), {}

    run_stage("judge", folder, {"judge": judge}, JUDGE_STAGE, loss_fn, {"seed": JUDGE_SEED})
    load_checkpoint(finished_checkpoint(folder), {"judge": judge})
    return judge.eval()


@torch.no_grad()
def agreement(
    classifier: nn.Module, images: Float[Tensor, "n 1 28 28"], labels: Int[Tensor, " n"]
) -> Float[Tensor, " n"]:
    """Per image, 1.0 where ``classifier`` picks the image's label, else 0.0."""
    out = [
        classifier(images[i : i + 500]).argmax(-1) == labels[i : i + 500]
        for i in range(0, len(images), 500)
    ]
    return torch.cat(out).float()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished image-fashion run")
    parser.add_argument("--out", type=Path, required=True, help="where the judge is trained")
    parser.add_argument("--samples", type=int, default=1000, help="an equal number per class")
    parser.add_argument("--seed", type=int, default=7, help="sampling seed (not the run's)")
    parser.add_argument("--json", type=Path, default=_DEFAULT_JSON)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    if not (args.run / "recipe.json").is_file():
        print(f"error: {args.run} is not a finished image-fashion run", file=sys.stderr)
        return 2
    began = time.perf_counter()
    train_x, train_y = load_fashion_mnist("train", args.data_dir)
    test_x, test_y = load_fashion_mnist("test", args.data_dir)
    judge = train_judge(train_x, train_y, args.out / "judge")
    judge_test = float(agreement(judge, test_x, test_y).mean())
    print(f"judge accuracy on the real test split: {judge_test:.4f}", flush=True)

    codec, model, config = load_trained(args.run)
    bundled = FashionClassifier(NUM_CLASSES)
    load_checkpoint(finished_checkpoint(args.run / "classifier"), {"classifier": bundled})
    bundled.eval()
    labels = torch.arange(NUM_CLASSES).repeat_interleave(args.samples // NUM_CLASSES)
    images = generate_images(codec, model, labels, make_recipe_sampler(config), seed=args.seed)
    judged = agreement(judge, images, labels)
    own = agreement(bundled, images, labels)
    per_class = [float(judged[labels == c].mean()) for c in range(NUM_CLASSES)]
    record = {
        "command": "python benchmarks/demo_judge.py " + " ".join(argv or sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "run": str(args.run),
        "generator": config.generator,
        "guidance_scale": config.guidance_scale,
        "samples": len(labels),
        "judge_parameters": sum(p.numel() for p in judge.parameters()),
        "judge_test_accuracy": judge_test,
        "judge_accuracy": float(judged.mean()),
        "judge_accuracy_interval_95": list(ratio_interval(judged)),
        "judge_accuracy_per_class": per_class,
        "bundled_classifier_accuracy": float(own.mean()),
        "bundled_classifier_accuracy_interval_95": list(ratio_interval(own)),
        "wall_seconds": time.perf_counter() - began,
    }
    low, high = record["judge_accuracy_interval_95"]
    print(
        f"judge accuracy on {len(labels)} samples: {record['judge_accuracy']:.3f} "
        f"({low:.3f}-{high:.3f}); bundled classifier: {record['bundled_classifier_accuracy']:.3f}"
    )
    print("per class: " + " ".join(f"{a:.2f}" for a in per_class))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

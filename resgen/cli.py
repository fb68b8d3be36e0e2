"""The ``resgen`` command line: list recipes, train one, sample from a trained run."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]


def _cmd_recipes(args: argparse.Namespace) -> int:
    from resgen.recipes import RECIPES

    for name, (module, description) in RECIPES.items():
        presets = ", ".join(importlib.import_module(module).PRESETS)
        print(f"{name:16s} {description} [presets: {presets}]")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from resgen.recipes import RECIPES

    if args.recipe not in RECIPES:
        print(f"unknown recipe {args.recipe!r}; available: {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    module = importlib.import_module(RECIPES[args.recipe][0])
    if args.preset not in module.PRESETS:
        print(
            f"unknown preset {args.preset!r} for {args.recipe}; "
            f"available: {', '.join(module.PRESETS)}",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out or f"runs/{args.recipe}-{args.preset}")
    metrics = module.run(out, module.PRESETS[args.preset], data_dir=args.data_dir)
    print(json.dumps(metrics, indent=2))
    print(f"wrote {out}/samples.png, {out}/metrics.json, {out}/loss.png")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from resgen.recipes.image_fashion import (
        NUM_CLASSES,
        generate_images,
        load_trained,
        make_sampler,
    )
    from resgen.recipes.plots import save_image_grid

    try:
        classes = [int(c) for c in args.classes.split(",") if c.strip()]
    except ValueError:
        print(f"--classes must be comma-separated integers, got {args.classes!r}", file=sys.stderr)
        return 2
    if not classes or min(classes) < 0 or max(classes) >= NUM_CLASSES:
        print(f"--classes must name classes in 0..{NUM_CLASSES - 1}", file=sys.stderr)
        return 2
    codec, model, config = load_trained(args.checkpoint)
    labels = torch.tensor(classes).repeat_interleave(args.per_class)
    images = generate_images(codec, model, labels, make_sampler(config), seed=args.seed)
    save_image_grid(images, args.out, rows=len(classes))
    print(f"wrote {args.out} ({len(classes)} rows x {args.per_class} samples)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``resgen`` command (sub-commands ``recipes``, ``train``,
    ``sample`` and ``eval``)."""
    parser = argparse.ArgumentParser(prog="resgen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("recipes", help="list the bundled recipes").set_defaults(func=_cmd_recipes)

    train = sub.add_parser("train", help="run a recipe (resumes when --out already holds a run)")
    train.add_argument("recipe", help="recipe name, see `resgen recipes`")
    train.add_argument("--preset", default="demo", help="preset of the recipe (default: demo)")
    train.add_argument("--out", default=None, help="output folder (default: runs/RECIPE-PRESET)")
    train.add_argument("--data-dir", default=None, help="folder of the data set's files")
    train.set_defaults(func=_cmd_train)

    sample = sub.add_parser("sample", help="sample a class-conditional grid from a trained run")
    sample.add_argument("--checkpoint", required=True, help="the run folder (--out of train)")
    sample.add_argument(
        "--classes", required=True, help="comma-separated class indices, e.g. 0,3,7"
    )
    sample.add_argument("--out", required=True, help="PNG file to write")
    sample.add_argument("--per-class", type=int, default=10, help="samples per class (a row each)")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=_cmd_sample)

    try:
        from resgen.eval.cli import add_eval_parser
    except ImportError:
        pass
    else:
        add_eval_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``resgen`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``resgen`` command line: list recipes, train one, sample from a trained run, speak."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]


def _cmd_recipes(args: argparse.Namespace) -> int:
    from resgen.recipes import RECIPES, load_recipe

    for name, (_, description) in RECIPES.items():
        presets = ", ".join(load_recipe(name).PRESETS)
        print(f"{name:16s} {description} [presets: {presets}]")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from resgen.recipes import RECIPES, load_recipe

    if args.recipe not in RECIPES:
        print(f"unknown recipe {args.recipe!r}; available: {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    recipe = load_recipe(args.recipe)
    if args.preset not in recipe.PRESETS:
        print(
            f"unknown preset {args.preset!r} for {args.recipe}; "
            f"available: {', '.join(recipe.PRESETS)}",
            file=sys.stderr,
        )
        return 2
    overrides = {k: v for k, v in (("generator", args.model), ("depth", args.depth)) if v}
    config = recipe.configure(args.preset, **overrides)
    suffix = "".join(f"-{v}" for v in overrides.values())
    out = Path(args.out or f"runs/{args.recipe}-{args.preset}{suffix}")
    # every recipe checks the device before any work (an unknown one, or one it does not run on)
    metrics = recipe.run(out, config, data_dir=args.data_dir, device=args.device)
    print(json.dumps(metrics, indent=2))
    print(f"wrote {out}: metrics.json, loss.png and the samples")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from resgen.recipes.image_fashion import (
        NUM_CLASSES,
        generate_images,
        load_trained,
        make_recipe_sampler,
    )
    from resgen.training.plots import save_image_grid

    try:
        classes = [int(c) for c in args.classes.split(",") if c.strip()]
    except ValueError:
        print(f"--classes must be comma-separated integers, got {args.classes!r}", file=sys.stderr)
        return 2
    if not classes or min(classes) < 0 or max(classes) >= NUM_CLASSES:
        print(f"--classes must name classes in 0..{NUM_CLASSES - 1}", file=sys.stderr)
        return 2
    codec, model, config = load_trained(args.checkpoint, device=args.device)
    labels = torch.tensor(classes).repeat_interleave(args.per_class)
    images = generate_images(
        codec, model, labels, make_recipe_sampler(config), seed=args.seed, device=args.device
    )
    save_image_grid(images, args.out, rows=len(classes))
    print(f"wrote {args.out} ({len(classes)} rows x {args.per_class} samples)")
    return 0


def _cmd_tts(args: argparse.Namespace) -> int:
    from attrs import evolve

    from resgen.data.audio_io import load_audio, write_wav
    from resgen.diffusion.guidance import ClassifierFreeGuidance
    from resgen.diffusion.sampler import ResGenSampler
    from resgen.recipes.tts_synth import load_trained
    from resgen.tts.synthesis import synthesize

    trained = load_trained(args.checkpoint)
    codec, config = trained.codec, trained.config
    prompt, rate = load_audio(args.prompt)
    prompt_text = args.prompt_text
    if prompt_text is None:
        try:
            from resgen.eval.asr import WhisperRecognizer

            prompt_text = WhisperRecognizer().transcribe(prompt, rate)
        except ModuleNotFoundError as error:
            print(f"--prompt-text is needed (the prompt's transcript): {error}", file=sys.stderr)
            return 2
        print(f"prompt transcript (Whisper): {prompt_text!r}")
    scale = config.guidance_scale if args.guidance is None else args.guidance
    changes = {"steps": args.steps, "temperature": args.temperature}
    sampler = ResGenSampler(
        evolve(config.sampler, **{k: v for k, v in changes.items() if v is not None}),
        guider=ClassifierFreeGuidance(scale) if scale != 1 else None,
    )
    audio = synthesize(
        codec,
        trained.model,
        trained.front_end,
        args.text,
        prompt,
        rate,
        prompt_text,
        sampler=sampler,
        frames=args.frames,
        duration=trained.duration,
        aligner=trained.aligner,
        vocoder_iterations=config.vocoder_iterations,
        seed=args.seed,
    )
    write_wav(args.out, audio, codec.sample_rate)
    print(f"wrote {args.out} ({audio.numel() / codec.sample_rate:.2f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``resgen`` command (sub-commands ``recipes``, ``train``,
    ``sample``, ``tts`` and ``eval``)."""
    parser = argparse.ArgumentParser(prog="resgen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("recipes", help="list the bundled recipes").set_defaults(func=_cmd_recipes)

    train = sub.add_parser("train", help="run a recipe (resumes when --out already holds a run)")
    train.add_argument("recipe", help="recipe name, see `resgen recipes`")
    train.add_argument("--preset", default="demo", help="preset of the recipe (default: demo)")
    train.add_argument("--out", default=None, help="output folder (default: runs/RECIPE-PRESET)")
    train.add_argument("--data-dir", default=None, help="folder of the data set's files")
    train.add_argument(
        "--model",
        default=None,
        choices=("resgen", "token", "ar"),
        help="generator to train (image recipe): ResGen or a baseline on the same tokens",
    )
    train.add_argument("--depth", type=int, default=None, help="RVQ depth of the codec")
    train.add_argument(
        "--device",
        default="cpu",
        help="torch device to train on: cpu (default), cuda, cuda:1, ... (image recipe); a run "
        "folder resumes on any device",
    )
    train.set_defaults(func=_cmd_train)

    sample = sub.add_parser("sample", help="sample a class-conditional grid from a trained run")
    sample.add_argument("--checkpoint", required=True, help="the run folder (--out of train)")
    sample.add_argument(
        "--classes", required=True, help="comma-separated class indices, e.g. 0,3,7"
    )
    sample.add_argument("--out", required=True, help="PNG file to write")
    sample.add_argument("--per-class", type=int, default=10, help="samples per class (a row each)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--device", default="cpu", help="torch device to sample on: cpu (default), cuda, cuda:1..."
    )
    sample.set_defaults(func=_cmd_sample)

    tts = sub.add_parser("tts", help="zero-shot text-to-speech from a trained tts-synth run")
    tts.add_argument("--checkpoint", required=True, help="the run folder (--out of train)")
    tts.add_argument("--text", required=True, help="what to say (English)")
    tts.add_argument("--prompt", required=True, help="a few seconds of the voice (WAV, 16 kHz)")
    tts.add_argument(
        "--prompt-text",
        default=None,
        help="the prompt's transcript (default: transcribed with Whisper when installed)",
    )
    tts.add_argument("--out", required=True, help="WAV file to write")
    tts.add_argument("--steps", type=int, default=None, help="sampling steps T (default: run's)")
    tts.add_argument("--guidance", type=float, default=None, help="guidance scale on the text")
    tts.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="Gaussian temperature of the sampler (default: the run's; 0 = the means)",
    )
    tts.add_argument(
        "--frames",
        type=int,
        default=None,
        help="latent frames (default: the duration model at the prompt's rate)",
    )
    tts.add_argument("--seed", type=int, default=0)
    tts.set_defaults(func=_cmd_tts)

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

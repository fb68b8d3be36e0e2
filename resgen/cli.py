"""The ``resgen`` command line: list recipes, train one, sample from a trained run, speak.

Every input is checked before any work: numeric flags by their argparse types
(:func:`positive_int`, :func:`non_negative_float`), output paths by
:func:`~resgen.files.check_output_file`, run folders and files where they are read. A bad one
ends the command with ``resgen: error: ...`` on one line and exit status 2 (the rule is
:data:`resgen.errors.USER_ERRORS`); a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

__all__ = [
    "main",
    "build_parser",
    "run_command",
    "positive_int",
    "OneLineErrorParser",
    "non_negative_float",
    "MIN_PROMPT_SECONDS",
]

MIN_PROMPT_SECONDS = 0.5
"""The shortest voice prompt ``resgen tts`` accepts: below it the prompt holds too few frames to
carry a voice (the recipes prompt with 1.5-3 s)."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other ``resgen`` error
    (the usage itself is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` to stderr and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (``--depth 0`` is an error, not the default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _cmd_recipes(args: argparse.Namespace) -> int:
    from resgen.recipes import RECIPES, load_recipe

    for name, (_, description) in RECIPES.items():
        presets = ", ".join(load_recipe(name).PRESETS)
        print(f"{name:16s} {description} [presets: {presets}]")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from resgen.recipes import RECIPES, load_recipe

    if args.recipe not in RECIPES:
        raise ValueError(f"unknown recipe {args.recipe!r}; available: {', '.join(RECIPES)}")
    recipe = load_recipe(args.recipe)
    if args.preset not in recipe.PRESETS:
        raise ValueError(
            f"unknown preset {args.preset!r} for {args.recipe}; "
            f"available: {', '.join(recipe.PRESETS)}"
        )
    overrides = {
        k: v for k, v in (("generator", args.model), ("depth", args.depth)) if v is not None
    }
    config = recipe.configure(args.preset, **overrides)
    from attrs import evolve

    if args.guidance is not None:
        if not hasattr(config, "guidance_scale"):
            raise ValueError(f"the {args.recipe} recipe takes no --guidance")
        config = evolve(config, guidance_scale=args.guidance)
    if args.steps is not None:
        if not hasattr(config, "sampler"):
            raise ValueError(f"the {args.recipe} recipe takes no --steps")
        config = evolve(config, sampler=evolve(config.sampler, steps=args.steps))
    for option in ("reference", "tokenizer"):
        if getattr(args, option) is not None:
            if not hasattr(config, option):
                raise ValueError(f"the {args.recipe} recipe takes no --{option}")
            config = evolve(config, **{option: getattr(args, option)})
    suffix = "".join(f"-{v}" for v in overrides.values())
    out = Path(args.out or f"runs/{args.recipe}-{args.preset}{suffix}")
    from resgen.training import distributed

    # under torchrun every process runs this; rank 0 writes the run folder and reports
    distributed.init_from_env(args.device)
    writer = distributed.is_main()
    try:
        # every recipe checks the device before any work (an unknown one, or one it does not
        # run on)
        metrics = recipe.run(out, config, data_dir=args.data_dir, device=args.device)
    finally:
        distributed.release()
    if writer:
        print(json.dumps(metrics, indent=2))
        print(f"wrote {out}: metrics.json, loss.png and the samples")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from resgen.files import check_output_file
    from resgen.recipes.image_fashion import (
        generate_images,
        load_trained,
        make_recipe_sampler,
        run_classes,
    )
    from resgen.training.plots import WRITABLE_IMAGE_SUFFIXES, save_image_grid
    from resgen.training.trainer import resolve_device

    resolve_device(args.device)  # the machine's flags, then the paths, before any work
    check_output_file(args.out, WRITABLE_IMAGE_SUFFIXES)
    try:
        classes = [int(c) for c in args.classes.split(",") if c.strip()]
    except ValueError:
        raise ValueError(
            f"--classes must be comma-separated integers, got {args.classes!r}"
        ) from None
    if not classes:
        raise ValueError("--classes must name at least one class")
    if not (Path(args.checkpoint) / "recipe.json").is_file():
        raise FileNotFoundError(
            f"{args.checkpoint} is not a finished image-fashion run (no recipe.json)"
        )
    names = run_classes(args.checkpoint)  # Fashion-MNIST's ten, or the run's own folders
    if min(classes) < 0 or max(classes) >= len(names):
        listed = ", ".join(f"{i} {name}" for i, name in enumerate(names))
        raise ValueError(f"--classes must name classes in 0..{len(names) - 1} ({listed})")
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
    from resgen.files import check_output_file
    from resgen.recipes.tts_synth import load_trained
    from resgen.tts.synthesis import synthesize

    check_output_file(args.out, (".wav",))
    prompt, rate = load_audio(args.prompt)
    if prompt.numel() < MIN_PROMPT_SECONDS * rate:
        raise ValueError(
            f"--prompt {args.prompt} is {prompt.numel() / rate:.2f} s long; give at least "
            f"{MIN_PROMPT_SECONDS} s of the voice (1.5-3 s works best)"
        )
    trained = load_trained(args.checkpoint)
    codec, config = trained.codec, trained.config
    prompt_text = args.prompt_text
    if prompt_text is None:
        try:
            from resgen.eval.asr import WhisperRecognizer

            prompt_text = WhisperRecognizer().transcribe(prompt, rate)
        except ModuleNotFoundError as error:
            raise ValueError(
                f"--prompt-text is needed (the prompt's transcript): {error}"
            ) from None
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
    parser = OneLineErrorParser(prog="resgen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("recipes", help="list the bundled recipes").set_defaults(func=_cmd_recipes)

    train = sub.add_parser("train", help="run a recipe (resumes when --out already holds a run)")
    train.add_argument("recipe", help="recipe name, see `resgen recipes`")
    train.add_argument("--preset", default="demo", help="preset of the recipe (default: demo)")
    train.add_argument("--out", default=None, help="output folder (default: runs/RECIPE-PRESET)")
    train.add_argument(
        "--data-dir",
        default=None,
        help="folder of the data set's files; for image-fashion also a folder of your own "
        "images, one sub-folder per class",
    )
    train.add_argument(
        "--model",
        default=None,
        choices=("resgen", "token", "ar"),
        help="generator to train (image recipe): ResGen or a baseline on the same tokens",
    )
    train.add_argument("--depth", type=positive_int, default=None, help="RVQ depth of the codec")
    train.add_argument(
        "--device",
        default="cpu",
        help="torch device to train on: cpu (default), cuda, cuda:1, ... (every recipe; under "
        "torchrun, cuda is each process's cuda:LOCAL_RANK); a run folder resumes on any device",
    )
    train.add_argument(
        "--guidance",
        type=non_negative_float,
        default=None,
        help="classifier-free guidance scale of the samples (default: the preset's)",
    )
    train.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="sampling steps of the samples (default: the preset's)",
    )
    train.add_argument(
        "--reference",
        default=None,
        help="ADM reference batch (.npz with arr_0, mu, sigma) to evaluate against (imagenet)",
    )
    train.add_argument(
        "--tokenizer",
        default=None,
        help="a finished tokenizer checkpoint folder to use instead of training one (imagenet)",
    )
    train.set_defaults(func=_cmd_train)

    sample = sub.add_parser("sample", help="sample a class-conditional grid from a trained run")
    sample.add_argument("--checkpoint", required=True, help="the run folder (--out of train)")
    sample.add_argument(
        "--classes",
        required=True,
        help="comma-separated class indices, e.g. 0,3,7 (a run's classes are listed in its "
        "recipe.json; Fashion-MNIST's ten by default)",
    )
    sample.add_argument(
        "--out", required=True, help="image file to write (.png, .jpg, .webp, .bmp, .tif)"
    )
    sample.add_argument(
        "--per-class", type=positive_int, default=10, help="samples per class (a row each)"
    )
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
    tts.add_argument(
        "--steps", type=positive_int, default=None, help="sampling steps T (default: run's)"
    )
    tts.add_argument(
        "--guidance", type=non_negative_float, default=None, help="guidance scale on the text"
    )
    tts.add_argument(
        "--temperature",
        type=non_negative_float,
        default=None,
        help="Gaussian temperature of the sampler (default: the run's; 0 = the means)",
    )
    tts.add_argument(
        "--frames",
        type=positive_int,
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


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command; a user's error (:data:`~resgen.errors.USER_ERRORS`) becomes one line
    ``resgen: error: ...`` on stderr and exit status 2, an interrupt exit status 130."""
    from resgen.errors import USER_ERRORS, describe

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        print(f"resgen: error: {describe(error)}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``resgen`` console script; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # a usage error (one line, status 2) or --help (status 0)
        return done.code if isinstance(done.code, int) else 2
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())

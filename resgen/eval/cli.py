"""``resgen eval``: the command-line evaluators (``fid``, ``wer``, ``sim``).

:func:`add_eval_parser` adds the ``eval`` sub-command to the ``resgen`` parser; each leaf sets
``func`` to a callable ``(args) -> int`` (the exit status). Results go to stdout, one
``name: value`` line each (and as JSON with ``--json``); progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from resgen.cli import OneLineErrorParser, positive_int, run_command

__all__ = ["add_eval_parser", "run_fid", "run_wer", "run_sim"]


def add_eval_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval {fid,wer,sim}`` to a ``resgen`` argparse sub-parser collection.

    Args:
        subparsers: what ``parser.add_subparsers()`` returned.
    """
    eval_parser = subparsers.add_parser(
        "eval", help="evaluate samples (FID, WER/CER, speaker similarity), fully offline"
    )
    commands = eval_parser.add_subparsers(dest="eval_command", metavar="{fid,wer,sim}")
    commands.required = True

    fid = commands.add_parser(
        "fid",
        help="Fréchet distance between two image sets",
        description="Fréchet (Inception) distance between a real and a generated image set. "
        "Each side is a folder of images, an IDX image file (e.g. Fashion-MNIST's "
        "*-images-idx3-ubyte.gz) or, for --real, an .npz of cached statistics.",
    )
    fid.add_argument("--real", required=True, help="folder, IDX file or .npz statistics")
    fid.add_argument("--fake", required=True, help="folder or IDX file (or .npz statistics)")
    fid.add_argument("--features", choices=("inception", "fashion"), default="inception")
    fid.add_argument(
        "--classifier",
        help="trained resgen.eval.classifier.FashionClassifier: the image recipe's run folder "
        "(its classifier/final/ weights), a checkpoint folder, a .safetensors file or a torch "
        "state dict; required with --features fashion",
    )
    fid.add_argument(
        "--limit-real", type=positive_int, default=None, help="use the first N real images"
    )
    fid.add_argument(
        "--limit-fake", type=positive_int, default=None, help="use the first N fake images"
    )
    fid.add_argument("--save-real", help="write the real statistics to this .npz")
    fid.add_argument("--save-fake", help="write the fake statistics to this .npz")
    fid.add_argument(
        "--precision-recall",
        action="store_true",
        help="also report k-NN precision and recall (needs images on both sides)",
    )
    fid.add_argument("--k", type=positive_int, default=3, help="neighbours for precision/recall")
    fid.add_argument(
        "--inception-score",
        action="store_true",
        help="also report the Inception Score of --fake, from the --classifier's softmax (the "
        "offline Inception file has no ImageNet classifier; see the Evaluation page)",
    )
    fid.add_argument(
        "--splits", type=positive_int, default=10, help="chunks of the Inception Score"
    )
    fid.add_argument("--batch-size", type=positive_int, default=50)
    fid.add_argument("--device", default="cpu")
    fid.add_argument("--json", action="store_true", help="print the results as one JSON object")
    fid.add_argument("--no-progress", action="store_true")
    fid.set_defaults(func=run_fid)

    wer = commands.add_parser(
        "wer",
        help="word and character error rates of synthesised speech",
        description="Transcribe every audio file of a folder with an offline ASR and score it "
        "against reference transcripts (normalised English text).",
    )
    wer.add_argument("--audio", required=True, help="folder of audio files (.wav, .flac, ...)")
    wer.add_argument(
        "--text",
        required=True,
        help="transcripts: one utterance per line, either 'ID text' or sphinx-style "
        "'text (ID)'; ID is the audio file name without its suffix",
    )
    wer.add_argument("--asr", choices=("whisper", "pocketsphinx"), default="whisper")
    wer.add_argument("--threads", type=positive_int, default=2, help="CPU threads of the ASR")
    wer.add_argument(
        "--beam-size",
        type=positive_int,
        default=1,
        help="Whisper's decoding beam (default 1: greedy, as the recipes score)",
    )
    wer.add_argument("--hypotheses", help="write the raw transcripts here, 'ID<TAB>text' lines")
    wer.add_argument("--json", action="store_true")
    wer.add_argument("--no-progress", action="store_true")
    wer.set_defaults(func=run_wer)

    sim = commands.add_parser(
        "sim",
        help="speaker similarity between generated and reference speech",
        description="Mean cosine similarity of Resemblyzer speaker embeddings between each "
        "audio file and its reference: the file of the same name in --reference when that "
        "is a folder, or the one --reference file for every audio file.",
    )
    sim.add_argument("--audio", required=True, help="folder of generated audio files")
    sim.add_argument("--reference", required=True, help="folder of references, or one file")
    sim.add_argument("--json", action="store_true")
    sim.add_argument("--no-progress", action="store_true")
    sim.set_defaults(func=run_sim)


def _print_results(results: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(results))
        return
    for key, value in results.items():
        print(f"{key}: {_shown(key, value)}")


def _shown(key: str, value: object) -> object:
    """A float with 6 decimals (but seconds), an interval as its two bounds."""
    if isinstance(value, tuple):
        return " ".join(str(_shown(key, v)) for v in value)
    return f"{value:.6f}" if isinstance(value, float) and key != "seconds" else value


def _classifier_weights(source: Path) -> Path:
    """The ``classifier.safetensors`` a ``--classifier`` path names: a run folder's finished
    classifier stage (``final/``, never ``latest/``; the rule of
    :func:`~resgen.training.checkpoint.finished_checkpoint`), a checkpoint folder, or a file."""
    from resgen.training.checkpoint import finished_checkpoint

    if source.is_dir():
        stage = source / "classifier" if (source / "classifier").is_dir() else source
        for folder in (source, stage):  # a checkpoint folder itself
            if (folder / "classifier.safetensors").is_file():
                return folder / "classifier.safetensors"
        return finished_checkpoint(stage) / "classifier.safetensors"
    if not source.is_file():
        raise FileNotFoundError(f"--classifier {source}: no such file or folder")
    return source


def _load_classifier(path: str | None, device: str):
    """A trained FashionClassifier from a run, a checkpoint folder, a .safetensors or a torch
    state dict (read with ``weights_only=True``: tensors only, no code)."""
    import torch

    if path is None:
        raise ValueError("--features fashion needs --classifier CHECKPOINT")
    from resgen.eval.classifier import FashionClassifier

    source = _classifier_weights(Path(path))
    try:
        if source.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(source), device="cpu")
        else:
            state = torch.load(source, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
        # as many classes as it was trained on (Fashion-MNIST's 10, or a folder's own)
        out_weight = state.get("out.weight") if isinstance(state, dict) else None
        model = FashionClassifier(int(out_weight.shape[0]) if out_weight is not None else 10)
        model.load_state_dict(state)
    except Exception as error:  # noqa: BLE001 - torch.load and the loaders raise many kinds
        raise ValueError(
            f"--classifier {source} is not a FashionClassifier's weights "
            f"({type(error).__name__}: {(str(error).splitlines() or [''])[0]})"
        ) from error
    return model


def run_fid(args: argparse.Namespace) -> int:
    """``resgen eval fid``: print the FID of two image sets (and optionally precision/recall, and
    the Inception Score of the generated set from a classifier's softmax).

    Args:
        args: the parsed command line.

    Returns:
        The exit status (0).
    """
    from resgen.data.image_io import load_images
    from resgen.eval.features import (
        ClassifierFeatures,
        InceptionFeatures,
        compute_features,
        to_unit_range,
    )
    from resgen.eval.frechet import FeatureStats, frechet_distance_from_features
    from resgen.eval.image_metrics import inception_score, precision_recall
    from resgen.files import check_output_file

    for target in (args.save_real, args.save_fake):
        if target:  # numpy appends .npz when it is missing
            check_output_file(target)
            check_output_file(target if target.endswith(".npz") else f"{target}.npz")
    start = time.perf_counter()
    if args.inception_score:  # checked before any work
        if args.classifier is None:
            raise ValueError("--inception-score needs --classifier CHECKPOINT (its softmax)")
        if args.fake.endswith(".npz"):
            raise ValueError(f"--inception-score needs images, not statistics: {args.fake}")
        scorer = _load_classifier(args.classifier, args.device).to(args.device).eval()
    if args.features == "inception":
        extractor = InceptionFeatures(device=args.device)
    else:
        extractor = ClassifierFeatures(
            _load_classifier(args.classifier, args.device), device=args.device
        )

    def side(source: str, limit: int | None, save: str | None, label: str):
        """Return (stats, features or None) of one side."""
        if source.endswith(".npz"):
            if args.precision_recall:
                raise ValueError(f"--precision-recall needs images, not statistics: {source}")
            stats = FeatureStats.load(source)
            if stats.extractor != extractor.name:
                raise ValueError(
                    f"{source} holds {stats.extractor!r} statistics, not {extractor.name!r}"
                )
            return stats, None
        images = load_images(source, limit)
        feats = compute_features(
            extractor,
            to_unit_range(images),
            batch_size=args.batch_size,
            progress=not args.no_progress,
            desc=label,
        )
        stats = FeatureStats.from_features(feats, extractor=extractor.name)
        if save:
            stats.save(save)
        return stats, feats

    real_stats, real_feats = side(args.real, args.limit_real, args.save_real, "real")
    fake_stats, fake_feats = side(args.fake, args.limit_fake, args.save_fake, "fake")
    if args.inception_score:
        import torch

        fake_images = to_unit_range(load_images(args.fake, args.limit_fake))
        with torch.no_grad():
            fake_probs = torch.cat(
                [
                    scorer(batch.to(args.device)).softmax(-1).cpu()
                    for batch in fake_images.split(args.batch_size)
                ]
            )
    if real_feats is not None and fake_feats is not None:
        # Same value; cheaper (and exact) when the sets are smaller than the feature dimension.
        fid = frechet_distance_from_features(real_feats, fake_feats)
    else:
        fid = real_stats.frechet_distance(fake_stats)
    results: dict[str, object] = {
        "fid": fid,
        "features": extractor.name,
        "real_count": real_stats.count,
        "fake_count": fake_stats.count,
    }
    if args.precision_recall:
        pr = precision_recall(real_feats, fake_feats, k=args.k)
        results["precision"] = pr.precision
        results["recall"] = pr.recall
    if args.inception_score:
        score = inception_score(fake_probs, splits=args.splits)
        results["inception_score"] = score.mean
        results["inception_score_std"] = score.std
    results["seconds"] = round(time.perf_counter() - start, 1)
    _print_results(results, args.json)
    return 0


def run_wer(args: argparse.Namespace) -> int:
    """``resgen eval wer``: transcribe a folder of audio and print WER and CER.

    Args:
        args: the parsed command line.

    Returns:
        The exit status (0).
    """
    from tqdm.auto import tqdm

    from resgen.data.audio_io import load_audio, match_audio_files, read_transcripts
    from resgen.eval.asr import PocketSphinxRecognizer, WhisperRecognizer
    from resgen.eval.text import character_error_rate, error_rate_interval, word_error_rate
    from resgen.files import atomic_write, check_output_file

    if args.hypotheses:
        check_output_file(args.hypotheses)
    start = time.perf_counter()
    transcripts = read_transcripts(args.text)
    pairs = match_audio_files(args.audio, transcripts)
    if args.asr == "whisper":
        recognizer = WhisperRecognizer(cpu_threads=args.threads, beam_size=args.beam_size)
    else:
        recognizer = PocketSphinxRecognizer()
    refs, hyps, lines = [], [], []
    for utt_id, path in tqdm(pairs, desc=args.asr, unit="utt", disable=args.no_progress):
        audio, rate = load_audio(path)
        hyp = recognizer.transcribe(audio, rate)
        refs.append(transcripts[utt_id])
        hyps.append(hyp)
        lines.append(f"{utt_id}\t{hyp}")
    if args.hypotheses:
        text = "\n".join(lines) + "\n"
        atomic_write(args.hypotheses, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    results = {
        "wer": word_error_rate(refs, hyps),
        "wer_interval_95": error_rate_interval(refs, hyps),
        "cer": character_error_rate(refs, hyps),
        "cer_interval_95": error_rate_interval(refs, hyps, unit="char"),
        "utterances": len(refs),
        "asr": recognizer.name,
        "seconds": round(time.perf_counter() - start, 1),
    }
    _print_results(results, args.json)
    return 0


def run_sim(args: argparse.Namespace) -> int:
    """``resgen eval sim``: print the mean speaker similarity to the references.

    Args:
        args: the parsed command line.

    Returns:
        The exit status (0).
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from resgen.data.audio_io import list_audio, load_audio
    from resgen.eval.bootstrap import ratio_interval
    from resgen.eval.speaker import ResemblyzerEncoder, cosine_similarity

    start = time.perf_counter()
    audio_files = list_audio(args.audio)
    reference = Path(args.reference)
    if reference.is_dir():
        refs = {p.stem: p for p in list_audio(reference)}
        pairs = [(p, refs[p.stem]) for p in audio_files if p.stem in refs]
        if not pairs:
            raise ValueError(f"no file of {args.audio} has a namesake in {reference}")
    elif reference.is_file():
        pairs = [(p, reference) for p in audio_files]
    else:
        raise FileNotFoundError(f"--reference is neither a folder nor a file: {reference}")
    encoder = ResemblyzerEncoder()
    cache: dict[Path, object] = {}

    def embed(path: Path):
        if path not in cache:
            audio = load_audio(path)
            try:
                cache[path] = encoder.embed(*audio)
            except ValueError as error:  # e.g. no speech in it: name the file
                raise ValueError(f"{path}: {error}") from error
        return cache[path]

    scores = [
        cosine_similarity(embed(a), embed(r))
        for a, r in tqdm(pairs, desc="speaker", unit="pair", disable=args.no_progress)
    ]
    results = {
        "similarity": float(np.mean(scores)),
        "similarity_interval_95": ratio_interval(torch.tensor(scores)),
        "std": float(np.std(scores)),
        "pairs": len(scores),
        "encoder": encoder.name,
        "seconds": round(time.perf_counter() - start, 1),
    }
    _print_results(results, args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``eval`` on its own (``python -m resgen.eval.cli fid ...``)."""
    parser = OneLineErrorParser(prog="resgen")
    add_eval_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", *(sys.argv[1:] if argv is None else argv)])
    return run_command(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""How the held-out targets' phone timing moves ResGen's words in a trained TTS run.

For a finished ``tts-synth --preset demo`` run (learned alignment), on the evaluation's
``(prompt, target)`` pairs of the held-out speakers (``--eval-per-speaker`` targets each; the
recipe scores 8), the targets' phones are timed four ways and ResGen speaks each (the run's
sampler, T = 16 at temperature 0; the length from the duration model at the prompt's rate unless
named; Griffin-Lim with the recipe's seeded phase; Whisper tiny.en, greedy, as the recipe scores):

- ``table``: the duration model's one cost per phone (the recipe's default, ``timing="table"``);
- ``predictor``: a :class:`~resgen.networks.duration_predictor.PhonemeDurationPredictor` trained
  on the aligner's durations of the training utterances, exactly as the recipe's
  ``timing="predictor"`` stage trains it (the run's own, when it has one);
- ``synthesizer``: the synthesiser's own timing of the target (an oracle the recipe never uses);
- ``synthesizer-true-length``: the same with the target's true length.

``--predictor-seeds`` adds rows ``predictor-seedN``: the same predictor trained with other
seeds, to show how much one training of it moves the WER.

It also prints how closely the table and the predictor time the held-out targets as the run's
aligner reads their recordings: the mean squared error of ``log(1 + frames)`` per phone, each
utterance's durations rescaled to the table's total (the predictor's training target).

Prints each figure and, last, one JSON line with all of them.

Usage::

    python experiments/tts_timing.py --run runs/tts-demo --data-dir runs/tts-demo/corpus
        [--eval-per-speaker 24] [--timings table,predictor,synthesizer,synthesizer-true-length]
        [--predictor-seeds 3,4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from attrs import evolve
from tts_probe import aligner_frames

from resgen.codecs.phonemes import PhonemeVocabulary
from resgen.codecs.vocoder import GriffinLimVocoder
from resgen.data.audio_io import load_audio, write_wav
from resgen.data.manifest import read_manifest
from resgen.data.speech_corpus.phone_alignments import corpus_alignments
from resgen.diffusion.sampler import ResGenSampler
from resgen.networks.duration import PhonemeTiming
from resgen.networks.duration_predictor import PhonemeDurationPredictor
from resgen.recipes import tts_synth, tts_synth_config
from resgen.training.checkpoint import load_checkpoint, read_config
from resgen.tts import batches, synthesis
from resgen.tts.front_ends import SpokenText, spoken_alignment
from resgen.tts.timing import timed_text, train_duration_predictor

TIMINGS = ("table", "predictor", "synthesizer", "synthesizer-true-length")


def predictor_of(
    run: Path,
    config: tts_synth_config.TTSSynthConfig,
    train: list[batches.Utterance],
    frames,
    table,
    seed: int,
) -> PhonemeDurationPredictor:
    """A duration predictor trained as the recipe's stage trains it, with ``seed``: the run's own
    when it has one and ``seed`` is the recipe's, else one trained under ``run/timing_benchmark``
    (never into the run's own folders)."""
    own = run / "timing"
    if seed == config.seed + 2 and (own / "final").exists():
        folder = own
    else:
        folder = run / "timing_benchmark" / f"predictor_seed{seed}"
    vocabulary = len(table.cost)
    if (folder / "final").exists():
        settings = read_config(folder / "final")["duration_predictor"]
        predictor = PhonemeDurationPredictor(vocabulary, **settings)
        load_checkpoint(folder / "final", {"predictor": predictor})
        return predictor.eval()
    predictor, _ = train_duration_predictor(
        [u.text.ids for u in train],
        [frames[u.record.id] for u in train],
        table,
        vocabulary,
        folder,
        config.timing_stage,
        seed=seed,
        **config.timing_predictor,
    )
    return predictor


def held_out_error(table, pairs, frames, durations_of) -> float:
    """Mean over targets of the per-phone squared error of ``log(1 + frames)``."""
    errors = []
    for _, target in pairs:
        ids = target.text.ids
        truth = frames[target.record.id].double()
        truth = truth * table.cost_of(ids) / float(truth.sum())
        errors.append(float(((durations_of(ids).double().log1p() - truth.log1p()) ** 2).mean()))
    return float(np.mean(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished --preset demo run")
    parser.add_argument("--data-dir", required=True, help="its corpus")
    parser.add_argument("--eval-per-speaker", type=int, default=24, help="targets per speaker")
    parser.add_argument("--timings", default=",".join(TIMINGS), help="timings to speak with")
    parser.add_argument(
        "--predictor-seeds",
        default="",
        help="more seeds to train the predictor with (rows predictor-seedN): how much one "
        "training of it moves the WER",
    )
    args = parser.parse_args()
    timings = [t for t in args.timings.split(",") if t]
    unknown = sorted(set(timings) - set(TIMINGS))
    if unknown:
        raise SystemExit(f"--timings: unknown {unknown}; choose from {list(TIMINGS)}")
    run, corpus = Path(args.run), Path(args.data_dir)
    trained = tts_synth.load_trained(run)
    if trained.config.text_alignment != "learned" or trained.duration is None:
        raise SystemExit(f"{run} is not a learned-alignment run (--preset demo)")
    if not (run / "tokens.safetensors").is_file():
        raise SystemExit(f"{run} has no tokens.safetensors: is it a finished run?")
    codec, model, table = trained.codec, trained.model, trained.duration
    config = evolve(tts_synth_config.PRESETS["demo"], eval_per_speaker=args.eval_per_speaker)
    records = read_manifest(corpus / "manifest.jsonl")
    vocabulary = PhonemeVocabulary.load(run / "phonemes.json")
    synthesized = {
        k: spoken_alignment(a, vocabulary) for k, a in corpus_alignments(corpus, records).items()
    }
    # the synthesisers' phones, as the run's aligner reads each recording (the recipe's texts)
    frames = aligner_frames(trained, corpus, records, synthesized)
    texts = {k: timed_text(synthesized[k].ids, f) for k, f in frames.items()}
    utterances = batches.tokenize(codec, records, [], texts, run / "tokens.safetensors")
    train = [u for u in utterances if u.record.split == "train"]
    test = [u for u in utterances if u.record.split == "test"]
    pairs = tts_synth.choose_eval_items(test, config, codec.frame_rate)
    print(f"{len(pairs)} held-out targets of {len({t.record.speaker for _, t in pairs})} speakers")

    results: dict[str, float] = {}
    # what times each row's targets (the synthesiser rows: its own timing); the table always, as
    # the reference of the held-out error
    timers: dict[str, PhonemeTiming] = {"table": table}
    seeds = {"predictor": config.seed + 2} if "predictor" in timings else {}
    seeds |= {f"predictor-seed{s}": int(s) for s in args.predictor_seeds.split(",") if s}
    for name, seed in seeds.items():
        timers[name] = predictor_of(run, config, train, frames, table, seed)
    for name, timing in timers.items():
        durations = (lambda ids: table.cost[ids]) if timing is table else timing.durations
        results[f"{name}_held_out_mse"] = held_out_error(table, pairs, frames, durations)
        print(f"{name}: held-out log(1 + frames) MSE {results[f'{name}_held_out_mse']:.4f}")
    spoken = timings + [name for name in seeds if name not in timings]

    from resgen.eval.asr import WhisperRecognizer
    from resgen.eval.text import character_error_rate, word_error_rate

    asr = WhisperRecognizer()
    refs = [t.record.text for _, t in pairs]
    vocoder = GriffinLimVocoder(
        codec.config.mel, iterations=config.vocoder_iterations, seed=config.seed
    )
    recipe_per_speaker = tts_synth_config.PRESETS["demo"].eval_per_speaker
    seen: dict[str, int] = {}
    rank = []  # each target's place among its speaker's targets
    for _, t in pairs:
        rank.append(seen.get(t.record.speaker, 0))
        seen[t.record.speaker] = rank[-1] + 1
    model_lengths = [
        synthesis.predict_frames(p.text, len(p.tokens), t.text, table) for p, t in pairs
    ]
    for name in spoken:
        timing = timers.get(name)
        targets = [
            SpokenText(t.text.ids, timing.ends(t.text.ids)) if timing else synthesized[t.record.id]
            for _, t in pairs
        ]
        lengths = (
            [len(t.tokens) for _, t in pairs] if name.endswith("true-length") else model_lengths
        )
        sampler = ResGenSampler(trained.config.sampler)
        generator = torch.Generator().manual_seed(config.seed + 10)
        hyps = []
        with torch.no_grad():
            for start in range(0, len(pairs), 8):
                part = slice(start, start + 8)
                tokens = synthesis.generate_resgen(
                    model,
                    codec,
                    sampler,
                    [p.tokens for p, _ in pairs[part]],
                    [(p.text, t) for (p, _), t in zip(pairs[part], targets[part])],
                    lengths[part],
                    generator,
                )
                for k, each in enumerate(tokens):
                    # scored as written (16-bit), like the recipe's rows
                    path = run / "timing_benchmark" / name / f"{start + k}.wav"
                    write_wav(path, synthesis.waveform(codec, each, vocoder), codec.sample_rate)
                    hyps.append(asr.transcribe(load_audio(path)[0], codec.sample_rate))
        results[f"{name}_wer"] = word_error_rate(refs, hyps)
        results[f"{name}_cer"] = character_error_rate(refs, hyps)
        # the recipe's own targets: the first eval_per_speaker of each speaker
        first = [i for i, k in enumerate(rank) if k < recipe_per_speaker]
        results[f"{name}_wer_recipe_targets"] = word_error_rate(
            [refs[i] for i in first], [hyps[i] for i in first]
        )
        print(
            f"{name}: WER {results[f'{name}_wer']:.3f} CER {results[f'{name}_cer']:.3f}; "
            f"on the recipe's {len(first)} targets WER "
            f"{results[f'{name}_wer_recipe_targets']:.3f}",
            flush=True,
        )
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()

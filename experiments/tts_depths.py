"""Which RVQ depths carry a trained TTS run's words, and how well ResGen fills them in.

For a finished ``tts-synth`` run whose text is placed on the frames (``--preset demo`` or
``demo-aligned``), on the evaluation's ``(prompt, target)`` pairs of the held-out speakers
(``--split test``) or on the same kind of pairs of training speakers and sentences
(``--split train``), every target spoken by Griffin-Lim and transcribed by Whisper tiny.en:

1. **The codec truncated**: the targets' true tokens decoded from their first ``k`` depths only
   (their partial sum, a coarser approximation of the latent): how many words each depth adds.
2. **ResGen given the coarse depths**: the prompt given whole and the targets' true depths
   ``0 .. k-1`` given at every target position; ResGen's sampler (the run's settings) fills
   depths ``k .. D-1``. ``k = 0`` is ordinary synthesis at the true length. The targets'
   phonemes are timed by the aligner's reading of the recordings, so that the given depths and
   the text agree (the duration model's timing, which the recipe's evaluation uses, puts the
   text where the true tokens are not). On unseen voices the aligner times less regularly and
   ResGen speaks less clearly for it: the training split is the cleaner reading.
   ResGen's network was trained on known depths read from its own guess (scheduled sampling),
   never on the data's: the true depths it is given here are cleaner than what it was trained
   to correct.

Comparing the two rows locates the loss: where ResGen given ``k`` depths scores like the codec
truncated at ``k``, the depths it adds carry no words.

Prints each figure and, last, one JSON line with all of them.

Usage::

    python experiments/tts_depths.py --run runs/tts-synth-demo --data-dir runs/tts-synth-demo/corpus
        [--split train] [--truncate 2,4,6,8] [--given 0,2,4,6]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tts_probe import placed_texts

from resgen.codecs.vocoder import GriffinLimVocoder
from resgen.data.manifest import read_manifest
from resgen.diffusion.sampler import ResGenSampler
from resgen.recipes import tts_synth, tts_synth_config
from resgen.tts import batches, synthesis


def _depths(text: str) -> list[int]:
    return [int(k) for k in text.split(",") if k]


def evaluation_pairs(
    utterances: list[batches.Utterance], speakers: int, frame_rate: float
) -> list[tuple[batches.Utterance, batches.Utterance]]:
    """The evaluation's ``(prompt, target)`` pairs of ``speakers`` speakers spread evenly over
    the sorted speaker names (all of them when there are fewer)."""
    names = sorted({u.record.speaker for u in utterances})
    chosen = set(names[:: max(1, len(names) // speakers)][:speakers])
    kept = [u for u in utterances if u.record.speaker in chosen]
    return tts_synth.choose_eval_items(kept, tts_synth_config.PRESETS["demo"], frame_rate)


@torch.no_grad()
def complete_depths(
    trained: tts_synth.TrainedTTS,
    pairs: list[tuple[batches.Utterance, batches.Utterance]],
    given: int,
    seed: int,
) -> list[torch.Tensor]:
    """Target tokens ``[length_i, depth]`` with the true depths ``0 .. given-1`` kept and the
    rest sampled by ResGen (prompt given, true length and timing), in batches of 8."""
    codec, model = trained.codec, trained.model
    sampler = ResGenSampler(trained.config.sampler)
    generator = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    for start in range(0, len(pairs), 8):
        part = pairs[start : start + 8]
        batch = batches.pair_batch(part)
        known = torch.where(batch.given, codec.depth, given).masked_fill(batch.padding, 0)
        tokens = synthesis.sample_batch(model, codec, sampler, batch, known, generator)
        out += [
            tokens[i, len(p.tokens) : len(p.tokens) + len(t.tokens)]
            for i, (p, t) in enumerate(part)
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished demo or demo-aligned run")
    parser.add_argument("--data-dir", required=True, help="its corpus")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--speakers", type=int, default=6, help="speakers (spread evenly)")
    parser.add_argument("--truncate", default="2,4,6,8", help="depths the codec decodes")
    parser.add_argument("--given", default="0,2,4,6", help="true depths given to ResGen")
    parser.add_argument("--seed", type=int, default=10, help="seed of ResGen's sampling")
    args = parser.parse_args()
    run, corpus = Path(args.run), Path(args.data_dir)
    trained = tts_synth.load_trained(run)
    codec = trained.codec
    for flag, low in (("truncate", 1), ("given", 0)):
        for k in _depths(getattr(args, flag)):
            if not low <= k <= codec.depth:
                raise SystemExit(f"--{flag} {k} is outside {low}..{codec.depth}, the codec's depth")
    if not (run / "tokens.safetensors").is_file():
        raise SystemExit(f"{run} has no tokens.safetensors: is it a finished run?")
    records = read_manifest(corpus / "manifest.jsonl")
    split = [r for r in records if r.split == args.split]
    texts = placed_texts(trained, run, corpus, split)
    # the run's token cache holds every utterance of the corpus: no mels needed
    utterances = batches.tokenize(codec, records, [], texts, run / "tokens.safetensors")
    pairs = evaluation_pairs(utterances, args.speakers, codec.frame_rate)
    refs = [t.record.text for _, t in pairs]
    print(
        f"{len(pairs)} targets of {len({t.record.speaker for _, t in pairs})} {args.split} speakers"
    )

    from resgen.eval.asr import WhisperRecognizer
    from resgen.eval.text import word_error_rate

    asr = WhisperRecognizer()
    vocoder = GriffinLimVocoder(codec.config.mel, iterations=trained.config.vocoder_iterations)

    def spoken_wer(tokens: list[torch.Tensor]) -> float:
        hyps = []
        for t in tokens:
            mels, _ = codec.decode(t[None], partial=True)
            hyps.append(asr.transcribe(vocoder(mels)[0], codec.sample_rate))
        return word_error_rate(refs, hyps)

    results: dict[str, float] = {}
    with torch.no_grad():
        for k in _depths(args.truncate):
            results[f"codec_first_{k}_depths_wer"] = wer = spoken_wer(
                [t.tokens[:, :k] for _, t in pairs]
            )
            print(f"codec, first {k} depths of the true tokens: WER {wer:.3f}", flush=True)
        for k in _depths(args.given):
            tokens = complete_depths(trained, pairs, k, args.seed)
            results[f"resgen_given_{k}_depths_wer"] = wer = spoken_wer(tokens)
            given = f"the true depths 0..{k - 1}" if k else "no true depth"
            print(f"ResGen given {given}: WER {wer:.3f}", flush=True)
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()

"""What a trained aligned TTS run has learned, against the simplest predictor of its tokens.

For a finished ``tts-synth`` run of the aligned variant (``--preset demo-aligned``), every
latent frame has a phone label (the synthesiser's timing). This script measures:

1. **The phone table**: the mean and variance of the codec's cumulative embedding per phone,
   fitted on the training utterances. On the held-out speakers' frames it prints the fraction of
   variance the phone alone explains (R^2) and the Gaussian NLL per code dimension, next to a
   single global Gaussian's.
2. **The phone table spoken**: each held-out target's frames set to its phones' mean embeddings
   (true timing, no network, no speaker), quantised, decoded and vocoded, then transcribed by
   Whisper tiny.en (WER, CER), next to the codec resynthesis of the same targets.
3. **The network at full masking**: the exact mixture NLL per code dimension of ResGen's
   network when every target depth is masked and the prompt is given, on fixed batches of the
   held-out speakers (with their own text, and with another row's text) and of the training
   speakers. A gap between the two sets is over-fitting; a small gap between own and other
   text means the network barely reads the text.

Prints each figure and, last, one JSON line with all of them.

Usage::

    python benchmarks/tts_probe.py --run runs/tts-aligned --data-dir PATH/TO/corpus [--decode 12]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch import Tensor

from resgen.codecs.mel_rvqvae import MelRVQVAE
from resgen.codecs.phonemes import PhonemeVocabulary
from resgen.codecs.vocoder import GriffinLimVocoder
from resgen.diffusion.masking import split_embeddings
from resgen.diffusion.mixture import mixture_log_prob
from resgen.networks.tts_transformer import TEXT_LABEL, TextToSpeechTransformer, spread_text
from resgen.recipes import tts_synth
from resgen.recipes.tts_alignment import corpus_alignments, spoken_alignment
from resgen.recipes.tts_corpus import read_manifest


def frame_table(codec: MelRVQVAE, utterances: list[tts_synth.Utterance]) -> tuple[Tensor, Tensor]:
    """Phone id ``[frames]`` and cumulative embedding ``[frames, dim]`` of every frame."""
    labels = [u.text.ids[spread_text([u.segment], len(u.tokens))] for u in utterances]
    embeddings = [codec.quantizer.embed(u.tokens[None]).sum(-2)[0] for u in utterances]
    return torch.cat(labels), torch.cat(embeddings)


def gaussian_nll(mean: Tensor, var: Tensor, x: Tensor) -> float:
    """Mean diagonal-Gaussian NLL per dimension."""
    return float((0.5 * (math.log(2 * math.pi) + var.log() + (x - mean) ** 2 / var)).mean())


def full_mask_nll(
    model: TextToSpeechTransformer,
    codec: MelRVQVAE,
    batch: tts_synth.TTSBatch,
    other_text: bool = False,
) -> float:
    """Exact mixture NLL per dimension of every target position with all depths masked."""
    phonemes, padding, frames = batch.phonemes, batch.phoneme_padding, batch.frame_text
    if other_text:  # each row reads the next row's text (and its timing)
        phonemes, padding, frames = (t.roll(1, 0) for t in (phonemes, padding, frames))
    counts = torch.full(batch.padding.shape, codec.depth).masked_fill(
        batch.padding | batch.given, 0
    )
    visible, target = split_embeddings(codec.quantizer.embed(batch.tokens), counts)
    labels = torch.full((len(batch.tokens),), TEXT_LABEL, dtype=torch.long)
    mixture = model.bind(phonemes, padding, frames)(visible, counts, labels, batch.padding)
    scored = counts > 0
    return float(-mixture_log_prob(mixture, target)[scored].mean() / target.shape[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished demo-aligned run")
    parser.add_argument("--data-dir", required=True, help="its corpus")
    parser.add_argument("--decode", type=int, default=12, help="held-out targets to speak")
    args = parser.parse_args()
    run, corpus = Path(args.run), Path(args.data_dir)
    trained = tts_synth.load_trained(run)
    if trained.config.text_alignment != "synthesizer":
        raise SystemExit(f"{run} is not an aligned run (text_alignment='synthesizer')")
    codec, model = trained.codec, trained.model
    records = read_manifest(corpus / "manifest.jsonl")
    vocabulary = PhonemeVocabulary.load(run / "phonemes.json")
    texts = {
        k: spoken_alignment(a, vocabulary) for k, a in corpus_alignments(corpus, records).items()
    }
    if not (run / "tokens.safetensors").is_file():
        raise SystemExit(f"{run} has no tokens.safetensors: is it a finished run?")
    # the run's token cache holds every utterance: no mels needed
    utterances = tts_synth.tokenize(codec, records, [], texts, run / "tokens.safetensors")
    train = [u for u in utterances if u.record.split == "train"]
    test = [u for u in utterances if u.record.split == "test"]
    results: dict[str, float] = {}

    with torch.no_grad():
        y_train, x_train = frame_table(codec, train)
        y_test, x_test = frame_table(codec, test)
        phones = int(max(y_train.max(), y_test.max())) + 1
        count = torch.bincount(y_train, minlength=phones).clamp_min(1).float()[:, None]
        mean = torch.zeros(phones, x_train.shape[1]).index_add_(0, y_train, x_train) / count
        var = torch.zeros_like(mean).index_add_(0, y_train, (x_train - mean[y_train]) ** 2) / count
        var = var.clamp_min(1e-4)
        residual = ((x_test - mean[y_test]) ** 2).sum()
        results["phone_table_r2"] = float(1 - residual / ((x_test - x_test.mean(0)) ** 2).sum())
        results["phone_table_nll"] = gaussian_nll(mean[y_test], var[y_test], x_test)
        results["global_gaussian_nll"] = gaussian_nll(x_train.mean(0), x_train.var(0), x_test)
        print(
            f"phone table on held-out frames: R^2 {results['phone_table_r2']:.3f}, NLL/dim "
            f"{results['phone_table_nll']:.3f} (one global Gaussian: "
            f"{results['global_gaussian_nll']:.3f})"
        )

        max_length = model.config.length
        config = tts_synth.PRESETS["demo-aligned"]
        held = tts_synth.held_out_batches(config, test, max_length)
        seen = tts_synth.held_out_batches(config, train, max_length)
        for name, batches, other in (
            ("network_nll_held_out", held, False),
            ("network_nll_held_out_other_text", held, True),
            ("network_nll_train", seen, False),
        ):
            results[name] = sum(full_mask_nll(model, codec, b, other) for b in batches) / len(
                batches
            )
        print(
            f"network at full masking, NLL/dim: held-out {results['network_nll_held_out']:.3f} "
            f"(another row's text: {results['network_nll_held_out_other_text']:.3f}), "
            f"training speakers {results['network_nll_train']:.3f}"
        )

        from resgen.eval.asr import WhisperRecognizer
        from resgen.eval.text import character_error_rate, word_error_rate

        asr = WhisperRecognizer()
        vocoder = GriffinLimVocoder(codec.config.mel, iterations=32)
        pairs = tts_synth.choose_eval_items(test, config, codec.frame_rate)
        targets = [u for _, u in pairs[: args.decode]]
        refs = [u.record.text for u in targets]
        table_tokens = [
            codec.quantizer.quantize_from(mean[frame_table(codec, [u])[0]][None], 0).tokens[0]
            for u in targets
        ]
        for name, tokens in (
            ("resynth", [u.tokens for u in targets]),
            ("phone_table", table_tokens),
        ):
            hyps = []
            for t in tokens:
                audio, length = codec.decode_waveform(t[None], None, vocoder)
                hyps.append(asr.transcribe(audio[0, : int(length[0])], codec.sample_rate))
            results[f"{name}_wer"] = word_error_rate(refs, hyps)
            results[f"{name}_cer"] = character_error_rate(refs, hyps)
            print(
                f"{name} spoken ({len(refs)} held-out targets): WER {results[f'{name}_wer']:.3f}"
                f", CER {results[f'{name}_cer']:.3f}; e.g. {refs[0]!r} -> {hyps[0]!r}"
            )
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()

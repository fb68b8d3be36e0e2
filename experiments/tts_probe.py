"""What a trained TTS run with placed text has learned, against a plain predictor.

For a finished ``tts-synth`` run whose text is placed on the frames (``--preset demo``, timed by
its learned aligner, or ``--preset demo-aligned``, timed by the synthesisers), every latent frame
has a phone label. This script measures:

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
   text means the network barely reads the text. Also the R^2 of the mixture's mean on the
   held-out frames (comparable with the phone table's).
4. **The network's mean spoken**: for the same held-out targets (prompt given, true timing),
   the mixture mean at full masking, quantised, decoded, vocoded and transcribed: what the
   network predicts before any sampling.
5. **A plain regressor** (``--regressor-steps N``, 0 to skip): phone embeddings on the frames
   plus the prompt's mean embedding, six residual convolution blocks
   (:class:`~resgen.networks.frame_conv.FrameConvStack`), trained with squared error on the
   training speakers for ``N`` steps of 16 pairs: its held-out R^2 and its speech, the same
   way. It shows what a deterministic predictor of these tokens reaches with the same inputs.

Prints each figure and, last, one JSON line with all of them.

Usage::

    python experiments/tts_probe.py --run runs/tts-aligned --data-dir PATH/TO/corpus [--decode 12]
        [--regressor-steps 1000]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from resgen.codecs.mel_rvqvae import MelRVQVAE
from resgen.codecs.phonemes import PhonemeVocabulary
from resgen.codecs.vocoder import GriffinLimVocoder
from resgen.data.manifest import ManifestRecord, read_manifest
from resgen.data.speech_corpus.phone_alignments import corpus_alignments
from resgen.diffusion.masking import split_embeddings
from resgen.diffusion.mixture import MixtureParams, mixture_log_prob, mixture_mean
from resgen.networks.frame_conv import FrameConvStack
from resgen.networks.tts_transformer import TEXT_LABEL, TextToSpeechTransformer, spread_text
from resgen.recipes import tts_synth, tts_synth_config
from resgen.tts import batches as tts_batches
from resgen.tts.front_ends import SpokenText, spoken_alignment
from resgen.tts.timing import align_all, timed_text


def frame_table(codec: MelRVQVAE, utterances: list[tts_batches.Utterance]) -> tuple[Tensor, Tensor]:
    """Phone id ``[frames]`` and cumulative embedding ``[frames, dim]`` of every frame."""
    labels = [u.text.ids[spread_text([u.segment], len(u.tokens))] for u in utterances]
    embeddings = [codec.quantizer.embed(u.tokens[None]).sum(-2)[0] for u in utterances]
    return torch.cat(labels), torch.cat(embeddings)


class FrameRegressor(nn.Module):
    """Aligned phone ids ``[batch, length]`` and a speaker vector ``[batch, dim]`` (the prompt's
    mean embedding) to the cumulative embedding of every frame ``[batch, length, dim]``."""

    def __init__(self, phones: int, dim: int, width: int = 192, layers: int = 6) -> None:
        super().__init__()
        self.phone = nn.Embedding(phones, width)
        self.speaker = nn.Linear(dim, width)
        self.convs = FrameConvStack(width, layers)
        self.out = nn.Linear(width, dim)

    def forward(self, phones: Tensor, padding: Tensor, speaker: Tensor) -> Tensor:
        """``[batch, length, dim]`` predictions (``padding`` ``[batch, length]``)."""
        return self.out(self.convs(self.phone(phones) + self.speaker(speaker)[:, None], padding))


FrameTable = dict[str, tuple[Tensor, Tensor]]
"""Utterance id -> its frame table (:func:`frame_table`), computed once."""


def frame_tables(codec: MelRVQVAE, utterances: list[tts_batches.Utterance]) -> FrameTable:
    """Phone ids ``[frames]`` and cumulative embeddings ``[frames, dim]`` of each utterance."""
    return {u.record.id: frame_table(codec, [u]) for u in utterances}


def regressor_batch(
    tables: FrameTable, pairs: list[tuple[tts_batches.Utterance, tts_batches.Utterance]]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(phones [b, l], padding [b, l], speaker [b, dim], target [b, l, dim])`` of
    ``(prompt, target)`` pairs; ``tables`` holds every utterance's frame table."""
    rows = [tables[t.record.id] for _, t in pairs]
    longest = max(len(labels) for labels, _ in rows)
    phones = torch.zeros(len(rows), longest, dtype=torch.long)
    target = torch.zeros(len(rows), longest, rows[0][1].shape[-1])
    for row, (labels, embeddings) in enumerate(rows):
        phones[row, : len(labels)], target[row, : len(labels)] = labels, embeddings
    lengths = torch.tensor([len(labels) for labels, _ in rows])
    padding = torch.arange(longest)[None] >= lengths[:, None]
    speaker = torch.stack([tables[p.record.id][1].mean(0) for p, _ in pairs])
    return phones, padding, speaker, target


def train_regressor(
    tables: FrameTable, train: list[tts_batches.Utterance], phones: int, dim: int, steps: int
) -> FrameRegressor:
    """Fit a :class:`FrameRegressor` on ``(other utterance of the speaker, utterance)`` pairs."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    by_speaker: dict[str, list[tts_batches.Utterance]] = {}
    for u in train:
        by_speaker.setdefault(u.record.speaker, []).append(u)
    regressor = FrameRegressor(phones, dim)
    optimizer = torch.optim.AdamW(regressor.parameters(), lr=1e-3, weight_decay=0.01)
    for _ in range(steps):
        pairs = []
        for i in torch.randint(len(train), (16,), generator=generator).tolist():
            mates = by_speaker[train[i].record.speaker]
            pick = int(torch.randint(len(mates), (1,), generator=generator))
            pairs.append((mates[pick], train[i]))
        phones_, padding, speaker, target = regressor_batch(tables, pairs)
        error = (regressor(phones_, padding, speaker) - target)[~padding]
        optimizer.zero_grad()
        error.pow(2).mean().backward()
        optimizer.step()
    return regressor.eval()


def r_squared(predicted: Tensor, truth: Tensor) -> float:
    """Fraction of the variance of ``truth`` ``[frames, dim]`` that ``predicted`` explains."""
    residual = ((predicted - truth) ** 2).sum()
    return float(1 - residual / ((truth - truth.mean(0)) ** 2).sum())


def gaussian_nll(mean: Tensor, var: Tensor, x: Tensor) -> float:
    """Mean diagonal-Gaussian NLL per dimension."""
    return float((0.5 * (math.log(2 * math.pi) + var.log() + (x - mean) ** 2 / var)).mean())


def full_mask_mixture(
    model: TextToSpeechTransformer,
    codec: MelRVQVAE,
    batch: tts_batches.TTSBatch,
    other_text: bool = False,
) -> tuple[MixtureParams, Tensor, Tensor]:
    """The network's mixture at every position when every target depth is masked (the prompt
    given), the true cumulative embedding ``[batch, length, dim]`` and the scored (target)
    positions ``[batch, length]``."""
    phonemes, padding, frames = batch.phonemes, batch.phoneme_padding, batch.frame_text
    if other_text:  # each row reads the next row's text (and its timing)
        phonemes, padding, frames = (t.roll(1, 0) for t in (phonemes, padding, frames))
    counts = torch.full(batch.padding.shape, codec.depth).masked_fill(
        batch.padding | batch.given, 0
    )
    visible, target = split_embeddings(codec.quantizer.embed(batch.tokens), counts)
    labels = torch.full((len(batch.tokens),), TEXT_LABEL, dtype=torch.long)
    mixture = model.bind(phonemes, padding, frames)(visible, counts, labels, batch.padding)
    return mixture, target, counts > 0


def full_mask_nll(
    model: TextToSpeechTransformer,
    codec: MelRVQVAE,
    batch: tts_batches.TTSBatch,
    other_text: bool = False,
) -> float:
    """Exact mixture NLL per dimension of every target position with all depths masked."""
    mixture, target, scored = full_mask_mixture(model, codec, batch, other_text)
    return float(-mixture_log_prob(mixture, target)[scored].mean() / target.shape[-1])


def placed_texts(
    trained: tts_synth.TrainedTTS, run: Path, corpus: Path, records: list[ManifestRecord]
) -> dict[str, SpokenText]:
    """Every utterance's phones with the run's timing: its aligner's, or the synthesisers'."""
    alignment = trained.config.text_alignment
    if alignment == "uniform":
        raise SystemExit(f"{run} spreads its text evenly: its frames have no phone labels")
    vocabulary = PhonemeVocabulary.load(run / "phonemes.json")
    alignments = corpus_alignments(corpus, records)
    texts = {k: spoken_alignment(a, vocabulary) for k, a in alignments.items()}
    if alignment == "synthesizer" or trained.aligner is None:
        return texts
    frames = aligner_frames(trained, corpus, records, texts)
    return {k: timed_text(texts[k].ids, f) for k, f in frames.items()}


def aligner_frames(
    trained: tts_synth.TrainedTTS,
    corpus: Path,
    records: list[ManifestRecord],
    texts: dict[str, SpokenText],
) -> dict[str, Tensor]:
    """Utterance id -> ``[phonemes]`` mel frames of each phone, as the run's aligner reads the
    recording (the utterances of ``records`` that have a text)."""
    if trained.aligner is None:
        raise SystemExit("the run has no learned aligner (it is not a --preset demo run)")
    timed = [r for r in records if r.id in texts]
    mels = tts_batches.load_mels(trained.codec, timed, corpus)
    frames = align_all(trained.aligner, [texts[r.id].ids for r in timed], mels)
    return {r.id: f for r, f in zip(timed, frames)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished demo or demo-aligned run")
    parser.add_argument("--data-dir", required=True, help="its corpus")
    parser.add_argument("--decode", type=int, default=12, help="held-out targets to speak")
    parser.add_argument(
        "--regressor-steps", type=int, default=1000, help="steps of the plain regressor (0: skip)"
    )
    args = parser.parse_args()
    run, corpus = Path(args.run), Path(args.data_dir)
    trained = tts_synth.load_trained(run)
    codec, model = trained.codec, trained.model
    records = read_manifest(corpus / "manifest.jsonl")
    texts = placed_texts(trained, run, corpus, records)
    if not (run / "tokens.safetensors").is_file():
        raise SystemExit(f"{run} has no tokens.safetensors: is it a finished run?")
    # the run's token cache holds every utterance: no mels needed
    utterances = tts_batches.tokenize(codec, records, [], texts, run / "tokens.safetensors")
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
        results["phone_table_r2"] = r_squared(mean[y_test], x_test)
        results["phone_table_nll"] = gaussian_nll(mean[y_test], var[y_test], x_test)
        results["global_gaussian_nll"] = gaussian_nll(x_train.mean(0), x_train.var(0), x_test)
        print(
            f"phone table on held-out frames: R^2 {results['phone_table_r2']:.3f}, NLL/dim "
            f"{results['phone_table_nll']:.3f} (one global Gaussian: "
            f"{results['global_gaussian_nll']:.3f})"
        )

        max_length = model.config.length
        config = tts_synth_config.PRESETS["demo"]
        held = tts_batches.held_out_batches(
            test,
            config.generator_stage.batch_size,
            config.pair_prob,
            config.prompt_fraction,
            max_length,
            config.seed,
        )
        seen = tts_batches.held_out_batches(
            train,
            config.generator_stage.batch_size,
            config.pair_prob,
            config.prompt_fraction,
            max_length,
            config.seed,
        )
        for name, batches, other in (
            ("network_nll_held_out", held, False),
            ("network_nll_held_out_other_text", held, True),
            ("network_nll_train", seen, False),
        ):
            results[name] = sum(full_mask_nll(model, codec, b, other) for b in batches) / len(
                batches
            )
        # the network's mean on the evaluation's (prompt, target) pairs, as the regressor below
        pairs = tts_synth.choose_eval_items(test, config, codec.frame_rate)
        mixture, target, scored = full_mask_mixture(model, codec, tts_batches.pair_batch(pairs))
        network_mean = mixture_mean(mixture)
        results["network_mean_r2"] = r_squared(network_mean[scored], target[scored])
        network_tokens = [
            codec.quantizer.quantize_from(network_mean[row][scored[row]][None], 0).tokens[0]
            for row in range(min(args.decode, len(pairs)))
        ]
        print(
            f"network at full masking, NLL/dim: held-out {results['network_nll_held_out']:.3f} "
            f"(another row's text: {results['network_nll_held_out_other_text']:.3f}), "
            f"training speakers {results['network_nll_train']:.3f}; R^2 of its mean on the "
            f"evaluation targets' frames {results['network_mean_r2']:.3f}"
        )

    regressor_tokens = []
    if args.regressor_steps > 0:
        with torch.no_grad():
            tables = frame_tables(codec, train + test)
        dim = codec.quantizer.dim
        regressor = train_regressor(tables, train, phones, dim, args.regressor_steps)
        with torch.no_grad():
            phones_, padding, speaker, target = regressor_batch(tables, pairs)
            predicted = regressor(phones_, padding, speaker)
            results["regressor_r2"] = r_squared(predicted[~padding], target[~padding])
            regressor_tokens = [
                codec.quantizer.quantize_from(predicted[row, : len(t.tokens)][None], 0).tokens[0]
                for row, (_, t) in enumerate(pairs[: args.decode])
            ]
        print(
            f"plain regressor ({args.regressor_steps} steps): R^2 on the evaluation targets' "
            f"frames {results['regressor_r2']:.3f}"
        )

    with torch.no_grad():
        from resgen.eval.asr import WhisperRecognizer
        from resgen.eval.text import character_error_rate, word_error_rate

        asr = WhisperRecognizer()
        vocoder = GriffinLimVocoder(codec.config.mel, iterations=32)
        targets = [u for _, u in pairs[: args.decode]]
        refs = [u.record.text for u in targets]
        table_tokens = [
            codec.quantizer.quantize_from(mean[frame_table(codec, [u])[0]][None], 0).tokens[0]
            for u in targets
        ]
        for name, tokens in (
            ("resynth", [u.tokens for u in targets]),
            ("phone_table", table_tokens),
            ("network_mean", network_tokens),
            ("regressor", regressor_tokens),
        ):
            if not tokens:
                continue
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

"""How intelligible the mel codec's resynthesis is, for a few codec shapes (the TTS recipe's codec).

Trains a :class:`~resgen.codecs.MelRVQVAE` per variant exactly as the ``tts-synth`` recipe's codec
stage does (same crops, steps, batch and seed), then resynthesises held-out utterances (test
speakers, never heard in training) through the codec and Griffin-Lim, and transcribes them with
Whisper tiny.en. The same utterances are also scored as recorded and as Griffin-Lim of their own
log-mels, which bound what any codec can reach with this vocoder.

Prints a table (per variant: training seconds, final training loss, L1 on the held-out log-mels
in standardised units, WER of the resynthesis) and, last, one JSON line with every figure.

Usage::

    python benchmarks/mel_codec.py --data-dir PATH/TO/corpus [--steps 3000] [--per-speaker 4]
        [--variants ds4,ds4-depth16,ds2] [--out runs/mel-codec]

The corpus is the recipe's (``resgen train tts-synth --preset demo`` builds it under
``--out``/corpus); Whisper comes from ``tools/install_eval.sh``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from attrs import evolve

from resgen.codecs.mel_rvqvae import MelRVQVAE
from resgen.codecs.vocoder import GriffinLimVocoder
from resgen.data.audio_io import load_audio
from resgen.data.manifest import read_manifest
from resgen.recipes import tts_synth, tts_synth_config
from resgen.tts import batches

VARIANTS: dict[str, dict] = {
    "ds4": {"downsample": 4},
    "ds4-depth16": {"downsample": 4, "depth": 16},
    "ds4-depth16-hidden256": {"downsample": 4, "depth": 16, "hidden": 256},
    "ds4-depth16-latent64": {"downsample": 4, "depth": 16, "latent_dim": 64},
    "ds2": {"downsample": 2},
    "ds2-depth16": {"downsample": 2, "depth": 16},
    "ds2-hidden256": {"downsample": 2, "hidden": 256},
    "ds1": {"downsample": 1},
}
"""Codec fields changed from the demo preset's codec, by name."""


def held_out(records: list, per_speaker: int) -> list[int]:
    """Indices of ``per_speaker`` test utterances of each test speaker (after its first)."""
    by_speaker: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        if record.split == "test":
            by_speaker.setdefault(record.speaker, []).append(i)
    return [
        i
        for speaker in sorted(by_speaker)
        for i in sorted(by_speaker[speaker], key=lambda j: records[j].id)[1 : 1 + per_speaker]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="the tts-synth demo corpus folder")
    parser.add_argument("--steps", type=int, default=3000, help="codec training steps")
    parser.add_argument("--per-speaker", type=int, default=4, help="held-out utterances each")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    parser.add_argument("--out", default="runs/mel-codec", help="checkpoints of the variants")
    args = parser.parse_args()

    from resgen.eval.asr import WhisperRecognizer
    from resgen.eval.text import word_error_rate

    corpus = Path(args.data_dir)
    records = read_manifest(corpus / "manifest.jsonl")
    base = tts_synth_config.PRESETS["demo"]
    vocoder = GriffinLimVocoder(base.codec.mel, iterations=base.vocoder_iterations)
    asr = WhisperRecognizer()
    items = held_out(records, args.per_speaker)
    references = [records[i].text for i in items]
    probe = MelRVQVAE(base.codec)
    mels = batches.load_mels(probe, records, corpus)
    recorded = [load_audio(corpus / records[i].audio)[0] for i in items]
    bounds = {
        "recorded": word_error_rate(references, [asr.transcribe(a, 16000) for a in recorded]),
        "griffin_lim": word_error_rate(
            references, [asr.transcribe(vocoder(mels[i][None])[0], 16000) for i in items]
        ),
    }
    print(f"held-out utterances: {len(items)}; WER recorded {bounds['recorded']:.3f}, "
          f"Griffin-Lim of the true mels {bounds['griffin_lim']:.3f}")  # fmt: skip

    results = {}
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        config = evolve(
            base,
            codec=evolve(base.codec, **VARIANTS[name]),
            codec_stage=evolve(base.codec_stage, steps=args.steps),
        )
        train = [m for m, r in zip(mels, records) if r.split == "train"]
        tick = time.perf_counter()
        codec, history = tts_synth.train_codec(config, train, Path(args.out) / name)
        seconds = time.perf_counter() - tick
        l1, hypotheses = [], []
        with torch.no_grad():
            for i in items:
                tokens, _ = codec.encode(mels[i][None])
                decoded, _ = codec.decode(tokens)
                n = len(mels[i])
                error = codec.normalize(decoded[0, :n]) - codec.normalize(mels[i])
                l1.append(float(error.abs().mean()))
                audio, lengths = codec.decode_waveform(tokens, None, vocoder)
                hypotheses.append(asr.transcribe(audio[0, : int(lengths[0])], 16000))
        results[name] = {
            "fields": VARIANTS[name],
            "positions_per_second": codec.frame_rate,
            "train_seconds": seconds,
            "final_loss": history[-1][1] if history else None,
            "held_out_l1": sum(l1) / len(l1),
            "wer_resynthesis": word_error_rate(references, hypotheses),
        }

    print(f"\n{'variant':24s} {'pos/s':>6s} {'train s':>8s} {'loss':>7s} {'L1':>7s} {'WER':>6s}")
    for name, r in results.items():
        figures = (r["positions_per_second"], r["train_seconds"], r["final_loss"])
        print(f"{name:24s} {figures[0]:6.2f} {figures[1]:8.0f} {figures[2]:7.4f} "
              f"{r['held_out_l1']:7.4f} {r['wer_resynthesis']:6.3f}")  # fmt: skip
    print(json.dumps({"steps": args.steps, "utterances": len(items), **bounds, **results}))


if __name__ == "__main__":
    main()

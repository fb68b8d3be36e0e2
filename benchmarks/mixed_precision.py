"""Training-step time of the TTS demo's two generators in float32 and in bfloat16 autocast.

Builds ResGen's network and the autoregressive baseline at the ``tts-synth`` demo's sizes, draws
synthetic batches shaped like the demo's (16 prompt + target sequences of about 230 positions,
depth 8, 256 codes, about 60 phonemes), and times optimiser steps of each generator under
``StageSpec(precision="float32")`` and ``"bfloat16"`` in the same process (the recipe's own
autocast context). The last line is JSON with each ``bfloat16_speedup`` (float32 seconds per
step over bfloat16's).

    python benchmarks/mixed_precision.py [--steps 8] [--device cpu]

bfloat16 pays off on CPUs with AVX-512 BF16 or AMX, and on GPUs; elsewhere it can be slower.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

import torch
from attrs import evolve

from resgen.codecs.mel_rvqvae import MelRVQVAE
from resgen.diffusion.ar_loss import ar_loss
from resgen.networks.tts_rq_transformer import TextRQTransformer, TextRQTransformerConfig
from resgen.networks.tts_transformer import (
    TEXT_LABEL,
    TextToSpeechTransformer,
    TTSTransformerConfig,
    spread_text,
)
from resgen.recipes.trainer import autocast, resolve_device
from resgen.recipes.tts_synth import PRESETS, TTSBatch, prompted_resgen_loss

VOCABULARY, LENGTH, PHONEMES = 60, 400, 160


def demo_batch(generator: torch.Generator) -> TTSBatch:
    """A batch shaped like the demo's: 16 rows of 160-250 positions, the first 30 % given."""
    config = PRESETS["demo"]
    depth, codes, rows = config.codec.depth, config.codec.codes, config.generator_stage.batch_size
    lengths = torch.randint(160, 251, (rows,), generator=generator).tolist()
    longest = max(lengths)
    tokens = torch.randint(codes, (rows, longest, depth), generator=generator)
    padding = torch.arange(longest)[None] >= torch.tensor(lengths)[:, None]
    given = torch.arange(longest)[None] < (0.3 * torch.tensor(lengths))[:, None]
    words = [n // 4 for n in lengths]
    phonemes = torch.randint(1, VOCABULARY, (rows, max(words)), generator=generator)
    phoneme_padding = torch.arange(max(words))[None] >= torch.tensor(words)[:, None]
    frame_text = torch.stack([spread_text([(n, w)], longest) for n, w in zip(lengths, words)])
    return TTSBatch(
        tokens.masked_fill(padding[..., None], 0),
        padding,
        given,
        phonemes,
        phoneme_padding,
        frame_text,
    )


def seconds_per_step(
    loss_fn: Callable[[TTSBatch], torch.Tensor],
    model: torch.nn.Module,
    precision: str,
    steps: int,
    device: torch.device,
) -> float:
    """Mean seconds of one optimiser step (after 2 warm-up steps) at ``precision``."""
    spec = evolve(PRESETS["demo"].generator_stage, precision=precision)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = [demo_batch(torch.Generator().manual_seed(i)) for i in range(steps + 2)]
    for index, batch in enumerate(batches):
        if index == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            tick = time.perf_counter()
        with autocast(spec, device):
            loss = loss_fn(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - tick) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type != "cpu":
        print("the synthetic batches live on the CPU; use --device cpu", file=sys.stderr)
        return 2
    config = PRESETS["demo"]
    torch.manual_seed(0)
    codec = MelRVQVAE(config.codec).eval()
    resgen = TextToSpeechTransformer(
        TTSTransformerConfig(
            length=LENGTH,
            depth=codec.depth,
            dim=codec.quantizer.dim,
            vocabulary=VOCABULARY,
            max_phonemes=PHONEMES,
            frame_text=True,
            **config.network,
        )
    ).train()
    ar = TextRQTransformer(
        TextRQTransformerConfig(
            length=LENGTH,
            depth=codec.depth,
            codes=codec.codes,
            vocabulary=VOCABULARY,
            max_phonemes=PHONEMES,
            frame_text=True,
            **config.ar_network,
        )
    ).train()

    def resgen_loss(batch: TTSBatch) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return prompted_resgen_loss(resgen, codec, batch, generator, config.objective)

    def baseline_loss(batch: TTSBatch) -> torch.Tensor:
        labels = torch.full((len(batch.tokens),), TEXT_LABEL, dtype=torch.long)
        bound = ar.bind(batch.phonemes, batch.phoneme_padding, batch.frame_text)
        return ar_loss(bound, batch.tokens, labels, padding=batch.padding).loss

    result: dict[str, float] = {}
    print(f"{'generator':<10} {'float32 s/step':>15} {'bfloat16 s/step':>16} {'speed-up':>9}")
    for name, loss_fn, model in (("resgen", resgen_loss, resgen), ("ar", baseline_loss, ar)):
        full = seconds_per_step(loss_fn, model, "float32", args.steps, device)
        half = seconds_per_step(loss_fn, model, "bfloat16", args.steps, device)
        result |= {
            f"{name}_float32_s": full,
            f"{name}_bfloat16_s": half,
            f"{name}_bfloat16_speedup": full / half,
        }
        print(f"{name:<10} {full:>15.3f} {half:>16.3f} {full / half:>8.2f}x")
    print(json.dumps({k: round(v, 4) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training-step time of the TTS demo's two generators: bfloat16 autocast and padding.

Builds ResGen's network and the autoregressive baseline at the ``tts-synth`` demo's sizes, draws
synthetic batches shaped like the demo's (16 right-padded rows of single utterances or prompt +
target pairs at the demo corpus' lengths, depth 8, 256 codes), and times optimiser steps on the
CPU in one process (ResGen's with its scheduled-sampling guess, as the recipe trains it):

- each generator under ``StageSpec(precision="float32")`` and ``"bfloat16"`` (the recipe's own
  autocast context);
- each generator (bfloat16) on batches of one kind (all singles or all pairs, as the recipe
  draws them) and on mixed batches, whose singles are padded to the pairs' length;
- the baseline with its padded positions skipped by the depth transformer (``ar_loss`` passes the
  padding, as the recipe does) and with every position computed.

The last line is JSON with the seconds per step and the ratios ``*_bfloat16_speedup``,
``*_one_kind_speedup`` and ``ar_padding_skip_speedup``.

    python experiments/tts_training_step.py [--steps 8]

bfloat16 pays off on CPUs with AVX-512 BF16 or AMX, and on GPUs; elsewhere it can be slower.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial

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
from resgen.recipes.tts_synth_config import PRESETS
from resgen.training.trainer import autocast
from resgen.tts.batches import TTSBatch
from resgen.tts.objectives import full_mask_guess, prompted_resgen_loss

VOCABULARY, LENGTH, PHONEMES = 60, 400, 160


def demo_batch(generator: torch.Generator, kinds: str) -> TTSBatch:
    """A batch shaped like the demo's: 16 rows, single utterances of 50-140 positions (the demo
    corpus' mean is 95) and prompt + target pairs of two such utterances; the first 30 % of each
    row is given. ``kinds``: ``"singles"`` or ``"pairs"`` (a batch of one kind, as the recipe
    draws them), or ``"mixed"`` (each row a pair with probability 1/2, as it drew them before:
    the singles are padded to the pairs' length)."""
    config = PRESETS["demo"]
    depth, codes, rows = config.codec.depth, config.codec.codes, config.generator_stage.batch_size
    first, second = torch.randint(50, 141, (2, rows), generator=generator)
    paired = {
        "singles": torch.zeros(rows, dtype=torch.bool),
        "pairs": torch.ones(rows, dtype=torch.bool),
        "mixed": torch.rand(rows, generator=generator) < 0.5,
    }[kinds]
    lengths = torch.where(paired, first + second, first).tolist()
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


def demo_batches(count: int, one_kind: bool) -> list[TTSBatch]:
    """``count`` seeded batches: alternately all singles and all pairs, or each mixed."""
    return [
        demo_batch(
            torch.Generator().manual_seed(i),
            ("singles", "pairs")[i % 2] if one_kind else "mixed",
        )
        for i in range(count)
    ]


def seconds_per_step(
    loss_fn: Callable[[TTSBatch], torch.Tensor],
    model: torch.nn.Module,
    precision: str,
    steps: int,
    one_kind: bool = True,
) -> float:
    """Mean seconds of one optimiser step (after 2 warm-up steps) at ``precision``, on batches
    of one kind each (the recipe's) or mixed."""
    spec = evolve(PRESETS["demo"].generator_stage, precision=precision)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = demo_batches(steps + 2, one_kind)
    for index, batch in enumerate(batches):
        if index == 2:
            tick = time.perf_counter()
        with autocast(spec, torch.device("cpu")):
            loss = loss_fn(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - tick) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)
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
        guess = full_mask_guess(resgen, codec, batch)  # scheduled sampling, as in every batch
        return prompted_resgen_loss(resgen, codec, batch, generator, config.objective, guess)

    def baseline_loss(batch: TTSBatch, skip_padding: bool = True) -> torch.Tensor:
        labels = torch.full((len(batch.tokens),), TEXT_LABEL, dtype=torch.long)
        bound = ar.bind(batch.phonemes, batch.phoneme_padding, batch.frame_text)

        def every_position(
            tokens: torch.Tensor, labels: torch.Tensor, padding: torch.Tensor
        ) -> torch.Tensor:
            return bound(tokens, labels)[~padding]  # the padding is computed, then dropped

        model = bound if skip_padding else every_position
        return ar_loss(model, batch.tokens, labels, padding=batch.padding).loss

    runs = {
        "resgen_float32": (resgen_loss, resgen, "float32", True),
        "resgen_bfloat16": (resgen_loss, resgen, "bfloat16", True),
        "resgen_bfloat16_mixed": (resgen_loss, resgen, "bfloat16", False),
        "ar_float32_every_position": (
            partial(baseline_loss, skip_padding=False),
            ar,
            "float32",
            True,
        ),
        "ar_float32": (baseline_loss, ar, "float32", True),
        "ar_bfloat16": (baseline_loss, ar, "bfloat16", True),
        "ar_bfloat16_mixed": (baseline_loss, ar, "bfloat16", False),
    }
    seconds = {}
    for name, (loss_fn, model, precision, one_kind) in runs.items():
        seconds[name] = seconds_per_step(loss_fn, model, precision, args.steps, one_kind)
        print(f"{name:<28} {seconds[name]:.3f} s/step", flush=True)
    result = {f"{name}_s": value for name, value in seconds.items()}
    result["resgen_bfloat16_speedup"] = seconds["resgen_float32"] / seconds["resgen_bfloat16"]
    result["ar_bfloat16_speedup"] = seconds["ar_float32"] / seconds["ar_bfloat16"]
    result["ar_padding_skip_speedup"] = seconds["ar_float32_every_position"] / seconds["ar_float32"]
    for generator in ("resgen", "ar"):
        result[f"{generator}_one_kind_speedup"] = (
            seconds[f"{generator}_bfloat16_mixed"] / seconds[f"{generator}_bfloat16"]
        )
    print(json.dumps({k: round(v, 4) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

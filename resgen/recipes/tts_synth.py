"""Recipe ``tts-synth``: zero-shot text-to-speech with ResGen on the embedded synthetic corpus.

Stages (each resumable, each under its own folder of ``--out``):

1. ``corpus``: synthesise the multi-speaker corpus (:func:`~resgen.recipes.tts_corpus.build_corpus`;
   test speakers are whole base speakers never heard in training);
2. ``codec``: train a :class:`~resgen.codecs.MelRVQVAE` on random crops of the training speech;
   with ``text_alignment="learned"`` (the demo), also ``aligner``: train a
   :class:`~resgen.networks.aligner.PhonemeAligner` on the training utterances and time every
   utterance's phonemes with it (:mod:`~resgen.recipes.tts_aligner`);
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

**Where the parts live.** The settings and presets are in :mod:`~resgen.recipes.tts_config`; the
examples and batches (how a prompt + target pair is laid out) in
:mod:`~resgen.recipes.tts_data`; the codec's and the generators' training in
:mod:`~resgen.recipes.tts_training`; synthesis and the evaluation (how the target's length is
chosen) in :mod:`~resgen.recipes.tts_eval`; the learned alignment in
:mod:`~resgen.recipes.tts_aligner`. This module composes them.

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
speaking at that moment (:mod:`~resgen.recipes.tts_alignment`), instead of a uniform spread.
The timing of a held-out target is its synthesiser's timing of the target sentence, relative to
the target's length. Utterances of hibari-tts, which gives no timing, are left out of training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from attrs import asdict, frozen
from jaxtyping import Float, Int
from torch import Tensor

from resgen.codecs.mel_rvqvae import MelCodecConfig, MelRVQVAE
from resgen.codecs.phonemes import PhonemeTokenizer, PhonemeVocabulary
from resgen.diffusion.sampler import SamplerConfig
from resgen.networks.aligner import PhonemeAligner
from resgen.networks.duration import PhonemeDurationModel, PhonemeTiming
from resgen.networks.duration_predictor import PhonemeDurationPredictor
from resgen.networks.tts_transformer import TextToSpeechTransformer, TTSTransformerConfig
from resgen.recipes.checkpoint import (
    CheckpointError,
    build_from_config,
    finished_checkpoint,
    load_checkpoint,
    read_json,
    write_json,
)
from resgen.recipes.plots import save_loss_plot
from resgen.recipes.run_lock import check_run_folder, lock_run_folder
from resgen.recipes.tts_aligner import (
    DurationFrontEnd,
    align_all,
    timed_text,
    train_aligner,
    train_duration_predictor,
)
from resgen.recipes.tts_alignment import (
    PhonemeFrontEnd,
    SpokenText,
    SynthesizerFrontEnd,
    TextFrontEnd,
    corpus_alignments,
    phone_vocabulary,
    spoken_alignment,
)
from resgen.recipes.tts_config import PRESETS, TTSSynthConfig
from resgen.recipes.tts_corpus import ManifestRecord, build_corpus, read_manifest
from resgen.recipes.tts_data import Utterance, load_mels, tokenize
from resgen.recipes.tts_eval import evaluate
from resgen.recipes.tts_training import train_ar, train_codec, train_resgen

__all__ = ["learn_alignment", "fit_duration", "run", "TrainedTTS", "load_trained"]


def _config_dict(config: TTSSynthConfig) -> dict[str, Any]:
    out = asdict(config, recurse=True)
    out["sampler"]["schedule"] = type(config.sampler.schedule).__name__
    out["prompt_fraction"] = list(config.prompt_fraction)
    return json.loads(json.dumps(out))


def learn_alignment(
    config: TTSSynthConfig,
    records: list[ManifestRecord],
    mels: list[Float[Tensor, "_ mels"]],
    texts: dict[str, SpokenText],
    vocabulary: PhonemeVocabulary,
    folder: Path,
) -> tuple[PhonemeAligner, list[tuple[int, float]], dict[str, SpokenText], dict[str, Tensor]]:
    """Stage 2b: train the aligner on the training utterances, then time every utterance.

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


def run(
    out_dir: str | Path,
    config: TTSSynthConfig | None = None,
    *,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Run every stage into ``out_dir`` (resuming what is there) and return the metrics.

    Args:
        out_dir: the run folder.
        config: a :class:`TTSSynthConfig` (default: the ``demo`` preset).
        data_dir: an existing corpus folder of the same corpus preset to reuse (default:
            ``out_dir/corpus``, built when missing).

    Raises:
        ValueError: ``out_dir`` holds a run with another configuration.
        RunFolderInUseError: another process is writing ``out_dir``.
    """
    config = config or PRESETS["demo"]
    out = check_run_folder(out_dir)
    if data_dir is not None and Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise NotADirectoryError(f"--data-dir {data_dir} is a file, not a corpus folder")
    with lock_run_folder(out):
        return _run(out, config, data_dir)


def _run(out: Path, config: TTSSynthConfig, data_dir: str | Path | None) -> dict[str, Any]:
    """:func:`run` once the run folder is locked."""
    config_dict = _config_dict(config)
    if (out / "recipe.json").is_file():
        if read_json(out / "recipe.json", "recipe configuration") != config_dict:
            raise ValueError(
                f"{out} holds a run with another configuration; use a new --out folder"
            )
    write_json(out / "recipe.json", config_dict)
    wall: dict[str, float] = {}

    tick = time.perf_counter()
    corpus = Path(data_dir) if data_dir is not None else out / "corpus"
    manifest = build_corpus(corpus, config.corpus)
    records = read_manifest(manifest)
    texts = _texts(config, records, corpus, out)
    wall["corpus"] = time.perf_counter() - tick

    tick = time.perf_counter()
    probe = MelRVQVAE(config.codec)
    mels = load_mels(probe, records, corpus)
    train_mels = [m for m, r in zip(mels, records) if r.split == "train"]
    codec, codec_history = train_codec(config, train_mels, out / "codec")
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
        )
        wall["aligner"] = time.perf_counter() - tick

    tick = time.perf_counter()
    utterances = tokenize(codec, records, mels, texts, out / "tokens.safetensors")
    train = [u for u in utterances if u.record.split == "train"]
    test = [u for u in utterances if u.record.split == "test"]
    longest = max(len(u.tokens) for u in utterances)
    max_length = 2 * longest + 8
    max_phonemes = 2 * max(len(u.text) for u in utterances) + 8
    vocabulary = PhonemeVocabulary.load(out / "phonemes.json")
    duration = fit_duration(train, len(vocabulary), phoneme_frames)
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
            **config.timing_predictor,
        )
        wall["timing"] = time.perf_counter() - tick

    tick = time.perf_counter()
    args = (config, codec, train, len(vocabulary), max_length, max_phonemes)
    resgen, resgen_stage = train_resgen(*args, out / "resgen", held_out=test)
    wall["resgen"] = time.perf_counter() - tick
    tick = time.perf_counter()
    ar, ar_stage = train_ar(*args, out / "ar", held_out=test)
    wall["ar"] = time.perf_counter() - tick

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
    write_json(out / "metrics.json", metrics)
    return metrics


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

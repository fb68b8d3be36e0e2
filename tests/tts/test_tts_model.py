"""The text-to-speech networks (ResGen's and the autoregressive baseline) and their bad inputs."""

from __future__ import annotations

import pytest
import torch
from attrs import evolve
from jaxtyping import TypeCheckError

from resgen.codecs.mel_rvqvae import MelCodecConfig, MelRVQVAE
from resgen.codecs.phonemes import PhonemeTokenizer
from resgen.diffusion.ar_loss import ar_loss
from resgen.diffusion.ar_sampler import ARSampler
from resgen.diffusion.guidance import ClassifierFreeGuidance
from resgen.diffusion.sampler import ResGenSampler, SamplerConfig
from resgen.networks.masked_transformer import MaskedRVQTransformer, MaskedTransformerConfig
from resgen.networks.tts_rq_transformer import TextRQTransformer, TextRQTransformerConfig
from resgen.networks.tts_transformer import (
    TextToSpeechTransformer,
    TTSTransformerConfig,
    spread_text,
)
from resgen.quantizers.residual_vq import ResidualVQ, ResidualVQConfig
from resgen.recipes.tts_synth_config import PAPER_SCALE
from resgen.tts.batches import TTSBatch
from resgen.tts.objectives import full_mask_guess, prompted_resgen_loss
from resgen.tts.synthesis import synthesize, target_frames

DEPTH, CODES, DIM, VOCAB = 4, 16, 8, 12


def _tts(frame_text: bool = True, frame_conv: int = 0) -> TextToSpeechTransformer:
    config = TTSTransformerConfig(
        length=24,
        depth=DEPTH,
        dim=DIM,
        vocabulary=VOCAB,
        width=32,
        layers=1,
        heads=2,
        text_layers=1,
        components=2,
        head_rank=8,
        frame_text=frame_text,
        frame_conv=frame_conv,
    )
    return TextToSpeechTransformer(config).eval()


def _ar(frame_conv: int = 0) -> TextRQTransformer:
    config = TextRQTransformerConfig(
        length=24,
        depth=DEPTH,
        codes=CODES,
        vocabulary=VOCAB,
        width=32,
        layers=1,
        heads=2,
        depth_layers=1,
        text_layers=1,
        frame_text=True,
        frame_conv=frame_conv,
    )
    return TextRQTransformer(config).eval()


def _text() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    phonemes = torch.randint(1, VOCAB, (2, 7))
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, 5:] = True
    phonemes[padding] = 0
    frames = torch.stack([spread_text([(5, 3), (7, 4)], 14), spread_text([(5, 2), (5, 3)], 14)])
    return phonemes, padding, frames


def test_spread_text_covers_each_segment_evenly() -> None:
    index = spread_text([(4, 2), (3, 3)], 9)
    assert index.tolist() == [0, 0, 1, 1, 2, 3, 4, -1, -1]
    with pytest.raises(ValueError, match="phoneme"):
        spread_text([(4, 0)], 4)


@pytest.mark.parametrize("frame_conv", [0, 2])
def test_resgen_prompt_tokens_unchanged_after_sampling(frame_conv: int) -> None:
    quantizer = ResidualVQ(ResidualVQConfig(dim=DIM, codes=CODES, depth=DEPTH)).eval()
    model = _tts(frame_conv=frame_conv)
    phonemes, phoneme_padding, frame_text = _text()
    prompt = torch.randint(0, CODES, (2, 14, DEPTH))
    depths = torch.zeros(2, 14, dtype=torch.long)
    depths[:, :5] = DEPTH
    padding = torch.zeros(2, 14, dtype=torch.bool)
    padding[1, 10:] = True
    sampler = ResGenSampler(SamplerConfig(steps=4), guider=ClassifierFreeGuidance(2.0))
    tokens = sampler.sample(
        model.bind(phonemes, phoneme_padding, frame_text),
        quantizer,
        torch.zeros(2, dtype=torch.long),
        14,
        prompt_tokens=prompt,
        prompt_depths=depths,
        padding=padding,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(tokens[:, :5], prompt[:, :5])
    assert bool((tokens[1, 10:] == 0).all())  # padding untouched


def test_text_prefix_changes_the_output_and_padding_does_not() -> None:
    model = _tts(frame_text=False)
    phonemes, phoneme_padding, _ = _text()
    visible = torch.randn(2, 10, DIM)
    counts = torch.full((2, 10), DEPTH)
    labels = torch.zeros(2, dtype=torch.long)
    for p in model.parameters():  # adaLN-Zero starts as the identity; make the blocks act
        torch.nn.init.normal_(p, std=0.05)
    with torch.no_grad():
        h = model.text_hidden(visible, counts, labels, None, phonemes, phoneme_padding)
        alone = model.text_hidden(
            visible[1:], counts[1:], labels[1:], None, phonemes[1:, :5], phoneme_padding[1:, :5]
        )
        other = phonemes.clone()
        other[0, 0] = (other[0, 0] % (VOCAB - 1)) + 1
        changed = model.text_hidden(visible, counts, labels, None, other, phoneme_padding)
    assert h.shape == (2, 10, 32)
    assert torch.allclose(h[1], alone[0], atol=1e-5)
    assert not torch.allclose(h[0], changed[0])


def test_masked_backbone_still_takes_its_full_length_and_shorter() -> None:
    model = MaskedRVQTransformer(
        MaskedTransformerConfig(length=6, depth=2, dim=4, num_classes=3, width=16, layers=1)
    )
    labels = torch.zeros(2, dtype=torch.long)
    assert model.hidden(torch.randn(2, 6, 4), torch.ones(2, 6, dtype=torch.long), labels).shape == (
        2,
        6,
        16,
    )
    assert (
        model.hidden(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.long), labels).shape[1] == 3
    )
    with pytest.raises(ValueError, match="<= 6"):
        model.hidden(torch.randn(2, 7, 4), torch.ones(2, 7, dtype=torch.long), labels)


@pytest.mark.parametrize("frame_conv", [0, 2])
def test_ar_prompt_unchanged_and_cache_matches_teacher_forcing(frame_conv: int) -> None:
    quantizer = ResidualVQ(ResidualVQConfig(dim=DIM, codes=CODES, depth=DEPTH)).eval()
    model = _ar(frame_conv)
    phonemes, phoneme_padding, frame_text = _text()
    tokens = torch.randint(0, CODES, (2, 14, DEPTH))
    labels = torch.zeros(2, dtype=torch.long)
    loss = ar_loss(model.bind(phonemes, phoneme_padding, frame_text), tokens, labels)
    assert torch.isfinite(loss.loss)
    with torch.no_grad():
        logits = model(tokens[:1], labels[:1], phonemes[:1], phoneme_padding[:1], frame_text[:1])
        bound = model.bind(phonemes[:1], phoneme_padding[:1], frame_text[:1])
        cache = bound.new_cache(labels[:1])
        bound.spatial_step(None, cache)
        first = bound.depth_step(None, cache)
        second = bound.depth_step(tokens[:1, 0, 0], cache)
        bound.spatial_step(tokens[:1, 0], cache)
        next_position = bound.depth_step(None, cache)
        # a row padded in a batch sees what it sees alone (packing keeps padding at the end)
        both = model(tokens, labels, phonemes, phoneme_padding, frame_text)
        alone = model(
            tokens[1:], labels[1:], phonemes[1:, :5], phoneme_padding[1:, :5], frame_text[1:]
        )
    assert torch.allclose(first, logits[0, 0, 0], atol=1e-5)
    assert torch.allclose(second, logits[0, 0, 1], atol=1e-5)
    assert torch.allclose(next_position, logits[0, 1, 0], atol=1e-5)
    assert torch.allclose(both[1], alone[0], atol=1e-5)
    depths = torch.zeros(1, 14, dtype=torch.long)
    depths[:, :5] = DEPTH
    out = ARSampler(guider=ClassifierFreeGuidance(2.0)).sample(
        bound, quantizer, labels[:1], 14, prompt_tokens=tokens[:1], prompt_depths=depths
    )
    assert torch.equal(out[:, :5], tokens[:1, :5])
    with pytest.raises(ValueError, match="equal text length"):
        model.bind(phonemes, phoneme_padding, frame_text).new_cache(labels)


@pytest.mark.parametrize("make", [TTSTransformerConfig, TextRQTransformerConfig])
def test_frame_conv_needs_the_text_on_the_frames(make) -> None:  # noqa: ANN001
    sizes = {"dim": DIM} if make is TTSTransformerConfig else {"codes": CODES}
    with pytest.raises(ValueError, match="frame_text"):
        make(length=8, depth=DEPTH, vocabulary=VOCAB, frame_conv=2, **sizes)


def test_empty_text_row_is_an_error() -> None:
    model = _tts(frame_text=False)
    phonemes = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="no phonemes"):
        model.text_hidden(
            torch.randn(1, 4, DIM),
            torch.full((1, 4), DEPTH),
            torch.zeros(1, dtype=torch.long),
            None,
            phonemes,
            torch.ones(1, 3, dtype=torch.bool),
        )


def test_target_frames_follow_the_prompt_rate() -> None:
    assert target_frames(40, 20, 30) == 60
    with pytest.raises(ValueError, match="phoneme"):
        target_frames(40, 0, 3)


def test_paper_scale_config_constructs() -> None:
    with torch.device("meta"):
        model = TextToSpeechTransformer(PAPER_SCALE)
    parameters = sum(p.numel() for p in model.parameters())
    assert PAPER_SCALE.depth == 32
    assert 500e6 < parameters < 750e6, parameters


@pytest.fixture(scope="module")
def untrained() -> tuple[MelRVQVAE, TextToSpeechTransformer, PhonemeTokenizer]:
    codec = MelRVQVAE(MelCodecConfig(hidden=8, latent_dim=DIM, codes=CODES, depth=DEPTH)).eval()
    model = TextToSpeechTransformer(
        TTSTransformerConfig(
            length=64,
            depth=DEPTH,
            dim=DIM,
            vocabulary=len(PhonemeTokenizer()),
            width=16,
            layers=1,
            heads=2,
            text_layers=0,
            components=2,
            head_rank=4,
        )
    ).eval()
    return codec, model, PhonemeTokenizer()


@pytest.mark.parametrize(
    ("text", "audio", "rate", "match"),
    [
        ("", 16000, 16000, "empty"),
        ("hello 😀 world", 16000, 16000, "character"),
        ("hello world", 300, 16000, "shorter than one latent frame"),
        ("hello world", 16000, 22050, "22050 Hz is not supported"),
    ],
)
def test_synthesize_bad_input_is_a_clear_error(
    untrained: tuple[MelRVQVAE, TextToSpeechTransformer, PhonemeTokenizer],
    text: str,
    audio: int,
    rate: int,
    match: str,
) -> None:
    codec, model, tokenizer = untrained
    prompt = 0.1 * torch.randn(audio)
    with pytest.raises(ValueError, match=match):
        synthesize(codec, model, tokenizer, text, prompt, rate, "a short prompt")


def test_synthesize_generates_the_requested_frames(
    untrained: tuple[MelRVQVAE, TextToSpeechTransformer, PhonemeTokenizer],
) -> None:
    codec, model, tokenizer = untrained
    sampler = ResGenSampler(SamplerConfig(steps=2))
    audio = synthesize(
        codec,
        model,
        tokenizer,
        "hello",
        0.1 * torch.randn(8000),
        16000,
        "a prompt",
        sampler=sampler,
        frames=5,
        vocoder_iterations=2,
    )
    assert audio.shape == (5 * codec.samples_per_token,)


def test_bound_text_repeats_for_guidance_and_rejects_mismatches() -> None:
    phonemes, phoneme_padding, frame_text = _text()
    for bound in (
        _tts().bind(phonemes, phoneme_padding, frame_text),
        _ar().bind(phonemes, phoneme_padding, frame_text),
    ):
        ids, pad, frames = bound.repeated_text(4)  # the doubled batch of guidance
        assert torch.equal(ids, torch.cat([phonemes, phonemes]))
        assert torch.equal(pad, torch.cat([phoneme_padding, phoneme_padding]))
        assert frames is not None and torch.equal(frames, torch.cat([frame_text, frame_text]))
        assert bound.null_label == 1
        with pytest.raises(ValueError, match="3 rows for 2 bound texts"):
            bound.repeated_text(3)
    # mismatched shapes: the shape check of the test suite, or the bind's own ValueError
    with pytest.raises((ValueError, TypeCheckError)):
        _tts().bind(phonemes, phoneme_padding[:, :3])
    with pytest.raises((ValueError, TypeCheckError)):
        _ar().bind(phonemes, phoneme_padding, frame_text[:1])


@pytest.mark.parametrize("make", [_tts, _ar])
def test_dropout_acts_in_training_only(make) -> None:  # noqa: ANN001
    config = make().config
    settings = {**config.to_dict(), "text_dropout": 0.0}  # only the residual dropout varies
    plain = type(make())(type(config)(**settings))
    for p in plain.parameters():  # adaLN-Zero starts as the identity; make the blocks act
        torch.nn.init.normal_(p, std=0.05)
    dropped = type(plain)(type(config)(**{**settings, "dropout": 0.5}))
    dropped.load_state_dict(plain.state_dict())
    phonemes, phoneme_padding, frame_text = _text()
    tokens = torch.randint(0, CODES, (2, 14, DEPTH))
    visible, counts = torch.randn(2, 14, DIM), torch.full((2, 14), DEPTH)
    labels = torch.zeros(2, dtype=torch.long)

    def run(model: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            if isinstance(model, TextToSpeechTransformer):
                return model.text_hidden(
                    visible, counts, labels, None, phonemes, phoneme_padding, frame_text
                )
            return model(tokens, labels, phonemes, phoneme_padding, frame_text)

    reference = run(plain.eval())
    assert torch.equal(run(plain.train()), reference)  # nothing random without dropout
    assert torch.equal(run(dropped.eval()), reference)
    assert not torch.allclose(run(dropped.train()), reference)
    with pytest.raises(ValueError, match="dropout"):
        type(config)(**{**settings, "dropout": 1.0})


def _prompted_batch(model: TextToSpeechTransformer) -> TTSBatch:
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, CODES, (2, 12, DEPTH), generator=generator)
    padding = torch.zeros(2, 12, dtype=torch.bool)
    padding[1, 9:] = True
    tokens[padding] = 0
    given = torch.zeros(2, 12, dtype=torch.bool)
    given[:, :4] = True
    phonemes = torch.randint(1, model.config.vocabulary, (2, 5), generator=generator)
    no_text = torch.full((2, 12), -1)
    return TTSBatch(tokens, padding, given, phonemes, torch.zeros(2, 5, dtype=torch.bool), no_text)


def test_full_mask_guess_is_the_deterministic_first_sampling_step(
    untrained: tuple[MelRVQVAE, TextToSpeechTransformer, PhonemeTokenizer],
) -> None:
    codec, mixture, _ = untrained
    # one Gaussian (the demo's head): its mean is what a deterministic step quantises
    model = TextToSpeechTransformer(evolve(mixture.config, components=1)).eval()
    batch = _prompted_batch(model)
    guess = full_mask_guess(model, codec, batch)
    assert torch.equal(guess[batch.given], batch.tokens[batch.given])  # the prompt is kept
    sampled = ResGenSampler(SamplerConfig(steps=1, temperature=0.0)).sample(
        model.bind(batch.phonemes, batch.phoneme_padding, None),
        codec.quantizer,
        torch.zeros(2, dtype=torch.long),
        12,
        prompt_tokens=batch.tokens,
        prompt_depths=batch.given.long() * DEPTH,
        padding=batch.padding,
        generator=torch.Generator().manual_seed(0),
    )
    real = ~batch.padding
    assert torch.equal(sampled[real], guess[real])


def test_scheduled_sampling_loss_reads_the_guess(
    untrained: tuple[MelRVQVAE, TextToSpeechTransformer, PhonemeTokenizer],
) -> None:
    codec, model, _ = untrained
    batch = _prompted_batch(model)

    def loss(guess: torch.Tensor | None) -> float:
        generator = torch.Generator().manual_seed(1)
        return float(prompted_resgen_loss(model, codec, batch, generator, guess=guess))

    plain = loss(None)
    assert loss(batch.tokens) == pytest.approx(plain, abs=1e-6)  # a perfect guess changes nothing
    assert loss(full_mask_guess(model, codec, batch)) != pytest.approx(plain, abs=1e-4)

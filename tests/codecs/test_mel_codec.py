"""The speech codec: log-mel front-end, Griffin-Lim vocoder, and the mel RVQ-VAE (shapes,
variable-length padding, the depth-32 option, clear errors, a tiny overfit)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from resgen.codecs import (
    GriffinLimVocoder,
    LogMelSpectrogram,
    MelCodecConfig,
    MelConfig,
    MelRVQVAE,
    Vocoder,
)
from resgen.codecs.mel import lengths_to_padding, padding_to_lengths

SR = 16000


def _tones(lengths: list[int], seed: int = 0) -> torch.Tensor:
    """Right-padded ``[batch, max(lengths)]`` synthetic 'speech': a chirp plus two harmonics with
    a slow amplitude envelope, different per row; the pad holds noise (it must not matter)."""
    g = torch.Generator().manual_seed(seed)
    total = max(lengths)
    t = torch.arange(total) / SR
    rows = []
    for i, n in enumerate(lengths):
        f0 = 120.0 + 40.0 * i + 60.0 * t
        phase = 2 * math.pi * torch.cumsum(f0, 0) / SR
        env = 0.5 + 0.4 * torch.sin(2 * math.pi * (1.5 + i) * t)
        x = env * (0.4 * torch.sin(phase) + 0.2 * torch.sin(2 * phase) + 0.1 * torch.sin(5 * phase))
        x[n:] = torch.randn(total - n, generator=g)
        rows.append(x)
    return torch.stack(rows)


def _small(**kw: object) -> MelCodecConfig:
    args = {"hidden": 32, "latent_dim": 8, "codes": 32, "depth": 4} | kw
    return MelCodecConfig(**args)


@pytest.fixture(scope="module")
def frontend() -> LogMelSpectrogram:
    return LogMelSpectrogram(MelConfig())


@pytest.fixture(scope="module")
def codec() -> MelRVQVAE:
    torch.manual_seed(0)
    model = MelRVQVAE(_small())
    mels, padding = LogMelSpectrogram()(
        _tones([8000, 6000, 4000]), torch.tensor([8000, 6000, 4000])
    )
    model.fit_normalization(mels, padding)
    model.train()
    model(mels, padding)  # k-means initialisation of the codebooks
    return model.eval()


# ---------------------------------------------------------------- front-end
def test_frontend_shapes_and_frame_counts(frontend: LogMelSpectrogram) -> None:
    cfg = frontend.config
    assert cfg.frame_rate == 62.5 and frontend.sample_rate == SR and frontend.hop == 256
    lengths = torch.tensor([16000, 12000, 300, 1])
    log_mel, padding = frontend(_tones(lengths.tolist()), lengths, sample_rate=SR)
    assert log_mel.shape == (4, 1 + 16000 // 256, 80) == (4, 63, 80)
    assert padding.dtype == torch.bool and padding.shape == (4, 63)
    assert (
        (~padding).sum(-1).tolist() == [63, 47, 2, 1] == [cfg.frames(n) for n in lengths.tolist()]
    )
    assert torch.all(log_mel[padding] == cfg.silence)
    assert torch.isfinite(log_mel).all() and float(log_mel.min()) >= cfg.silence


def test_frontend_pad_content_and_batching_do_not_matter(frontend: LogMelSpectrogram) -> None:
    lengths = torch.tensor([9000, 5000])
    wave = _tones(lengths.tolist(), seed=0)
    other = _tones(lengths.tolist(), seed=1)  # same real samples, different pad noise
    a, pa = frontend(wave, lengths)
    b, pb = frontend(other, lengths)
    assert torch.equal(pa, pb) and torch.allclose(a, b, atol=1e-5)
    alone, _ = frontend(wave[1:, :5000])
    assert torch.allclose(alone[0], a[1, : alone.shape[1]], atol=1e-4)


def test_padding_helpers() -> None:
    padding = lengths_to_padding(torch.tensor([3, 0, 5]), 5)
    assert padding.tolist()[0] == [False, False, False, True, True]
    assert padding_to_lengths(padding).tolist() == [3, 0, 5]
    with pytest.raises(ValueError, match="right padding"):
        padding_to_lengths(torch.tensor([[True, False, False]]))


# ---------------------------------------------------------------- vocoder
def test_griffin_lim_round_trip(frontend: LogMelSpectrogram) -> None:
    lengths = torch.tensor([16000, 10000])
    log_mel, padding = frontend(_tones(lengths.tolist()), lengths)
    vocoder = GriffinLimVocoder(frontend.config, iterations=32)
    assert isinstance(vocoder, Vocoder) and vocoder.sample_rate == SR
    torch.manual_seed(0)
    wave = vocoder(log_mel, padding)
    frames = log_mel.shape[1]
    assert wave.shape == (2, frames * 256)
    real_frames = (~padding).sum(-1)
    assert wave[1, int(real_frames[1]) * 256 :].abs().max() == 0  # padded frames are silent
    again, _ = frontend(wave, real_frames * 256)
    again = again[:, :frames]
    real = ~padding
    target, got = log_mel.exp()[real], again.exp()[real]
    convergence = float((target - got).norm() / target.norm())
    assert convergence < 0.22, convergence  # about 0.15 measured
    # Mel L1 on a 40 dB range below each frame's peak (the log floor region is meaningless).
    floor = log_mel.amax(-1, keepdim=True) - math.log(100.0)
    l1 = (again.maximum(floor) - log_mel.maximum(floor)).abs()[real].mean()
    assert float(l1) < 0.2, float(l1)  # about 0.09 measured


def test_griffin_lim_phase_comes_from_its_seed(frontend: LogMelSpectrogram) -> None:
    log_mel, _ = frontend(_tones([4000]), torch.tensor([4000]))
    seeded = GriffinLimVocoder(frontend.config, iterations=2, seed=3)
    torch.manual_seed(0)
    first = seeded(log_mel)
    after = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(seeded(log_mel), first)  # the same audio on every call
    assert torch.equal(torch.rand(4), after)  # and the global random state is untouched
    assert not torch.equal(GriffinLimVocoder(frontend.config, iterations=2, seed=4)(log_mel), first)
    unseeded = GriffinLimVocoder(frontend.config, iterations=2, seed=None)
    torch.manual_seed(3)
    assert torch.equal(unseeded(log_mel), first)  # None: the global generator, here seeded alike


# ---------------------------------------------------------------- codec
def test_codec_round_trip_shapes_and_properties(codec: MelRVQVAE) -> None:
    assert codec.depth == 4 and codec.codes == 32
    assert codec.frame_rate == 62.5 / 4 == codec.config.frame_rate
    assert codec.sample_rate == SR and codec.hop == 256 and codec.samples_per_token == 1024
    assert codec.codebooks.shape == (4, 32, 8) and codec.quantizer is codec.rvq
    lengths = torch.tensor([8000, 5000, 1500])
    mels, padding = codec.frontend(_tones(lengths.tolist()), lengths)
    tokens, latent_padding = codec.encode(mels, padding)
    frames = mels.shape[1]  # 32 frames -> 8 token positions
    assert tokens.shape == (3, math.ceil(frames / 4), 4) and tokens.dtype == torch.long
    assert torch.equal(latent_padding, codec.latent_padding(padding))
    assert (~latent_padding).sum(-1).tolist() == [math.ceil(n / 4) for n in [32, 20, 6]]
    assert int(tokens.max()) < 32 and torch.all(tokens[latent_padding] == 0)
    decoded, frame_padding = codec.decode(tokens, latent_padding)
    assert decoded.shape == (3, tokens.shape[1] * 4, 80)
    assert (~frame_padding).sum(-1).tolist() == (4 * (~latent_padding).sum(-1)).tolist()
    out = codec(mels, padding)
    assert out.reconstruction.shape == mels.shape
    assert torch.equal(out.tokens, tokens) and torch.equal(out.latent_padding, latent_padding)
    real = ~padding
    assert torch.allclose(out.reconstruction[real], decoded[:, :frames][real], atol=1e-4)
    assert out.perplexity.shape == (4,) and out.commitment_loss.ndim == 0


def test_padding_never_changes_real_frames(codec: MelRVQVAE) -> None:
    lengths = torch.tensor([8000, 5000, 2100])
    mels, padding = codec.frontend(_tones(lengths.tolist()), lengths)
    noisy = mels.clone()
    noisy[padding] = torch.randn(int(padding.sum()), 80) * 50.0
    noisy[2, -1, 0] = float("nan")  # even NaN in the pad is ignored
    out_a, out_b = codec(mels, padding), codec(noisy, padding)
    real = ~padding
    assert torch.allclose(out_a.reconstruction[real], out_b.reconstruction[real], atol=1e-5)
    assert torch.equal(out_a.tokens, out_b.tokens)
    # The loss ignores the pad too (NaN included), and so do its gradients.
    loss_a, _ = codec.loss(mels, padding)
    loss_b, _ = codec.loss(noisy, padding)
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    loss_b.backward()
    assert all(torch.isfinite(p.grad).all() for p in codec.parameters() if p.grad is not None)
    codec.zero_grad(set_to_none=True)
    # An utterance codes the same alone as inside a padded batch.
    n = int(real[1].sum())
    alone = codec(mels[1:2, :n])
    assert torch.equal(alone.tokens[0], out_a.tokens[1, : alone.tokens.shape[1]])
    assert torch.allclose(alone.reconstruction[0], out_a.reconstruction[1, :n], atol=1e-5)
    # Tokens at padded positions never change the decoded real frames.
    tokens, latent_padding = codec.encode(mels, padding)
    scrambled = tokens.clone()
    scrambled[latent_padding] = torch.randint(0, 32, (int(latent_padding.sum()), 4))
    dec_a, frame_padding = codec.decode(tokens, latent_padding)
    dec_b, _ = codec.decode(scrambled, latent_padding)
    real = ~frame_padding
    assert torch.allclose(dec_a[real], dec_b[real], atol=1e-5)


def test_partial_depth_decoding_is_the_partial_sum(codec: MelRVQVAE) -> None:
    # unit-size codewords at every depth, so that each depth visibly moves the output
    codec = copy.deepcopy(codec)
    codec.rvq.codebooks.data = torch.randn(codec.rvq.codebooks.shape, generator=_seeded(1))
    tokens = torch.randint(0, 32, (2, 6, 4), generator=_seeded(2))
    latent_padding = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    full, frame_padding = codec.decode(tokens, latent_padding)
    same, _ = codec.decode(tokens, latent_padding, partial=True)
    assert torch.equal(same, full)
    coarse, coarse_padding = codec.decode(tokens[..., :2], latent_padding, partial=True)
    assert coarse.shape == full.shape and torch.equal(coarse_padding, frame_padding)
    real = ~frame_padding
    assert (coarse[real] - full[real]).abs().mean() > 0.1
    # the same as the whole tokens through a copy whose depths 2.. are zero vectors
    truncated = copy.deepcopy(codec)
    truncated.rvq.codebooks.data[2:] = 0
    expected, _ = truncated.decode(tokens, latent_padding)
    assert torch.allclose(coarse, expected, atol=1e-5)
    with pytest.raises(ValueError, match="depth 4"):
        codec.decode(tokens[..., :2], latent_padding)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_waveform_round_trip(codec: MelRVQVAE) -> None:
    lengths = torch.tensor([6000, 3000])
    tokens, latent_padding = codec.encode_waveform(_tones(lengths.tolist()), lengths, SR)
    wave, out_lengths = codec.decode_waveform(
        tokens, latent_padding, GriffinLimVocoder(codec.config.mel, iterations=2)
    )
    assert wave.shape == (2, tokens.shape[1] * 1024)
    # 6000 samples -> 24 frames -> 6 positions -> 6144 samples; 3000 -> 12 -> 3 -> 3072.
    assert out_lengths.tolist() == [6144, 3072]
    assert wave[1, 3072:].abs().max() == 0


def test_depth_32_option() -> None:
    model = MelRVQVAE(_small(depth=32, codes=8))
    assert model.depth == 32 and model.codebooks.shape == (32, 8, 8)
    mels, padding = LogMelSpectrogram()(_tones([4000, 2500]), torch.tensor([4000, 2500]))
    loss, out = model.train().loss(mels, padding)
    loss.backward()
    assert out.tokens.shape == (2, 4, 32) and torch.isfinite(loss)
    tokens, latent_padding = model.eval().encode(mels, padding)
    decoded, _ = model.decode(tokens, latent_padding)
    assert tokens.shape == (2, 4, 32) and decoded.shape == (2, 16, 80)


def test_clear_errors(codec: MelRVQVAE, frontend: LogMelSpectrogram) -> None:
    wave = _tones([4000])
    with pytest.raises(ValueError, match=r"22050 Hz is not supported.*resample"):
        frontend(wave, sample_rate=22050)
    with pytest.raises(ValueError, match=r"torchaudio\.functional\.resample"):
        codec.encode_waveform(wave, sample_rate=44100)
    with pytest.raises(ValueError, match="shorter than one latent frame"):
        codec.encode(torch.zeros(1, 3, 80))
    short_pad = torch.tensor([[False] * 3 + [True] * 9, [False] * 12])
    with pytest.raises(ValueError, match="utterance 0 has 3 real mel frames"):
        codec.encode(torch.zeros(2, 12, 80), short_pad)
    with pytest.raises(ValueError, match="shorter than one latent frame"):
        codec.encode_waveform(_tones([700]))  # 700 samples: 3 frames
    with pytest.raises(ValueError, match=r"\[batch, frames, 80\]"):
        codec.encode(torch.zeros(1, 16, 64))
    with pytest.raises(ValueError, match="right padding"):
        codec.encode(torch.zeros(1, 8, 80), torch.tensor([[True] + [False] * 7]))
    with pytest.raises(ValueError, match="token out of range"):
        codec.decode(torch.full((1, 3, 4), 32))
    with pytest.raises(ValueError, match="produces 22050 Hz"):
        codec.decode_waveform(
            torch.zeros(1, 2, 4, dtype=torch.long),
            vocoder=GriffinLimVocoder(MelConfig(sample_rate=22050), iterations=1),
        )
    with pytest.raises(ValueError, match="power of two"):
        MelCodecConfig(downsample=3)
    with pytest.raises(ValueError, match="Nyquist"):
        MelConfig(f_max=9000.0)
    with pytest.raises(ValueError, match=r"\[batch, frames, 80\]"):
        GriffinLimVocoder()(torch.zeros(1, 5, 81))


def test_config_round_trip() -> None:
    cfg = _small(depth=32, mel=MelConfig(f_min=50.0))
    assert MelCodecConfig.from_dict(cfg.to_dict()) == cfg


def test_tiny_overfit() -> None:
    torch.manual_seed(0)
    lengths = torch.tensor([6000, 5000, 4000])
    mels, padding = LogMelSpectrogram()(_tones(lengths.tolist()), lengths)
    model = MelRVQVAE(_small(depth=4, codes=16)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss, _ = model.loss(mels, padding)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_mel_codec_is_a_sequence_codec() -> None:
    from resgen.codecs import SequenceCodec

    codec = MelRVQVAE(MelCodecConfig(hidden=16, latent_dim=4, codes=8, depth=2))
    assert isinstance(codec, SequenceCodec)
    assert codec.frame_rate == pytest.approx(15.625)

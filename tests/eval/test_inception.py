"""The FID Inception-v3 on real Fashion-MNIST images (a few dozen, to stay fast on 2 cores)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from resgen.data.image_io import load_idx_images
from resgen.eval.features import InceptionFeatures, compute_features, to_unit_range
from resgen.eval.frechet import frechet_distance_from_features as fid

FASHION = "/usr/share/datasets/fashion-mnist/{}-images-idx3-ubyte.gz"
N = 48


@pytest.fixture(scope="module")
def features() -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    train = to_unit_range(load_idx_images(FASHION.format("train"), limit=N))
    test = to_unit_range(load_idx_images(FASHION.format("t10k"), limit=N))
    noised = (train + torch.randn_like(train)).clamp(-1, 1)
    ext = InceptionFeatures()
    batch = torch.cat([train, test, noised])
    feats = compute_features(ext, batch, batch_size=48, progress=False)
    return {"train": feats[:N], "test": feats[N : 2 * N], "noised": feats[2 * N :]}


def test_features_are_2048_d_and_finite(features) -> None:
    assert features["train"].shape == (N, 2048)
    assert np.isfinite(features["train"]).all()
    # pool3 follows a ReLU and an average: non-negative.
    assert (features["train"] >= 0).all()


def test_fid_with_itself_is_zero(features) -> None:
    assert fid(features["train"], features["train"]) == pytest.approx(0.0, abs=1e-6)


def test_train_vs_test_far_below_train_vs_noised(features) -> None:
    fid_test = fid(features["train"], features["test"])
    fid_noised = fid(features["train"], features["noised"])
    assert fid_test > 1.0  # different images
    # Measured at N=48: about 133 vs 374 (the small-sample bias is large and the same for both).
    assert fid_noised > 2 * fid_test, (fid_test, fid_noised)


def test_batch_composition_does_not_change_features(features) -> None:
    train = to_unit_range(load_idx_images(FASHION.format("train"), limit=2))
    single = InceptionFeatures()(train[:1]).numpy()
    np.testing.assert_allclose(single[0], features["train"][0], rtol=1e-3, atol=1e-4)


def test_the_offline_inception_has_no_classifier_head() -> None:
    # Why the Inception Score uses a probe (resgen.eval.adm_reference): the TorchScript file stops
    # at pool3. Its forward takes the image alone and returns [batch, 2048]; its 376 tensors hold
    # 21,802,784 numbers, all convolution kernels (4-d) and batch-norm vectors (1-d): no
    # 2048 x 1008 logits matrix (2,064,384 more numbers) to give p(y|x). If a later file ships one,
    # this fails and the recipe should switch to the standard IS.
    from resgen.eval.features import inception_weights_path

    network = torch.jit.load(str(inception_weights_path()), map_location="cpu")
    params = dict(network.named_parameters())
    assert sum(p.numel() for p in params.values()) == 21_802_784
    assert {p.dim() for p in params.values()} == {1, 4}
    assert not list(network.named_buffers())
    assert [a.name for a in network.forward.schema.arguments] == ["self", "x"]

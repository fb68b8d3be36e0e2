"""Feature extractors (without the Inception network), batching, caching and image loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from resgen.data.image_io import load_idx_images, load_image_dir, load_images
from resgen.eval.features import (
    ClassifierFeatures,
    FeatureExtractor,
    InceptionFeatures,
    compute_features,
    compute_stats,
    tf_bilinear_resize,
    to_unit_range,
)
from resgen.eval.frechet import FeatureStats

FASHION_TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def grid_sample_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1 bilinear resize written as StyleGAN does it: a shifted affine grid, border padding."""
    b, c, h, w = x.shape
    out_h, out_w = size
    theta = torch.tensor(
        [[1.0, 0.0, 1 / w - 1 / out_w], [0.0, 1.0, 1 / h - 1 / out_h]], dtype=torch.float64
    )
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, out_h, out_w], align_corners=False)
    return F.grid_sample(
        x.double(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


@pytest.mark.parametrize(
    ("src", "dst"), [((28, 28), (299, 299)), ((17, 40), (23, 9)), ((5, 5), (5, 5))]
)
def test_tf_bilinear_resize_matches_grid_sample(src, dst) -> None:
    x = torch.rand(2, 3, *src) * 255
    expected = grid_sample_resize(x, dst).float()
    torch.testing.assert_close(tf_bilinear_resize(x, dst), expected, atol=1e-3, rtol=1e-5)


def test_inception_preprocess_range_and_grayscale() -> None:
    ext = InceptionFeatures()
    images = torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1).expand(2, 1, 28, 28)
    x = ext.preprocess(images)
    assert x.shape == (2, 3, 299, 299)
    assert x[0].min() == -1.0 and x[1].max() == pytest.approx(255 / 128 - 1)
    with pytest.raises(ValueError, match="channels"):
        ext.preprocess(torch.zeros(1, 2, 8, 8))
    assert isinstance(ext, FeatureExtractor)


class StandIn(nn.Module):
    """A tiny classifier with the FashionClassifier interface."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 16), nn.Tanh())
        self.head = nn.Linear(16, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def test_classifier_features_and_batching(tmp_path) -> None:
    ext = ClassifierFeatures(StandIn())
    assert isinstance(ext, FeatureExtractor)
    images = load_idx_images(FASHION_TEST, limit=130)
    feats = compute_features(ext, images, batch_size=50, progress=False)
    assert feats.shape == (130, 16) and feats.dtype == np.float32 and ext.dim == 16
    one_shot = ext(to_unit_range(images)).numpy()
    np.testing.assert_allclose(feats, one_shot, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expects images"):
        ext(torch.zeros(2, 3, 28, 28))
    with pytest.raises(TypeError, match="features"):
        ClassifierFeatures(nn.Linear(2, 2))


def test_compute_stats_cache(tmp_path) -> None:
    ext = ClassifierFeatures(StandIn())
    images = load_idx_images(FASHION_TEST, limit=40)
    cache = tmp_path / "stats.npz"
    first = compute_stats(ext, images, progress=False, cache=cache)
    assert cache.is_file() and first.count == 40
    # A second call reads the cache and never touches the images.
    second = compute_stats(ext, iter(()), progress=False, cache=cache)
    np.testing.assert_array_equal(first.sigma, second.sigma)
    assert FeatureStats.load(cache).extractor == "fashion-classifier"


def test_image_dir_round_trip(tmp_path) -> None:
    images = load_idx_images(FASHION_TEST, limit=5)
    for i, img in enumerate(images):
        Image.fromarray(img[0].numpy()).save(tmp_path / f"{i:03d}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    loaded = load_image_dir(tmp_path)
    assert loaded.shape == (5, 1, 28, 28) and loaded.dtype == torch.uint8
    torch.testing.assert_close(loaded, images)
    torch.testing.assert_close(load_images(tmp_path, limit=2), images[:2])
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.new("RGB", (28, 28), (10, 20, 30)).save(rgb / "a.png")
    Image.new("L", (28, 28), 5).save(rgb / "b.png")
    mixed = load_image_dir(rgb)
    assert mixed.shape == (2, 3, 28, 28) and mixed[1].eq(5).all()


def test_image_io_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="no image files"):
        load_image_dir(tmp_path)
    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    Image.new("L", (14, 14)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="different sizes"):
        load_image_dir(tmp_path)
    (tmp_path / "bad-idx3-ubyte").write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match="IDX3"):
        load_idx_images(tmp_path / "bad-idx3-ubyte")
    with pytest.raises(FileNotFoundError):
        load_images(tmp_path / "nothing")

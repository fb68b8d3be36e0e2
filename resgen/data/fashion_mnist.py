"""Fashion-MNIST from the idx files of Debian's ``dataset-fashion-mnist`` package (offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from resgen.data.idx import read_idx

__all__ = ["DEFAULT_FASHION_DIR", "FASHION_CLASSES", "DatasetNotFoundError", "load_fashion_mnist"]

DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where ``apt-get install dataset-fashion-mnist`` puts the files."""

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Class names, index = label."""

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are not where they were looked for."""


def load_fashion_mnist(
    split: str = "train", data_dir: str | Path | None = None
) -> tuple[Float[Tensor, "n 1 28 28"], Int[Tensor, " n"]]:
    """Images in ``[-1, 1]`` ``[n, 1, 28, 28]`` and labels ``[n]`` of a Fashion-MNIST split.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        data_dir: folder holding the four ``*-ubyte.gz`` files; default
            :data:`DEFAULT_FASHION_DIR`.

    Raises:
        DatasetNotFoundError: the files are missing (the message names the package to install).
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(data_dir) if data_dir is not None else DEFAULT_FASHION_DIR
    image_file, label_file = (folder / name for name in _FILES[split])
    missing = [str(p) for p in (image_file, label_file) if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST files not found: {', '.join(missing)}. Install them with "
            "`apt-get install dataset-fashion-mnist` (Debian), or pass --data-dir pointing to a "
            "folder with the four *-ubyte.gz idx files."
        )
    images = read_idx(image_file, ndim=3)
    labels = read_idx(label_file, ndim=1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(
            f"{image_file} holds {len(images)} images of {images.shape[1:]} pixels and "
            f"{label_file} {len(labels)} labels: the files are not a Fashion-MNIST split"
        )
    pixels = torch.from_numpy(images.reshape(-1, 1, 28, 28).copy()).float() / 127.5 - 1.0
    return pixels, torch.from_numpy(labels.astype(np.int64))

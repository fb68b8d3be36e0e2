"""The one IDX reader: Fashion-MNIST's images and labels and ``resgen eval``'s IDX images."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from resgen.data.fashion_mnist import load_fashion_mnist
from resgen.data.idx import read_idx
from resgen.data.image_io import load_idx_images


def _idx(values: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, values.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in values.shape
    )
    return header + values.astype(np.uint8).tobytes()


def _write_split(folder: Path, n: int, prefix: str = "t10k") -> np.ndarray:
    images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    labels = np.arange(n, dtype=np.uint8) % 10
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return images


def test_read_idx_gzipped_or_not(tmp_path: Path) -> None:
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(_idx(values))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(values)))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        assert np.array_equal(read_idx(tmp_path / name, ndim=3), values)
    assert load_idx_images(tmp_path / "a-idx3-ubyte.gz", limit=1).shape == (1, 1, 3, 4)


def test_read_idx_names_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(_idx(np.zeros(5))[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)
    path.write_bytes(_idx(np.zeros(5)))
    with pytest.raises(ValueError, match="IDX3"):
        read_idx(path, ndim=3)
    path.write_bytes(b"PNG....")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


def test_fashion_mnist_reads_both_files_with_it(tmp_path: Path) -> None:
    images = _write_split(tmp_path, 6)
    pixels, labels = load_fashion_mnist("test", tmp_path)
    assert pixels.shape == (6, 1, 28, 28) and labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert np.allclose((pixels[:, 0].numpy() + 1.0) * 127.5, images, atol=1e-4)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.zeros(5))))
    with pytest.raises(ValueError, match="not a Fashion-MNIST split"):
        load_fashion_mnist("test", tmp_path)

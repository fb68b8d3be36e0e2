"""The IDX file format of MNIST and Fashion-MNIST: one reader for images and labels.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian 4-byte size per dimension, then the values in C order. The bundled data sets use
unsigned bytes only (type ``0x08``); files may be gzipped (``.gz``).
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx"]

_UBYTE = 0x08


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """The unsigned-byte array stored in an IDX file (gzipped when its name ends in ``.gz``).

    Args:
        path: e.g. ``/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz``.
        ndim: the number of dimensions the caller expects (3 for images ``[n, height, width]``,
            1 for labels ``[n]``); ``None`` accepts any.

    Returns:
        A read-only uint8 array of the file's shape.

    Raises:
        ValueError: the file cannot be read, is not an unsigned-byte IDX file of ``ndim``
            dimensions, or is truncated (the message names the file).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is not a readable IDX file: {error}") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    kind, dims = data[2], data[3]
    if kind != _UBYTE or (ndim is not None and dims != ndim):
        raise ValueError(
            f"{path} is not an IDX{ndim or ''} unsigned-byte file "
            f"(magic {int.from_bytes(data[:4], 'big'):#010x})"
        )
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"{path} is too short to be an IDX file")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if len(data) != header + int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: {len(data) - header} bytes for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)

"""Reading image sets for the evaluators: folders of image files and IDX (MNIST-format) files.

Everything is returned as uint8 pixels, ``[n, channels, height, width]``; convert with
:func:`resgen.eval.features.to_unit_range` when a float image in ``[-1, 1]`` is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from jaxtyping import UInt8
from torch import Tensor

from resgen.data.idx import read_idx

__all__ = ["IMAGE_SUFFIXES", "list_images", "load_image_dir", "load_idx_images", "load_images"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_images(directory: str | Path) -> list[Path]:
    """Image files of a folder (not recursive), sorted by name.

    Args:
        directory: the folder.

    Returns:
        Paths whose suffix is one of :data:`IMAGE_SUFFIXES` (case-insensitive).

    Raises:
        NotADirectoryError: when ``directory`` is not a folder.
        ValueError: when it holds no image.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"not a folder of images: {directory}")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    return files


def load_image_dir(
    directory: str | Path, limit: int | None = None
) -> UInt8[Tensor, "n channels height width"]:
    """Load every image of a folder (sorted by file name) as uint8 pixels.

    All images must have the same size. Grayscale images (PIL mode ``L``, ``1``, ``I;16``...) give
    one channel, everything else is converted to RGB; a folder mixing the two is converted to RGB.
    16-bit images are scaled to 8 bits (``round(v * 255 / 65535)``), not clipped.

    Args:
        directory: the folder.
        limit: keep only the first ``limit`` files.

    Returns:
        ``[n, channels, height, width]`` uint8, channels 1 or 3.

    Raises:
        ValueError: on an empty folder, images of different sizes, or a file that is not a
            readable image (corrupt, truncated, or not an image at all).
    """
    files = list_images(directory)[:limit]
    arrays: list[np.ndarray] = []
    modes: list[str] = []
    for path in files:
        array = _read_image(path)
        arrays.append(array)
        modes.append("L" if array.ndim == 2 else "RGB")
    if "RGB" in modes and "L" in modes:
        arrays = [np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a for a in arrays]
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"images in {directory} have different sizes: {sorted(sizes)}")
    stack = np.stack(arrays)
    if stack.ndim == 3:
        stack = stack[..., None]
    return torch.from_numpy(rearrange(stack, "n h w c -> n c h w").copy())


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _read_image(path: Path) -> np.ndarray:
    """One image as uint8 pixels: ``[h, w]`` for grayscale, ``[h, w, 3]`` otherwise."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, with its name
            if img.mode in _SIXTEEN_BIT_MODES:
                # PIL's convert("L") clips 16-bit values at 255; scale them instead
                wide = np.asarray(img, dtype=np.float64)
                return np.clip(np.round(wide * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
            if img.mode == "F":
                raise ValueError(f"{path}: floating-point images are not supported")
            gray = img.mode in ("1", "L", "LA")
            return np.asarray(img.convert("L" if gray else "RGB"))
    except (OSError, SyntaxError, Image.DecompressionBombError) as error:
        # PIL reports corrupt files as OSError (UnidentifiedImageError), SyntaxError or EOF
        raise ValueError(f"{path} is not a readable image ({error})") from error


def load_idx_images(
    path: str | Path, limit: int | None = None
) -> UInt8[Tensor, "n 1 height width"]:
    """Load an IDX image file (the MNIST / Fashion-MNIST format), gzipped or not.

    Args:
        path: e.g. ``/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz``.
        limit: keep only the first ``limit`` images.

    Returns:
        ``[n, 1, height, width]`` uint8.

    Raises:
        ValueError: when the file is not an IDX3 unsigned-byte image file.
    """
    images = read_idx(path, ndim=3)[:, None]
    return torch.from_numpy(images[:limit].copy())


def load_images(source: str | Path, limit: int | None = None) -> UInt8[Tensor, "n channels h w"]:
    """Load an image set from a folder of image files or an IDX file (``*-idx3-ubyte[.gz]``).

    Args:
        source: a folder or an IDX file.
        limit: keep only the first ``limit`` images (files sorted by name for a folder).

    Returns:
        ``[n, channels, height, width]`` uint8.
    """
    source = Path(source)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if source.is_dir():
        return load_image_dir(source, limit)
    if source.is_file() and "idx3" in source.name:
        return load_idx_images(source, limit)
    raise FileNotFoundError(f"not a folder of images nor an IDX image file: {source}")

"""A folder of your own small images, one sub-folder per class: a training set for the image recipe.

Layout::

    my-images/
        cats/      a.png b.jpg ...
        dogs/      ...

Class ``c`` is the ``c``-th sub-folder in name order; a folder holding image files and no
sub-folder is one class. Every image is converted to the recipe's format: grayscale,
centre-cropped to a square and resized to ``size`` x ``size`` (Lanczos), pixels in ``[-1, 1]``.
The last tenth of each class (files in name order, at least one) is held out as the test split.
(:mod:`resgen.data.image_folder` reads the ImageNet layout, with ``train/`` and ``val/`` splits,
for the ``imagenet`` recipe.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from attrs import frozen
from jaxtyping import Float, Int
from torch import Tensor

from resgen.data.image_io import IMAGE_SUFFIXES, _read_image, list_images

__all__ = ["ClassFoldersSplit", "is_class_folders", "load_class_folders"]

MIN_PER_CLASS = 2
"""Images a class needs: at least one to train on and one to hold out."""


@frozen
class ClassFoldersSplit:
    """What :func:`load_class_folders` returns.

    Attributes:
        classes: class names (the sub-folders), index = label.
        train_images: ``[n, 1, size, size]`` in ``[-1, 1]``.
        train_labels: ``[n]``.
        test_images: ``[m, 1, size, size]``: the last tenth of each class.
        test_labels: ``[m]``.
    """

    classes: tuple[str, ...]
    train_images: Float[Tensor, "train 1 size size"]
    train_labels: Int[Tensor, " train"]
    test_images: Float[Tensor, "test 1 size size"]
    test_labels: Int[Tensor, " test"]


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())


def is_class_folders(folder: str | Path) -> bool:
    """Whether ``folder`` is laid out as a folder of images (class sub-folders holding image
    files, or image files directly), as opposed to a folder of Fashion-MNIST's IDX files."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    subfolders = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return _has_images(folder) or any(_has_images(p) for p in subfolders)


def _to_square_gray(path: Path, size: int) -> np.ndarray:
    from PIL import Image, ImageOps

    pixels = _read_image(path)  # uint8 [h, w] or [h, w, 3]; a clear error for a bad file
    image = Image.fromarray(pixels).convert("L")
    return np.asarray(ImageOps.fit(image, (size, size), Image.Resampling.LANCZOS))


def load_class_folders(folder: str | Path, size: int = 28) -> ClassFoldersSplit:
    """Read a folder of class sub-folders (see the module docstring) and split it.

    Args:
        folder: the root folder.
        size: side of the square images returned.

    Returns:
        The class names and the train and test splits.

    Raises:
        NotADirectoryError: ``folder`` is not a folder.
        ValueError: no image at all, a class with fewer than :data:`MIN_PER_CLASS` images, or a
            file that is not a readable image (named).
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder of images: {root}")
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_dirs = [p for p in subfolders if _has_images(p)] or ([root] if _has_images(root) else [])
    if not class_dirs:
        raise ValueError(
            f"no images in {root}: put each class's images ({', '.join(IMAGE_SUFFIXES)}) in a "
            "sub-folder named after the class"
        )
    parts: dict[str, list[tuple[np.ndarray, int]]] = {"train": [], "test": []}
    for label, class_dir in enumerate(class_dirs):
        files = list_images(class_dir)
        if len(files) < MIN_PER_CLASS:
            raise ValueError(
                f"class {class_dir.name!r} has {len(files)} image(s); each class needs at least "
                f"{MIN_PER_CLASS} (one is held out for testing)"
            )
        held_out = max(1, len(files) // 10)
        for index, path in enumerate(files):
            split = "test" if index >= len(files) - held_out else "train"
            parts[split].append((_to_square_gray(path, size), label))

    def stack(items: list[tuple[np.ndarray, int]]) -> tuple[Tensor, Tensor]:
        pixels = torch.from_numpy(np.stack([p for p, _ in items]))[:, None].float()
        labels = torch.tensor([label for _, label in items], dtype=torch.long)
        return pixels / 127.5 - 1.0, labels

    train_x, train_y = stack(parts["train"])
    test_x, test_y = stack(parts["test"])
    names = tuple(p.name for p in class_dirs) if class_dirs != [root] else (root.name,)
    return ClassFoldersSplit(names, train_x, train_y, test_x, test_y)

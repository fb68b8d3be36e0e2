"""An ImageNet-style image folder (``train/<class>/*.JPEG``, ``val/<class>/...``) and ADM's crop.

:func:`scan_split` lists a split's classes (sub-folders, sorted by name: label ``i`` is the
``i``-th) and image files (sorted), refusing what cannot be a data set with one clear line: a
missing folder, no class folder, a class folder without images. :func:`check_same_classes`
refuses a validation split whose classes differ from training's. :func:`read_cropped` decodes
one file and crops it the way ADM's ImageNet pipeline does (:func:`adm_center_crop`), and says
what it had to do, so a recipe counts it instead of failing on the millionth file:

* :data:`CONVERTED` -- not an 8-bit RGB image (grayscale, CMYK, palette, with alpha...):
  converted to RGB, as PIL's ``convert("RGB")`` does;
* :data:`UPSCALED` -- its shorter side is below the crop: upscaled (bicubic) to the crop, as ADM
  does for every image whose shorter side is not the crop size;
* :data:`UNREADABLE` -- corrupt, truncated or not an image: skipped (``None`` pixels).

An image is given the first status that applies, in the order unreadable, upscaled, converted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from attrs import frozen
from jaxtyping import UInt8

__all__ = [
    "CONVERTED",
    "OK",
    "STATUS_NAMES",
    "UNREADABLE",
    "UPSCALED",
    "FolderSplit",
    "adm_center_crop",
    "check_same_classes",
    "read_cropped",
    "scan_split",
]

OK, CONVERTED, UPSCALED, UNREADABLE = 0, 1, 2, 3
STATUS_NAMES = ("ok", "converted_to_rgb", "upscaled_to_crop", "unreadable_skipped")
"""The name of each status (:data:`OK` ... :data:`UNREADABLE`), as counted in ``metrics.json``."""

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")


@frozen
class FolderSplit:
    """One split of an image folder.

    Attributes:
        root: the split's folder (e.g. ``ROOT/train``).
        classes: class folder names, sorted; label ``i`` is ``classes[i]``.
        files: every image file, by class then name.
        labels: the label of each file.
    """

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]


def scan_split(root: str | Path, split: str) -> FolderSplit:
    """List the classes and images of ``root/split``.

    Args:
        root: the data set's folder (holding ``train/`` and ``val/``).
        split: ``"train"`` or ``"val"``.

    Raises:
        FileNotFoundError: ``root`` or ``root/split`` is missing.
        ValueError: it holds no class folder, or a class folder holds no image file.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"the image folder {root} does not exist (give --data-dir ROOT)")
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: ROOT must hold {split}/<class>/<images>")
    classes = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    if not classes:
        raise ValueError(f"{folder} holds no class folder (expected {split}/<class>/<images>)")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise ValueError(
                f"the class folder {folder / name} holds no image "
                f"({', '.join(IMAGE_SUFFIXES)}); remove it or add its images"
            )
        files += found
        labels += [label] * len(found)
    return FolderSplit(folder, classes, tuple(files), tuple(labels))


def check_same_classes(train: FolderSplit, val: FolderSplit) -> None:
    """Refuse a validation split whose class folders differ from training's.

    Raises:
        ValueError: the message names the classes only one split has.
    """
    if train.classes == val.classes:
        return
    only_train = sorted(set(train.classes) - set(val.classes))
    only_val = sorted(set(val.classes) - set(train.classes))
    raise ValueError(
        f"the labels of {train.root} and {val.root} disagree: only in train: "
        f"{only_train[:5] or 'none'}{' ...' if len(only_train) > 5 else ''}; only in val: "
        f"{only_val[:5] or 'none'}{' ...' if len(only_val) > 5 else ''}"
    )


def adm_center_crop(image: object, size: int) -> UInt8[np.ndarray, "size size 3"]:
    """ADM's centre crop of a PIL RGB image: halve it (box filter) while its shorter side is at
    least ``2 * size``, resize it (bicubic) so the shorter side is ``size``, take the centre.

    Args:
        image: a ``PIL.Image.Image`` in mode RGB.
        size: the crop's side.

    Returns:
        ``[size, size, 3]`` uint8 pixels.
    """
    from PIL import Image

    while min(image.size) >= 2 * size:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), Image.BICUBIC)
    pixels = np.asarray(image)
    top, left = (pixels.shape[0] - size) // 2, (pixels.shape[1] - size) // 2
    return np.ascontiguousarray(pixels[top : top + size, left : left + size])


def read_cropped(path: Path, size: int) -> tuple[UInt8[np.ndarray, "size size 3"] | None, int]:
    """Decode ``path`` and crop it (:func:`adm_center_crop`); returns the pixels (``None`` when
    unreadable) and the status (:data:`OK`, :data:`CONVERTED`, :data:`UPSCALED` or
    :data:`UNREADABLE`, see the module's documentation)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()  # a truncated file fails here
            converted = image.mode != "RGB"
            rgb = image.convert("RGB") if converted else image.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None, UNREADABLE
    status = UPSCALED if min(rgb.size) < size else CONVERTED if converted else OK
    return adm_center_crop(rgb, size), status

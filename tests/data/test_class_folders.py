"""Reading a folder of one's own images (resgen.data.class_folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resgen.data.class_folders import is_class_folders, load_class_folders


def _folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (40, 30)) -> Path:
    for index, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            colour = (50 * index, 255 - 20 * i, 0)
            Image.new("RGB", size, colour).save(root / name / f"{i:03d}.png")
    return root


def test_classes_splits_and_conversion(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", {"b-dogs": 20, "a-cats": 3})
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    split = load_class_folders(root, size=28)
    assert split.classes == ("a-cats", "b-dogs")  # name order
    # the last tenth of each class (at least one file) is held out
    assert split.train_labels.tolist() == [0] * 2 + [1] * 18
    assert split.test_labels.tolist() == [0, 1, 1]
    assert split.train_images.shape == (20, 1, 28, 28) and split.test_images.shape == (3, 1, 28, 28)
    assert split.train_images.dtype == torch.float32
    assert -1.0 <= float(split.train_images.min()) and float(split.train_images.max()) <= 1.0
    # a uniform RGB image becomes its gray level everywhere (PIL's luma), scaled to [-1, 1]
    gray = np.asarray(Image.new("RGB", (1, 1), (0, 255, 0)).convert("L"))[0, 0]  # b-dogs 000
    torch.testing.assert_close(
        split.train_images[2], torch.full((1, 28, 28), gray / 127.5 - 1.0), atol=1e-6, rtol=0
    )


def test_a_folder_of_images_without_subfolders_is_one_class(tmp_path: Path) -> None:
    root = _folder(tmp_path, {"only": 4})
    split = load_class_folders(root / "only", size=8)
    assert split.classes == ("only",) and len(split.train_labels) == 3


def test_layouts_are_told_apart(tmp_path: Path) -> None:
    assert is_class_folders(_folder(tmp_path / "a", {"x": 2}))
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert not is_class_folders(idx) and not is_class_folders(tmp_path / "missing")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), "no images in"),
        (lambda root: _folder(root, {"a": 5, "lonely": 1}), "'lonely' has 1 image"),
        (lambda root: (_folder(root, {"a": 3}), (root / "a" / "bad.png").write_bytes(b"xx")),
         "bad.png is not a readable image"),
    ],
)  # fmt: skip
def test_bad_folders_are_named(tmp_path: Path, make, message: str) -> None:  # noqa: ANN001
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(ValueError, match=message):
        load_class_folders(root)

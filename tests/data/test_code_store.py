"""The code store: byte-identical whoever writes it, refused when made otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest
import store_worker
import torch

from resgen.data.code_store import (
    StoreMismatchError,
    code_dtype,
    open_code_store,
    store_bytes,
)

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(store_worker.__file__)


def _run(*command: str) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_store_by_two_processes_is_byte_identical_to_one(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _run(sys.executable, str(WORKER), str(one))
    _run(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(WORKER), str(two),
    )  # fmt: skip
    names = sorted(p.name for p in one.iterdir())
    assert names == ["codes.npy", "labels.npy", "meta.json", "status.npy"]
    assert names == sorted(p.name for p in two.iterdir())
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert not list(tmp_path.glob(".*"))  # no temporary folder left

    store = open_code_store(one)
    assert store.codes.dtype == np.uint16 and store.codes.shape == (70, 2, 49, 3)
    assert store.skipped == {"corrupt": 7}
    usable = store.usable()
    assert len(usable) == 63 and not bool((usable % 9 == 8).any())
    assert torch.equal(store.labels_of(usable), usable % 5)
    tokens = store.tokens(usable[:4], torch.tensor([0, 1, 0, 1]))
    assert tokens.shape == (4, 49, 3) and tokens.dtype == torch.int64
    assert int(store.labels[8]) == -1


def test_a_store_made_otherwise_is_refused_naming_both(tmp_path: Path) -> None:
    store_worker.make(tmp_path / "s")
    meta = open_code_store(tmp_path / "s").meta
    for change in ({"depth": 4}, {"crop": "adm-center-256"}, {"tokenizer_hash": "ab12"}):
        with pytest.raises(StoreMismatchError) as caught:
            open_code_store(tmp_path / "s", attrs.evolve(meta, **change))
        ((key, value),) = change.items()
        message = str(caught.value)
        assert f"{key}={getattr(meta, key)!r}" in message and f"{key}={value!r}" in message
    with pytest.raises(FileNotFoundError, match="no finished code store"):
        open_code_store(tmp_path / "missing")
    (tmp_path / "s" / "labels.npy").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="corrupt"):
        open_code_store(tmp_path / "s")


def test_sizes_at_imagenet_scale() -> None:
    assert code_dtype(16384) == np.uint16 and code_dtype(70000) == np.int32
    gib = 2**30
    # 1,281,167 training images, 8x8 positions; the figures of the training-at-scale guide
    assert store_bytes(1_281_167, 1, 64, 8, 16384) / gib == pytest.approx(1.227, abs=1e-3)
    assert store_bytes(1_281_167, 2, 64, 16, 16384) / gib == pytest.approx(4.893, abs=1e-3)

"""A code store: a data set tokenized once, as memory-mapped arrays that every generator reads.

A store is a folder::

    codes.npy    [examples, views, length, depth]  uint16 (int32 when a codebook exceeds 65,536)
    labels.npy   [examples]                         int32 class labels
    status.npy   [examples]                         uint8: what happened to each example
    meta.json    what made it (:class:`StoreMeta`), its shapes, and the examples counted by status

A status below ``skipped_from`` (in ``meta.json``) is usable (0 = as read; a recipe may name
others, e.g. "converted to RGB"); from it on, the example was skipped and its codes are zeros.

``views`` are the variants of each example that were tokenized (``identity``, ``hflip`` for the
horizontal flip, ...): training draws an example and a view. The arrays are plain ``.npy`` files,
opened with ``numpy.load(mmap_mode="r")``: a 1.28 M-image store is read without loading it.

**Writing** (:func:`write_code_store`) is shared by every process of a torchrun world: rank 0
lays out the arrays in a temporary sibling folder, each rank tokenizes its chunks (chunk ``k``
goes to rank ``k mod world``; chunk boundaries do not depend on the world size, so the bytes do
not either), then rank 0 flushes everything to disk, writes ``meta.json`` and renames the folder
into place. A store therefore exists whole or not at all; a killed write leaves only the
temporary folder, which the next write removes.

**Reading** (:func:`open_code_store`) checks what made the store against what the run expects
(tokenizer and the hash of its weights, depth, codebook size, length, crop policy, views) and
refuses a mismatch with :class:`StoreMismatchError`, naming both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from attrs import asdict, field, frozen, validators
from jaxtyping import Int, UInt8
from torch import Tensor, nn

from resgen.errors import ResgenError
from resgen.files import atomic_write, fsync_path

__all__ = [
    "CodeStore",
    "StoreMeta",
    "StoreMismatchError",
    "code_dtype",
    "open_code_store",
    "store_bytes",
    "weights_hash",
    "write_code_store",
]

FORMAT = 1
"""Version of the folder layout, written in ``meta.json``."""

_MATCHED = ("tokenizer", "tokenizer_hash", "depth", "codes", "length", "crop", "views")
"""The fields a store must share with the run that reads it."""


class StoreMismatchError(ResgenError, ValueError):
    """A code store was made by another tokenizer, depth, codebook, crop policy or views."""


@frozen
class StoreMeta:
    """What made a code store; a run reads only a store whose fields equal its own.

    Attributes:
        tokenizer: the tokenizer's identity (its class and configuration, as text).
        tokenizer_hash: SHA-256 of its weights (:func:`weights_hash`).
        depth: RVQ depth D.
        codes: codebook size K.
        length: token positions per view (an 8x8 grid is 64).
        crop: how images were cropped before tokenizing (e.g. ``adm-center-256``).
        views: the tokenized variants of each example, e.g. ``("identity", "hflip")``.
    """

    tokenizer: str
    tokenizer_hash: str
    depth: int = field(validator=validators.ge(1))
    codes: int = field(validator=validators.ge(1))
    length: int = field(validator=validators.ge(1))
    crop: str
    views: tuple[str, ...] = field(converter=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values."""
        out = asdict(self)
        out["views"] = list(self.views)
        return out


def code_dtype(codes: int) -> np.dtype:
    """The narrowest array type of a code store's codes: ``uint16`` up to 65,536 codes."""
    return np.dtype(np.uint16) if codes <= 65536 else np.dtype(np.int32)


def store_bytes(examples: int, views: int, length: int, depth: int, codes: int) -> int:
    """Bytes of a store's arrays: codes, labels (4 bytes) and status (1 byte) per example.

    Args:
        examples: examples tokenized (1,281,167 for ImageNet's training set).
        views: views per example (2 with the horizontal flip).
        length: positions per view.
        depth: RVQ depth.
        codes: codebook size (sets the code type, :func:`code_dtype`).
    """
    return examples * (views * length * depth * code_dtype(codes).itemsize + 4 + 1)


def weights_hash(module: nn.Module) -> str:
    """SHA-256 (hex) of a module's state: every tensor's name, type, shape and bytes, by name."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class CodeStore:
    """A code store opened for reading (see :func:`open_code_store`).

    Attributes:
        path: the store's folder.
        meta: what made it.
        codes: ``[examples, views, length, depth]`` memory-mapped codes.
        labels: ``[examples]`` memory-mapped labels.
        status: ``[examples]`` memory-mapped status.
        counts: examples counted by status name (0-counts and ``ok`` left out), as written.
        skipped: the part of ``counts`` that was skipped.
        skipped_from: the first status that means "skipped".
    """

    def __init__(
        self,
        path: Path,
        meta: StoreMeta,
        arrays: dict[str, np.ndarray],
        counts: dict[str, int],
        skipped: dict[str, int],
        skipped_from: int,
    ) -> None:
        self.path = path
        self.meta = meta
        self.codes = arrays["codes"]
        self.labels = arrays["labels"]
        self.status = arrays["status"]
        self.counts = counts
        self.skipped = skipped
        self.skipped_from = skipped_from

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def views(self) -> int:
        """Views per example."""
        return int(self.codes.shape[1])

    def usable(self) -> Int[Tensor, " usable"]:
        """Indices of the examples that were tokenized (status below ``skipped_from``)."""
        return torch.from_numpy(np.flatnonzero(np.asarray(self.status) < self.skipped_from)).long()

    def tokens(
        self, rows: Int[Tensor, " batch"], views: Int[Tensor, " batch"]
    ) -> Int[Tensor, "batch length depth"]:
        """Tokens of examples ``rows`` in views ``views`` (as ``int64``, on the CPU)."""
        picked = self.codes[rows.cpu().numpy(), views.cpu().numpy()]
        return torch.from_numpy(picked.astype(np.int64))

    def labels_of(self, rows: Int[Tensor, " batch"]) -> Int[Tensor, " batch"]:
        """Labels of examples ``rows`` (as ``int64``, on the CPU)."""
        return torch.from_numpy(np.asarray(self.labels[rows.cpu().numpy()]).astype(np.int64))


def _describe(meta: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k}={meta.get(k)!r}" for k in keys)


def open_code_store(path: str | Path, expected: StoreMeta | None = None) -> CodeStore:
    """Open a finished store, checking it against what the run expects.

    Args:
        path: the store's folder.
        expected: the run's tokenizer, depth, codebook, length, crop policy and views; ``None``
            accepts any store.

    Raises:
        FileNotFoundError: there is no finished store at ``path``.
        StoreMismatchError: the store was made otherwise (the message names both sides).
        ValueError: ``meta.json`` or an array is corrupt or does not fit the others.
    """
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no finished code store in {path} (meta.json is missing)")
    try:
        saved = json.loads(meta_path.read_text(encoding="utf-8"))
        meta = StoreMeta(**{k: saved[k] for k in _MATCHED})
        arrays = {
            name: np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            for name in ("codes", "labels", "status")
        }
        counts = {str(k): int(v) for k, v in saved.get("counts", {}).items()}
        skipped = {str(k): int(v) for k, v in saved.get("skipped", {}).items()}
        skipped_from = int(saved.get("skipped_from", 1))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"the code store {path} is corrupt: {error!r}") from error
    if expected is not None:
        found, wanted = meta.to_dict(), expected.to_dict()
        differ = [k for k in _MATCHED if found[k] != wanted[k]]
        if differ:
            raise StoreMismatchError(
                f"the code store {path} was made with {_describe(found, differ)} but this run "
                f"needs {_describe(wanted, differ)}; use another store folder or delete it"
            )
    count = arrays["codes"].shape[0]
    shape = (len(meta.views), meta.length, meta.depth)
    if (
        arrays["codes"].shape[1:] != shape
        or arrays["labels"].shape != (count,)
        or arrays["status"].shape != (count,)
    ):
        raise ValueError(f"the code store {path} is corrupt: its arrays do not fit its meta.json")
    return CodeStore(path, meta, arrays, counts, skipped, skipped_from)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def write_code_store(
    path: str | Path,
    meta: StoreMeta,
    examples: int,
    encode: Callable[
        [int, int],
        tuple[
            Int[Tensor, "chunk views length depth"],
            Int[Tensor, " chunk"],
            UInt8[Tensor, " chunk"],
        ],
    ],
    *,
    chunk: int = 256,
    status_names: tuple[str, ...] = ("ok",),
    skipped_from: int = 1,
    progress: Callable[[int], None] | None = None,
) -> CodeStore:
    """Tokenize ``examples`` examples into a store at ``path``, shared by every process.

    Every rank of the process group must call it with the same arguments; a store already at
    ``path`` is not rewritten (it is opened and checked against ``meta``).

    Args:
        path: the store's folder.
        meta: what makes it.
        examples: how many examples (rows) it holds.
        encode: ``encode(start, stop)`` returns the codes ``[stop - start, views, length,
            depth]``, the labels ``[stop - start]`` and the status ``[stop - start]`` (below
            ``skipped_from``: usable; from it on: skipped, its codes are then ignored) of
            examples ``start .. stop - 1``.
        chunk: examples per call of ``encode``; chunk ``k`` (examples ``k * chunk ..``) is done
            by rank ``k mod world``, so the bytes written do not depend on the world size.
        status_names: the name of each status value, for the counts of ``meta.json``.
        skipped_from: the first status value that means "skipped".
        progress: called with the number of examples this rank just finished (for a bar).

    Returns:
        The store, opened.

    Raises:
        StoreMismatchError: a store made otherwise is already at ``path``.
        ValueError: ``encode`` returned arrays of the wrong shape or out-of-range codes.
    """
    path = Path(path)
    if (path / "meta.json").is_file():
        return open_code_store(path, meta)
    rank, world = _rank_world()
    tmp = path.with_name(f".{path.name}.tmp")
    shape = (examples, len(meta.views), meta.length, meta.depth)
    dtype = code_dtype(meta.codes)
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # what a killed write left
        tmp.mkdir(parents=True)
        np.lib.format.open_memmap(tmp / "codes.npy", "w+", dtype, shape).flush()
        np.lib.format.open_memmap(tmp / "labels.npy", "w+", np.int32, (examples,)).flush()
        np.lib.format.open_memmap(tmp / "status.npy", "w+", np.uint8, (examples,)).flush()
    _barrier()
    codes = np.load(tmp / "codes.npy", mmap_mode="r+")
    labels = np.load(tmp / "labels.npy", mmap_mode="r+")
    status = np.load(tmp / "status.npy", mmap_mode="r+")
    for k in range(rank, -(-examples // chunk), world):
        start, stop = k * chunk, min((k + 1) * chunk, examples)
        got_codes, got_labels, got_status = encode(start, stop)
        if tuple(got_codes.shape) != (stop - start, *shape[1:]):
            raise ValueError(
                f"encode({start}, {stop}) returned codes of shape {tuple(got_codes.shape)}, "
                f"expected {(stop - start, *shape[1:])}"
            )
        ok = got_status < skipped_from
        got_codes = torch.where(ok[:, None, None, None], got_codes, torch.zeros_like(got_codes))
        if got_codes.numel() and (got_codes.min() < 0 or got_codes.max() >= meta.codes):
            raise ValueError(f"encode({start}, {stop}) returned codes outside 0..{meta.codes - 1}")
        codes[start:stop] = got_codes.cpu().numpy().astype(dtype)
        labels[start:stop] = np.where(ok.cpu().numpy(), got_labels.cpu().numpy(), -1)
        status[start:stop] = got_status.cpu().numpy()
        if progress is not None:
            progress(stop - start)
    for array in (codes, labels, status):
        array.flush()
    del codes, labels, status
    _barrier()
    if rank == 0:
        for name in ("codes.npy", "labels.npy", "status.npy"):
            fsync_path(tmp / name)
        counts = np.bincount(np.load(tmp / "status.npy"), minlength=len(status_names))
        names = list(status_names) + [f"status {i}" for i in range(len(status_names), len(counts))]
        document = {
            **meta.to_dict(),
            "format": FORMAT,
            "examples": examples,
            "dtype": dtype.name,
            "counts": {names[i]: int(c) for i, c in enumerate(counts) if i and c},
            "skipped": {names[i]: int(c) for i, c in enumerate(counts) if i >= skipped_from and c},
            "skipped_from": skipped_from,
        }
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        atomic_write(tmp / "meta.json", lambda file: file.write_text(text))
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    _barrier()
    return open_code_store(path, meta)

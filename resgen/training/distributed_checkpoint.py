"""Checkpoints of sharded weights with ``torch.distributed.checkpoint`` (DCP), without pickle.

A stage trained with ``sharding="fsdp"`` writes its resumable ``latest/`` checkpoint this way:
every rank writes its own shards, nothing is gathered. The folder holds::

    __R_0.distcp          rank R's shards (weights, weight average, optimizer moments)
    metadata.json         which file holds which shard of which tensor (DCP's metadata)
    config.json           as every checkpoint (see :mod:`~resgen.training.checkpoint`)
    state.json            everything that is not a sharded tensor (step, loss history,
    state.safetensors     optimizer hyper-parameters, random states), written by rank 0

**No pickle.** DCP's own file system writer pickles its metadata (``.metadata``) and saves
non-tensor values as pickled bytes, which its reader unpickles: loading such a checkpoint can run
code. Here the metadata is JSON (:class:`JsonMetadataWriter`, :class:`JsonMetadataReader`), only
tensors go to DCP (everything else goes to ``state.json``), and ``metadata.json`` can only
declare tensors, so DCP never reaches its unpickling path. DCP reads the shard files themselves
with ``torch.load(weights_only=True)``: tensors only. (During a save or load the ranks exchange
their plans with ``torch.distributed``'s object collectives, between the run's own processes.)

**Atomic.** The shards go to a temporary sibling ``.NAME.tmp-dcp``; after every rank finished
(a barrier), rank 0 writes ``config.json`` and the training state into it and renames it into
place (:func:`~resgen.training.checkpoint.publish_checkpoint`). A killed save leaves only the
temporary folder, which never counts as a checkpoint and is removed by the next run. Several
nodes need a run folder on a file system every node sees.

DCP re-shards on load: a checkpoint written by ``W`` processes resumes on any number of
processes that shards the same model.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.metadata import (
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)

from resgen.training import distributed
from resgen.training.checkpoint import (
    CheckpointError,
    publish_checkpoint,
    read_json,
    write_json,
)

__all__ = [
    "METADATA",
    "JsonMetadataReader",
    "JsonMetadataWriter",
    "is_sharded_checkpoint",
    "load_sharded",
    "save_sharded",
]

METADATA = "metadata.json"
"""The file that marks a checkpoint folder as DCP-sharded and describes its shards."""


# --------------------------------------------------------------------------- metadata as JSON
def _dtype(name: str) -> torch.dtype:
    value = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise CheckpointError(f"unknown tensor type {name!r} in a checkpoint's {METADATA}")
    return value


def _encode_metadata(metadata: Metadata) -> dict[str, Any]:
    tensors: dict[str, Any] = {}
    for fqn, item in metadata.state_dict_metadata.items():
        if not isinstance(item, TensorStorageMetadata):
            raise TypeError(f"{fqn!r} is not a tensor: only tensors are saved with DCP here")
        tensors[fqn] = {
            "dtype": str(item.properties.dtype),
            "requires_grad": item.properties.requires_grad,
            "size": list(item.size),
            "chunks": [{"offsets": list(c.offsets), "sizes": list(c.sizes)} for c in item.chunks],
        }
    storage = [
        {
            "fqn": index.fqn,
            "offset": None if index.offset is None else list(index.offset),
            "index": index.index,
            "file": info.relative_path,
            "start": info.offset,
            "length": info.length,
        }
        for index, info in metadata.storage_data.items()
    ]
    planner = {k: list(v) for k, v in (metadata.planner_data or {}).items()}
    return {"version": metadata.version, "tensors": tensors, "storage": storage, "planner": planner}


def _decode_metadata(data: dict[str, Any], folder: Path) -> Metadata:
    from torch.distributed.checkpoint.filesystem import _StorageInfo

    tensors = {
        fqn: TensorStorageMetadata(
            properties=TensorProperties(
                dtype=_dtype(item["dtype"]), requires_grad=bool(item["requires_grad"])
            ),
            size=torch.Size(item["size"]),
            chunks=[
                ChunkStorageMetadata(torch.Size(c["offsets"]), torch.Size(c["sizes"]))
                for c in item["chunks"]
            ],
        )
        for fqn, item in data["tensors"].items()
    }
    storage = {}
    for entry in data["storage"]:
        name = str(entry["file"])
        if Path(name).name != name or name in ("", ".", ".."):  # shards lie in the folder itself
            raise CheckpointError(f"{folder / METADATA} names a file outside its folder: {name!r}")
        index = MetadataIndex(entry["fqn"], entry["offset"], entry["index"])
        storage[index] = _StorageInfo(name, int(entry["start"]), int(entry["length"]))
    return Metadata(
        state_dict_metadata=tensors,
        planner_data={k: tuple(v) for k, v in data["planner"].items()},
        storage_data=storage,
        storage_meta=StorageMeta(),
        version=data["version"],
    )


class JsonMetadataWriter(FileSystemWriter):
    """DCP's file system writer with its metadata written as JSON (``metadata.json``), not
    pickled. Only tensors may be saved with it.

    Args:
        path: the folder the shards and metadata go to.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, single_file_per_rank=True, sync_files=True)

    def finish(self, metadata: Metadata, results: list[list[Any]]) -> None:
        """Write the metadata of every rank's shards (called on the coordinating rank)."""
        storage = {r.index: r.storage_data for ranks in results for r in ranks}
        encoded = _encode_metadata(
            Metadata(
                state_dict_metadata=metadata.state_dict_metadata,
                planner_data=metadata.planner_data,
                storage_data=storage,
                version=metadata.version,
            )
        )
        write_json(Path(self.path) / METADATA, encoded)


class JsonMetadataReader(FileSystemReader):
    """DCP's file system reader of a folder written by :class:`JsonMetadataWriter`.

    Args:
        path: the checkpoint folder.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        """The shards' metadata, from JSON.

        Raises:
            CheckpointError: ``metadata.json`` is missing or corrupt.
        """
        folder = Path(self.path)
        data = read_json(folder / METADATA, "sharded checkpoint's metadata")
        try:
            metadata = _decode_metadata(data, folder)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{folder / METADATA} is corrupt: {error!r}") from error
        metadata.storage_meta.load_id = self.load_id
        return metadata


# --------------------------------------------------------------------------- saving, loading
def is_sharded_checkpoint(folder: str | Path) -> bool:
    """Whether the checkpoint folder holds DCP shards (a ``metadata.json``)."""
    return (Path(folder) / METADATA).is_file()


def save_sharded(
    folder: str | Path, tensors: dict[str, Tensor], config: dict[str, Any], state: dict[str, Any]
) -> None:
    """Write a sharded checkpoint, whole or not at all. Every rank must call it.

    Args:
        folder: the checkpoint folder (replaced as a whole once every rank wrote its shards).
        tensors: flat ``name -> tensor``: DTensors (each rank writes its shards) or plain tensors
            (equal on every rank, written once). The same names on every rank.
        config: the configuration stored with the checkpoint (``config.json``).
        state: the rest of the training state, as
            :func:`~resgen.training.checkpoint.save_checkpoint` takes it (rank 0's is written).

    Raises:
        OSError: the folder is not writable or the disk is full.
    """
    import torch.distributed.checkpoint as dcp

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-dcp")
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier()
    dcp.save(
        tensors, storage_writer=JsonMetadataWriter(tmp), no_dist=not distributed.is_distributed()
    )
    distributed.barrier()  # every rank's shards are on disk
    if distributed.is_main():
        publish_checkpoint(tmp, folder, config, state)
    distributed.barrier()


def load_sharded(folder: str | Path, tensors: dict[str, Tensor]) -> None:
    """Fill ``tensors`` (DTensors or plain tensors, the names :func:`save_sharded` wrote) in place
    from a sharded checkpoint, re-sharding as they are laid out now. Every rank must call it.

    Raises:
        CheckpointError: the metadata is missing or corrupt.
        RuntimeError: a name is missing or a shape differs (DCP's own error).
    """
    import torch.distributed.checkpoint as dcp

    reader = JsonMetadataReader(folder)
    reader.read_metadata()  # its errors here: DCP's load would hide them behind its own
    dcp.load(tensors, storage_reader=reader, no_dist=not distributed.is_distributed())

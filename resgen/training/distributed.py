"""The processes of one training run: torchrun's environment, the process group, who writes.

``torchrun`` starts one process per device and tells each its place through environment
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` or a
rendezvous). :func:`init_from_env` joins the process group they describe (``gloo`` on CPUs,
``nccl`` on CUDA devices) and :func:`release` leaves it; a plain ``resgen train`` has no such
variables and stays one process, with every helper below a no-op that returns what one process
needs (rank 0 of a world of 1).

Only rank 0 writes a run folder's logs, plots, samples, ``metrics.json`` and checkpoints
(:func:`is_main`); every rank reads them. :func:`barrier` makes the others wait where a file rank
0 writes is read next. No helper here pickles: only tensors cross between processes.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "TIMEOUT",
    "all_gather_equal",
    "all_reduce_sum",
    "barrier",
    "init_from_env",
    "is_distributed",
    "is_main",
    "local_device",
    "main_first",
    "rank",
    "release",
    "world_size",
]

TIMEOUT = timedelta(minutes=60)
"""How long a rank waits for the others in a collective before the run fails: long enough for
rank 0 to evaluate or write a store while the others wait at a barrier."""


def is_distributed() -> bool:
    """Whether a process group of more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes of the run (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes the run folder (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (no-op on one process)."""
    if is_distributed():
        dist.barrier()


T = TypeVar("T")


def main_first(work: Callable[[], T]) -> T:
    """Run ``work`` on rank 0, then, once it is done, on every other rank: for a step whose first
    run writes what later runs only read (a corpus, a cache), so the processes do not write it
    at the same time.

    Args:
        work: the step; it must find and reuse what rank 0 wrote.

    Returns:
        What ``work`` returned on this rank.
    """
    if is_main():
        result = work()
        barrier()
        return result
    barrier()
    return work()


def local_device(device: str | torch.device) -> str | torch.device:
    """The device this rank trains on: ``cuda`` (without an index) becomes ``cuda:LOCAL_RANK``
    under torchrun, so the processes of a node share its GPUs one each; anything else is kept
    (a string that names no device is returned as it is, for
    :func:`~resgen.training.trainer.resolve_device` to refuse with its message).

    Args:
        device: the device the command line asked for.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        return device
    if resolved.type == "cuda" and resolved.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return resolved


def init_from_env(device: str | torch.device = "cpu") -> bool:
    """Join the process group torchrun describes in the environment, if any.

    Args:
        device: the device asked for; ``gloo`` is used for CPUs, ``nccl`` for CUDA (and the
            rank's GPU, ``cuda:LOCAL_RANK``, becomes the current CUDA device).

    Returns:
        Whether a process group of more than one rank is now initialised (``False`` for a plain
        single process, ``WORLD_SIZE`` unset or 1).

    Raises:
        ValueError: the environment names a world size that is not a whole number, or (with
            several processes) ``device`` is unknown or not available to this rank.
    """
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(text)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={text!r} is not a number of processes") from None
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return is_distributed()
    from resgen.training.trainer import resolve_device  # imported here: the trainer imports us

    resolved = resolve_device(local_device(device))  # a clear line before joining the group
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    dist.init_process_group(backend, timeout=TIMEOUT)
    return is_distributed()


def release() -> None:
    """Leave the process group :func:`init_from_env` joined (no-op without one).

    Unreachable objects are collected first: FSDP's state sits in reference cycles that hold
    the process group, and when those are freed only at interpreter exit the group's threads are
    torn down out of order and the process aborts ("terminate called without an active
    exception"; seen in about one FSDP test run in four before this collection).
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def all_gather_equal(tensor: Tensor) -> list[Tensor]:
    """Every rank's ``tensor`` (same shape and dtype on every rank), in rank order.

    Args:
        tensor: any shape, on any device (it travels on the backend's device: the rank's GPU
            under ``nccl``, the CPU under ``gloo``).

    Returns:
        ``world_size()`` tensors on ``tensor``'s device, this rank's among them; ``[tensor]`` on
        one process.
    """
    if not is_distributed():
        return [tensor]
    wire = _wire_device()
    sent = tensor.detach().to(wire).contiguous()
    out = [torch.empty_like(sent) for _ in range(world_size())]
    dist.all_gather(out, sent)
    return [t.to(tensor.device) for t in out]


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over ranks (a new tensor on ``tensor``'s device; a copy on one
    process).

    Args:
        tensor: any shape; the same shape and dtype on every rank.
    """
    if not is_distributed():
        return tensor.detach().clone()
    sent = tensor.detach().to(_wire_device()).clone()
    dist.all_reduce(sent, op=dist.ReduceOp.SUM)
    return sent.to(tensor.device)


def _wire_device() -> torch.device:
    """Where tensors must be for the process group's collectives."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")

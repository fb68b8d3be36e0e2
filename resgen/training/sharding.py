"""FSDP2 for a stage whose weights should not be copied whole onto every device.

``StageSpec.sharding="fsdp"`` makes :func:`~resgen.training.trainer.run_stage` shard the trained
modules with ``torch.distributed.fsdp.fully_shard`` instead of wrapping them in
DistributedDataParallel: every element of an ``nn.ModuleList`` (a transformer's blocks) becomes
its own unit, gathered just before it runs and freed after, and the root (the loss over all the
trained modules) holds the rest. :class:`ShardedModules` is what the loop needs of them.

**Checkpoints.** The resumable ``latest/`` checkpoint is written with
``torch.distributed.checkpoint``: each rank writes its shards of the weights, the optimizer state
and the weight average, nothing is gathered (:meth:`ShardedModules.save`, in the pickle-free
layout of :mod:`~resgen.training.distributed_checkpoint`); resuming, each rank reads the shards it
holds now (:meth:`ShardedModules.load`). The finished weights (``final/``) are gathered whole onto
rank 0 and written as every other stage's (one safetensors file per module,
:meth:`ShardedModules.gathered_modules`), so sampling and evaluation run on one process.

**After training** the modules are gathered whole for good (:meth:`ShardedModules.keep_whole`),
so sampling and evaluation call them as if they had never been sharded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from resgen.training.averaging import WeightAverage
from resgen.training.distributed_checkpoint import load_sharded, save_sharded

__all__ = ["ShardedModules"]

_NAME = "__dcp__"


def _split(value: Any, name: str, tensors: dict[str, Tensor]) -> Any:
    """``value`` (nested dicts, lists, tuples) with each tensor moved to ``tensors`` under its
    path (``name/key/...``) and replaced by ``{"__dcp__": path}``."""
    if isinstance(value, Tensor):
        tensors[name] = value
        return {_NAME: name}
    if isinstance(value, dict):
        return {k: _split(v, f"{name}/{k}", tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_split(v, f"{name}/{i}", tensors) for i, v in enumerate(value))
    return value


def _join(value: Any, tensors: dict[str, Tensor]) -> Any:
    """Invert :func:`_split`."""
    if isinstance(value, dict):
        if set(value) == {_NAME}:
            return tensors[value[_NAME]]
        return {k: _join(v, tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_join(v, tensors) for v in value)
    return value


class _Gathered(nn.Module):
    """Stands in for a sharded module when its checkpoint is written: its gathered state."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        super().__init__()
        self.gathered = state

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        return self.gathered


class ShardedModules:
    """Shard ``root`` (a module over every trained module, whose forward is the loss) with FSDP2
    over all the processes, one unit per ``nn.ModuleList`` element plus the root.

    Args:
        root: the loss module; the trained modules are its ``trained`` ``nn.ModuleDict``.
        device: this process's device (its type names the device mesh).
    """

    def __init__(self, root: nn.Module, device: torch.device) -> None:
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        self.root = root
        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        seen: set[int] = set()
        self.units: list[nn.Module] = []
        for module in root.modules():
            if isinstance(module, nn.ModuleList):
                for item in module:
                    if id(item) not in seen and any(True for _ in item.parameters()):
                        seen.add(id(item))
                        self.units.append(item)
        for unit in self.units:
            fully_shard(unit, mesh=mesh)
        fully_shard(root, mesh=mesh)
        self.units.append(root)

    def gradient_sync(self, enabled: bool) -> None:
        """Whether the next backward reduces gradients across processes (off while
        accumulating all but the last micro-batch)."""
        self.root.set_requires_gradient_sync(enabled)

    def _options(self) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=True)

    def gathered_modules(self, names: list[str]) -> dict[str, nn.Module]:
        """The trained modules' whole weights, on rank 0 (empty elsewhere), as modules that
        :func:`~resgen.training.checkpoint.save_checkpoint` writes. Every rank must call it."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        full = get_model_state_dict(self.root, options=self._options())
        out: dict[str, dict[str, Tensor]] = {name: {} for name in names}
        for key, value in full.items():
            name, _, rest = key.removeprefix("trained.").partition(".")
            out[name][rest] = value
        return {name: _Gathered(state) for name, state in out.items()}

    def _sharded_state(
        self, optimizer: torch.optim.Optimizer, average: WeightAverage | None
    ) -> tuple[dict[str, Tensor], Any]:
        """This rank's shards of the weights, optimizer state and weight average, by name
        (``model/...``, ``optimizer/...``, ``average/I``), and the optimizer state's structure
        with its tensors replaced by those names (JSON-serialisable)."""
        from torch.distributed.checkpoint.state_dict import (
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        tensors = {f"model/{k}": v for k, v in get_model_state_dict(self.root).items()}
        structure = _split(get_optimizer_state_dict(self.root, optimizer), "optimizer", tensors)
        if average is not None:
            tensors.update({f"average/{i}": a for i, a in enumerate(average.averages)})
        return tensors, structure

    def save(
        self,
        folder: Path,
        optimizer: torch.optim.Optimizer,
        average: WeightAverage | None,
        config: dict[str, Any],
        state: dict[str, Any],
    ) -> None:
        """Write a resumable checkpoint: each rank its shards of the weights, optimizer state and
        weight average (:func:`~resgen.training.distributed_checkpoint.save_sharded`), rank 0 the
        rest of ``state`` as JSON. Every rank must call it."""
        tensors, structure = self._sharded_state(optimizer, average)
        state = {**state, "optimizer": structure}
        if average is not None:
            state["average"] = {"updates": average.updates}
        save_sharded(folder, tensors, config, state)

    def load(
        self,
        folder: Path,
        optimizer: torch.optim.Optimizer,
        average: WeightAverage | None,
        state: dict[str, Any],
    ) -> None:
        """Resume from what :meth:`save` wrote (``state`` is its training state, already read):
        each rank reads its shards, as the weights are sharded now. Every rank must call it.

        Raises:
            KeyError: the checkpoint does not hold what this stage trains.
        """
        from torch.distributed.checkpoint.state_dict import (
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        tensors, _ = self._sharded_state(optimizer, average)
        load_sharded(folder, tensors)
        model = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
        set_model_state_dict(self.root, model)
        set_optimizer_state_dict(self.root, optimizer, _join(state["optimizer"], tensors))
        if average is not None:
            average.updates = int(state["average"]["updates"])

    def _gather(self) -> None:
        for unit in self.units:
            unit.set_reshard_after_forward(False)
            unit.unshard()

    @contextmanager
    def whole(self) -> Iterator[None]:
        """Inside the block every unit is gathered (so one rank may run the modules alone, e.g.
        to validate); sharded again after. Every rank must enter it."""
        self._gather()
        try:
            yield
        finally:
            for unit in self.units:
                unit.reshard()
                unit.set_reshard_after_forward(True)

    def keep_whole(self) -> None:
        """Gather every unit for good: the trained modules are then used like unsharded ones
        (each process holds the whole weights). Every rank must call it."""
        self._gather()

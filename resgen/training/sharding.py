"""FSDP2 for a stage whose weights should not be copied whole onto every device.

``StageSpec.sharding="fsdp"`` makes :func:`~resgen.training.trainer.run_stage` shard the trained
modules with ``torch.distributed.fsdp.fully_shard`` instead of wrapping them in
DistributedDataParallel: every element of an ``nn.ModuleList`` (a transformer's blocks) becomes
its own unit, gathered just before it runs and freed after, and the root (the loss over all the
trained modules) holds the rest. :class:`ShardedModules` is what the loop needs of them.

**Checkpoints** keep the format of every other stage (safetensors weights, JSON training state):
the full weights, optimizer state and weight average are gathered onto rank 0 with
``torch.distributed.checkpoint.state_dict`` and written there; resuming, every rank reads them
and keeps its shard. The distributed checkpoint *file* format is not used, because it stores its
metadata with pickle, which this project never loads. Each process therefore builds the whole
model in host memory once before sharding it.

**After training** the modules are gathered whole for good (:meth:`ShardedModules.keep_whole`),
so sampling and evaluation call them as if they had never been sharded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from resgen.training.averaging import WeightAverage

__all__ = ["ShardedModules"]


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

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's whole state by parameter name, on rank 0 (empty elsewhere). Every
        rank must call it."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self.root, optimizer, options=self._options())

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Give each rank its shard of a whole optimizer state (every rank read the file)."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(self.root, optimizer, state, options=options)

    def average_state(self, average: WeightAverage) -> dict[str, Any]:
        """The weight average, gathered whole (on every rank). Every rank must call it."""
        return {
            "updates": average.updates,
            "averages": [a.full_tensor().cpu() for a in average.averages],
        }

    def load_average_state(self, average: WeightAverage, state: dict[str, Any]) -> None:
        """Give each rank its shard of a whole weight average.

        Raises:
            ValueError: the saved averages do not match the parameters in number or shape.
        """
        from torch.distributed.tensor import distribute_tensor

        saved: list[Tensor] = state["averages"]
        if [tuple(a.shape) for a in saved] != [tuple(p.shape) for p in average.params]:
            raise ValueError("the saved weight average does not match the parameters trained")
        average.updates = int(state["updates"])
        with torch.no_grad():
            for mine, whole in zip(average.averages, saved, strict=True):
                mine.copy_(
                    distribute_tensor(
                        whole.to(mine.device, mine.dtype),
                        mine.device_mesh,
                        mine.placements,
                        src_data_rank=None,
                    )
                )

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

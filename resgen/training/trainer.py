"""A small resumable training loop shared by every stage of every recipe.

Each stage owns a folder: periodic checkpoints go to ``latest/`` and the finished weights to
``final/`` (``latest/`` is removed once ``final/`` is in place). Re-running a stage whose
``final/`` exists only loads it; one with a ``latest/`` resumes from its step. Batches are drawn
from a generator seeded by ``(seed, step)``, so a resumed run sees the same batches as an
uninterrupted one. Random draws from the global generators (dropout layers, condition dropout,
codebook restarts) continue where they stopped too: each checkpoint holds the global torch
generators' states (:func:`rng_state`), restored when a stage resumes from ``latest/`` or loads
its ``final/``, so a resumed run ends with exactly the weights of an uninterrupted one. Only one
process may write a run folder at a time (:func:`~resgen.training.run_lock.lock_run_folder`).

**Several processes** (``torchrun``, see :mod:`~resgen.training.distributed`). A stage's batch of
``spec.batch_size`` examples is the *global* batch. It is cut into ``spec.micro_batches`` equal
micro-batches (:class:`BatchPart`), each drawn from a generator seeded by ``(seed, step,
micro-batch)``: rank ``r`` of ``W`` computes micro-batches ``r * M / W .. (r + 1) * M / W - 1``,
accumulating their gradients (before each micro-batch, torch's global generators are seeded from
the stage, the step and the micro-batch, so dropout draws do not depend on the process either),
and DistributedDataParallel averages the ranks' gradients, so every
step's update is that of the whole global batch whatever ``W`` (any ``W`` that divides
``M``), and a resumed run sees the same global batches. With one process and one micro-batch the
loop is the single-process loop above, unchanged. Only rank 0 writes checkpoints (with sharded
weights each rank writes its shards of ``latest/``) and shows the progress bar (global
examples/s and the world size); a checkpoint holds every rank's random state, so a run of the
same world size resumes exactly after any of its processes was killed.
``spec.sharding="fsdp"`` shards the weights with FSDP2 instead of copying them to every process
(:mod:`~resgen.training.sharding`).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import torch
from attrs import field, frozen, validators
from torch import Tensor, nn
from tqdm.auto import tqdm

from resgen.training import distributed
from resgen.training.averaging import WeightAverage
from resgen.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    recover_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from resgen.training.distributed_checkpoint import is_sharded_checkpoint
from resgen.training.sharding import ShardedModules

__all__ = [
    "BatchPart",
    "StageSpec",
    "StageResult",
    "autocast",
    "batch_generator",
    "cosine_lr",
    "resolve_device",
    "rng_state",
    "run_stage",
    "set_rng_state",
    "with_new_stage_options",
]

_DEVICE_TYPES = ("cpu", "cuda", "mps")
"""Device types a recipe can train on."""


@frozen
class StageSpec:
    """How long and how fast one stage trains.

    Attributes:
        steps: optimizer steps.
        batch_size: examples per step.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay.
        warmup: linear warm-up steps before the cosine decay (to 10% of ``lr``).
        checkpoint_every: steps between resumable checkpoints.
        grad_clip: gradient-norm clip.
        precision: ``"float32"``, or ``"bfloat16"`` to run the forward passes (training and
            validation) under ``torch.autocast`` in bfloat16: matrix products and attention
            run faster on CPUs with AVX-512 BF16 or AMX and on GPUs (the TTS demo's training
            steps: 1.1-1.25 times on a 2-core AVX-512 BF16 CPU). Weights, optimizer state and
            gradients stay in float32; heads that need it keep float32 themselves.
        ema_decay: decay of an exponential moving average of the weights
            (:class:`~resgen.training.averaging.WeightAverage`); 0 keeps none. With one, the
            validations and the ``final/`` weights are the average; ``latest/`` checkpoints hold
            both, so a stage resumes exactly.
        micro_batches: equal parts the global batch of ``batch_size`` examples is cut into
            (gradient accumulation; see the module's documentation). The number of processes
            must divide it; each process accumulates ``micro_batches / world size`` parts.
            1 (the default) with one process is the plain loop, where ``loss_fn`` is called with
            the step alone.
        sharding: with several processes, ``"ddp"`` (DistributedDataParallel: every process
            holds the whole model) or ``"fsdp"`` (FSDP2: weights, gradients and optimizer state
            sharded over the processes, :mod:`~resgen.training.sharding`). One process ignores
            it.
        find_unused_parameters: with DDP on several processes, let a step leave some trainable
            parameters without a gradient (DDP then walks the autograd graph after every
            micro-batch's forward to find them, which costs time). Without it such a step
            fails with DDP's error naming the parameters. No recipe's stage needs it: in every
            stage of every recipe each step's loss reaches every trainable parameter (checked
            by ``tests/recipes/test_ddp_parameters.py``); set it for a model of your own whose
            parameters can sit out a step (e.g. a branch taken only by some batches). One
            process and FSDP ignore it.
    """

    steps: int = field(validator=validators.ge(1))
    batch_size: int = field(validator=validators.ge(1))
    lr: float = field(validator=validators.gt(0.0))
    weight_decay: float = field(default=0.0, validator=validators.ge(0.0))
    warmup: int = field(default=0, validator=validators.ge(0))
    checkpoint_every: int = field(default=200, validator=validators.ge(1))
    grad_clip: float = field(default=1.0, validator=validators.gt(0.0))
    precision: Literal["float32", "bfloat16"] = field(
        default="float32", validator=validators.in_(("float32", "bfloat16"))
    )
    ema_decay: float = field(default=0.0, validator=[validators.ge(0.0), validators.lt(1.0)])
    micro_batches: int = field(default=1, validator=validators.ge(1))
    sharding: Literal["ddp", "fsdp"] = field(
        default="ddp", validator=validators.in_(("ddp", "fsdp"))
    )
    find_unused_parameters: bool = field(default=False, validator=validators.instance_of(bool))

    def __attrs_post_init__(self) -> None:
        if self.batch_size % self.micro_batches:
            raise ValueError(
                f"batch_size {self.batch_size} cannot be cut into {self.micro_batches} equal "
                "micro-batches"
            )


_NEW_STAGE_OPTIONS = {"micro_batches": 1, "sharding": "ddp", "find_unused_parameters": False}
"""StageSpec fields added after run folders were first written, with the value that reproduces
what those runs did."""


def with_new_stage_options(saved: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A saved recipe configuration with its stage schedules (the entries ``keys``) completed by
    the :class:`StageSpec` options added since it was written, at the values that reproduce it,
    so an old run folder compares equal to the same settings today.

    Args:
        saved: the configuration as read from a run folder (``recipe.json``).
        keys: the entries of ``saved`` that are stage schedules (e.g. ``("codec_stage",)``).
    """
    out = dict(saved)
    for key in keys:
        if isinstance(out.get(key), dict):
            out[key] = {**_NEW_STAGE_OPTIONS, **out[key]}
    return out


@frozen
class BatchPart:
    """One micro-batch of a step's global batch: rows ``start:stop`` of its ``batch_size``.

    A loss function given one draws the global batch of ``step`` as a one-process run would (its
    example indices from :func:`batch_generator`), keeps :meth:`rows` of it, and draws every
    other random choice (masks, dropout of the condition) from :meth:`generator`, which depends
    on the micro-batch and not on which process computes it.

    Attributes:
        step: the optimizer step.
        index: which micro-batch, ``0 .. count - 1``.
        count: micro-batches per global batch (``StageSpec.micro_batches``).
        batch_size: examples of the global batch.
    """

    step: int
    index: int
    count: int
    batch_size: int

    @property
    def start(self) -> int:
        """First row of the global batch in this part."""
        return self.index * self.batch_size // self.count

    @property
    def stop(self) -> int:
        """One past the last row of the global batch in this part."""
        return (self.index + 1) * self.batch_size // self.count

    def rows(self, batch: Tensor) -> Tensor:
        """This part's rows of a global batch ``[batch_size, ...]`` (e.g. its example indices)."""
        if batch.shape[0] != self.batch_size:
            raise ValueError(
                f"expected the global batch of {self.batch_size} rows, got {batch.shape[0]}"
            )
        return batch[self.start : self.stop]

    def generator(self, seed: int, device: str | torch.device = "cpu") -> torch.Generator:
        """A generator seeded by ``(seed, step, index)``: this part's random draws.

        Args:
            seed: the stage's seed.
            device: where the generator lives (it can only draw tensors there).
        """
        mixed = ((seed * 1_000_003 + self.step) * 1_000_033 + self.index + 1) % (2**63 - 1)
        return torch.Generator(device=device).manual_seed(mixed)


@frozen
class StageResult:
    """What :func:`run_stage` returns.

    Attributes:
        history: ``[(step, loss), ...]`` logged losses of the whole stage (resumed runs included).
        seconds: wall time spent training in this stage (summed over resumed runs).
        validation: ``[(step, loss), ...]`` of the stage's ``validate`` function (empty without
            one): the loss on data the stage never trains on, to see over-fitting.
        world_size: processes that trained it in this run (1 for a plain run).
    """

    history: list[tuple[int, float]]
    seconds: float
    validation: list[tuple[int, float]] = field(factory=list)
    world_size: int = 1


def autocast(spec: StageSpec, device: torch.device) -> torch.autocast:
    """The autocast context of ``spec.precision`` on ``device`` (a no-op for float32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bfloat16")


def resolve_device(device: str | torch.device) -> torch.device:
    """Check that ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...) names a usable device.

    Args:
        device: a device string or :class:`torch.device`.

    Returns:
        The :class:`torch.device`.

    Raises:
        ValueError: the string is not a device, its type is not one of ``cpu``, ``cuda`` or
            ``mps``, or the device is not available here (e.g. ``cuda`` requested but
            ``torch.cuda.is_available()`` is False, or a CUDA index beyond the device count).
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"unknown device {device!r}: use one of {', '.join(_DEVICE_TYPES)} "
            f"(optionally with an index, e.g. cuda:0)"
        ) from error
    if resolved.type not in _DEVICE_TYPES:
        raise ValueError(
            f"unsupported device {str(device)!r}: use one of {', '.join(_DEVICE_TYPES)}"
        )
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{str(device)!r} requested but torch.cuda.is_available() is False "
                "(no CUDA GPU or a CPU-only torch build); use --device cpu"
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"{str(device)!r} requested but only {count} CUDA device(s) are visible"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"{str(device)!r} requested but torch.backends.mps.is_available() is False"
        )
    return resolved


def batch_generator(seed: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator seeded by ``(seed, step)``: batch ``step`` is the same on every (re)run.

    Args:
        seed: the stage's seed.
        step: the optimizer step.
        device: where the generator lives; it can only draw tensors on that device. The CPU
            generator (the default) is the one that picks training examples, so a stage sees the
            same batches on every device.
    """
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)


def rng_state(device: torch.device) -> dict[str, Tensor]:
    """The global torch generators' states (uint8 tensors): the CPU's and, training on CUDA,
    that device's. Dropout layers and anything else drawing without a ``generator`` use them."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned (a CUDA state only when training on CUDA)."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor inside (dicts, lists, tuples) moved to the CPU."""
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _progress(
    state: dict[str, Any], folder: Path
) -> tuple[int, list[tuple[int, float]], float, list[tuple[int, float]]]:
    """``(step, history, seconds, validation)`` of a checkpoint's training state, checked."""
    try:
        return (
            int(state.get("step", 0)),
            [(int(s), float(v)) for s, v in state.get("history", [])],
            float(state.get("seconds", 0.0)),
            [(int(s), float(v)) for s, v in state.get("validation", [])],
        )
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the training state in {folder} is corrupt: {error}") from error


def _restore(folder: Path, restore: Callable[[], object]) -> None:
    """Run ``restore`` (a ``load_state_dict``); a state that does not fit is a corrupt file."""
    try:
        restore()
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        raise CheckpointError(f"the training state in {folder} does not fit: {error!r}") from error


def cosine_lr(step: int, spec: StageSpec) -> float:
    """Learning rate at ``step``: linear warm-up, then cosine decay to 10% of ``spec.lr``."""
    if step < spec.warmup:
        return spec.lr * (step + 1) / spec.warmup
    progress = (step - spec.warmup) / max(1, spec.steps - spec.warmup)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class _LossModule(nn.Module):
    """The trained modules with the loss as their forward, so that DistributedDataParallel sees
    every parameter the loss uses (recipes' losses call their models' own methods)."""

    def __init__(
        self,
        modules: dict[str, nn.Module],
        loss_fn: Callable[[int, BatchPart], tuple[Tensor, dict[str, float]]],
    ) -> None:
        super().__init__()
        self.trained = nn.ModuleDict(modules)
        self.loss_fn = loss_fn

    def forward(self, step: int, part: BatchPart) -> tuple[Tensor, dict[str, float]]:
        return self.loss_fn(step, part)


def _gathered_rng(device: torch.device) -> dict[str, Any]:
    """What a checkpoint keeps of the random state: this rank's (under ``rng``, as one process
    writes it) and, with several processes, every rank's (``rng_ranks``, in rank order)."""
    own = rng_state(device)
    if not distributed.is_distributed():
        return {"rng": own}
    gathered = {key: distributed.all_gather_equal(value) for key, value in own.items()}
    ranks = [{key: gathered[key][r] for key in own} for r in range(distributed.world_size())]
    return {"rng": ranks[0], "rng_ranks": ranks}


def _own_rng(state: dict[str, Any]) -> dict[str, Tensor]:
    """This rank's saved random state: its own when the checkpoint was written by as many
    processes, else the first rank's (a different world size cannot replay the others)."""
    ranks = state.get("rng_ranks")
    if isinstance(ranks, list) and len(ranks) == distributed.world_size():
        return ranks[distributed.rank()]
    return state["rng"]


def _check_layout(folder: Path, shard: bool) -> None:
    """Refuse to resume from a ``latest/`` checkpoint of the other layout (sharded or whole)."""
    if is_sharded_checkpoint(folder) == shard:
        return
    if shard:
        raise CheckpointError(
            f"{folder} holds whole weights (written by one process, by DDP or by an older "
            "resgen's FSDP); resume it with the settings that wrote it, or delete it to restart "
            "the stage"
        )
    raise CheckpointError(
        f"{folder} holds FSDP shards; resume it with sharding='fsdp' on several processes "
        "(torchrun), or delete it to restart the stage"
    )


def run_stage(
    name: str,
    folder: Path,
    modules: dict[str, nn.Module],
    spec: StageSpec,
    loss_fn: Callable[..., tuple[Tensor, dict[str, float]]],
    config: dict[str, Any],
    *,
    log_every: int = 10,
    device: str | torch.device = "cpu",
    validate: Callable[[], float] | None = None,
    validate_every: int | None = None,
) -> StageResult:
    """Train ``modules`` with AdamW for ``spec.steps`` steps of ``loss_fn``, resumably.

    Args:
        name: stage name for the progress bar.
        folder: the stage's folder (``latest/`` and ``final/`` checkpoints inside).
        modules: trainable modules, saved under their names.
        spec: steps, batch size, learning rate, micro-batches.
        loss_fn: ``loss_fn(step)`` returns the loss of batch ``step`` and extra scalars to show,
            in a plain run (one process, ``spec.micro_batches == 1``); otherwise it is called
            as ``loss_fn(step, part)`` for each :class:`BatchPart` this process computes and
            returns the mean loss over that part's rows.
        config: configuration stored with (and checked against) the checkpoints.
        log_every: steps between entries of the loss history.
        device: where the modules train (they are moved there first, see
            :func:`resolve_device`); ``loss_fn`` must return a loss computed there. Checkpoints
            are written from the CPU, so a stage resumes or loads on any device.
        validate: optional held-out loss, called with the modules in eval mode and without
            gradients after every ``validate_every`` steps (default: ``spec.checkpoint_every``)
            and at the end; its values are the result's ``validation``. It must not train or
            draw from the global random state the training uses (use its own generator). With
            several processes only rank 0 validates.
        validate_every: steps between validations.

    Raises:
        ValueError: ``validate_every`` is not positive, or the number of processes does not
            divide ``spec.micro_batches``.
        FloatingPointError: the loss (of any process) is not finite.
        CheckpointError: a checkpoint in ``folder`` is corrupt or of another configuration.
    """
    device = resolve_device(device)
    if validate_every is None:
        validate_every = spec.checkpoint_every
    if validate_every < 1:
        raise ValueError(f"validate_every must be >= 1, got {validate_every}")
    world, main = distributed.world_size(), distributed.is_main()
    if spec.micro_batches % world:
        raise ValueError(
            f"{name}: {world} processes cannot share {spec.micro_batches} micro-batches; make "
            "micro_batches a multiple of the number of processes"
        )
    plain = world == 1 and spec.micro_batches == 1
    for module in modules.values():
        module.to(device)
    final, latest = folder / "final", folder / "latest"
    if main:
        for checkpoint in (final, latest):  # what a killed write left (the caller holds the lock)
            recover_checkpoint(checkpoint)
    distributed.barrier()
    if resolve_checkpoint(final) is not None:
        state = load_checkpoint(final, modules, config, training_state=True) or {}
        _, history, seconds, validation = _progress(state, final)
        if "rng" in state:  # what follows draws as it would after training this stage
            _restore(final, lambda: set_rng_state(_own_rng(state), device))
        distributed.barrier()
        if main:
            shutil.rmtree(latest, ignore_errors=True)
        for module in modules.values():
            module.eval()
        return StageResult(
            history=history, seconds=seconds, validation=validation, world_size=world
        )
    start, history, seconds, validation = 0, [], 0.0, []
    state: dict[str, Any] = {}
    shard = world > 1 and spec.sharding == "fsdp"
    resumed = resolve_checkpoint(latest)
    if resumed is not None:  # whole weights go in before any sharding, shards after
        _check_layout(resumed, shard)
        state = load_checkpoint(resumed, {} if shard else modules, config, training_state=True)
        state = state or {}
        start, history, seconds, validation = _progress(state, latest)
    root = _LossModule(modules, loss_fn)
    sharded = ShardedModules(root, device) if shard else None
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    average = WeightAverage(params, spec.ema_decay) if spec.ema_decay > 0 else None
    if state:
        if "rng" in state:
            _restore(latest, lambda: set_rng_state(_own_rng(state), device))
        if average is not None and "average" not in state:
            raise ValueError(
                f"{latest} holds no weight average but spec.ema_decay={spec.ema_decay}: "
                "resume with the settings it was started with, or delete it"
            )
        if sharded is not None:
            _restore(latest, lambda: sharded.load(resumed, optimizer, average, state))
        else:
            if "optimizer" in state:
                _restore(latest, lambda: optimizer.load_state_dict(state["optimizer"]))
            if average is not None:
                _restore(latest, lambda: average.load_state_dict(state["average"]))
    ddp: nn.Module | None = None
    if world > 1 and sharded is None:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(
            root,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,  # buffers that must agree (codebooks) synchronise themselves
            # a graph walk per micro-batch, only for stages whose parameters can sit out a step
            find_unused_parameters=spec.find_unused_parameters,
        )
    # Each micro-batch also seeds torch's global generators (dropout layers, condition dropout)
    # from (a base drawn once per stage, step, micro-batch): the same draws whichever process
    # computes it, and again after a resume.
    micro_seed = 0
    if not plain:
        micro_seed = int(state["micro_seed"]) if start and "micro_seed" in state else 0
        if not start:
            drawn = torch.randint(0, 2**62, (1,), dtype=torch.long)
            micro_seed = int(distributed.all_gather_equal(drawn)[0])
    own_parts = range(
        distributed.rank() * spec.micro_batches // world,
        (distributed.rank() + 1) * spec.micro_batches // world,
    )

    def run_validation(step: int) -> float:
        """Validate at ``step`` on rank 0 (with sharded weights, every rank swaps in its shard of
        the average and gathers the whole for it); returns the seconds it took."""
        if validate is None or (not main and sharded is None):
            return 0.0
        began = time.perf_counter()
        averaged = average.swapped() if average is not None else nullcontext()
        gathered = sharded.whole() if sharded is not None else nullcontext()
        with averaged, gathered:
            if main:
                for module in modules.values():
                    module.eval()
                with torch.no_grad(), autocast(spec, device):
                    validation.append((step, float(validate())))
                for module in modules.values():
                    module.train()
        return time.perf_counter() - began

    def accumulate(step: int) -> tuple[Tensor, dict[str, float]]:
        """Forward and backward of this process's micro-batches of ``step``; returns the mean
        loss over every process's and its last extras (gradients averaged by DDP)."""
        total = torch.zeros((), device=device)
        extras: dict[str, float] = {}
        for n, index in enumerate(own_parts):
            part = BatchPart(step, index, spec.micro_batches, spec.batch_size)
            last = n == len(own_parts) - 1
            torch.manual_seed(part.generator(micro_seed).initial_seed())
            if sharded is not None:
                sharded.gradient_sync(last)
            quiet = ddp.no_sync() if ddp is not None and not last else nullcontext()
            wrapped = ddp if ddp is not None else root if sharded is not None else None
            with quiet:
                with autocast(spec, device):
                    loss, extras = wrapped(step, part) if wrapped else loss_fn(step, part)
                (loss / len(own_parts)).backward()
            total = total + loss.detach().float()
        mean = total / len(own_parts)
        both = torch.stack([torch.nan_to_num(mean), (~torch.isfinite(mean)).float()])
        summed = distributed.all_reduce_sum(both)
        if summed[1] > 0:
            raise FloatingPointError(f"{name}: the loss became {float(mean)} at step {step}")
        return summed[0] / world, extras

    for module in modules.values():
        module.train()

    def checkpoint(step: int) -> None:
        """Write ``latest/`` after ``step`` steps (every rank calls it)."""
        state = {
            "step": step,
            "history": history,
            "seconds": seconds,
            "validation": validation,
            **_gathered_rng(device),
        }
        if not plain:
            state["micro_seed"] = micro_seed
        if sharded is not None:  # every rank writes its shards
            sharded.save(latest, optimizer, average, config, state)
            return
        state["optimizer"] = _to_cpu(optimizer.state_dict())
        if average is not None:
            state["average"] = average.state_dict()
        if main:
            save_checkpoint(latest, modules, config, state)
        distributed.barrier()

    def saved() -> dict[str, nn.Module]:
        """What a checkpoint writes of the weights (gathered by every rank when sharded)."""
        return modules if sharded is None else sharded.gathered_modules(list(modules))

    bar = tqdm(
        range(start, spec.steps),
        desc=name,
        initial=start,
        total=spec.steps,
        leave=True,
        disable=not main,
    )
    tick = began = time.perf_counter()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, spec)
        if plain:
            with autocast(spec, device):
                loss, extras = loss_fn(step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}: the loss became {float(loss)} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        else:
            optimizer.zero_grad(set_to_none=True)
            loss, extras = accumulate(step)
        torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        optimizer.step()
        if average is not None:
            average.update()
        if step % log_every == 0 or step == spec.steps - 1:
            history.append((step, float(loss.detach())))
            rate = spec.batch_size * (step + 1 - start) / max(time.perf_counter() - began, 1e-9)
            bar.set_postfix(
                loss=f"{float(loss.detach()):.4f}",
                **{k: f"{v:.3g}" for k, v in extras.items()},
                ex_s=f"{rate:.3g}",
                world=world,
            )
        if (step + 1) % validate_every == 0 and step + 1 < spec.steps:
            tick += run_validation(step + 1)
        if (step + 1) % spec.checkpoint_every == 0 and step + 1 < spec.steps:
            now = time.perf_counter()
            seconds, tick = seconds + now - tick, now
            checkpoint(step + 1)
    bar.close()
    seconds += time.perf_counter() - tick
    if average is not None:
        average.apply()
    run_validation(spec.steps)
    final_state = {
        "history": history,
        "seconds": seconds,
        "validation": validation,
        **_gathered_rng(device),
    }
    weights = saved()
    if main:
        save_checkpoint(final, weights, config, final_state)
        shutil.rmtree(latest, ignore_errors=True)  # final/ is what every reader uses from now on
    distributed.barrier()
    if sharded is not None:  # the caller samples and evaluates with whole modules
        sharded.keep_whole()
    for module in modules.values():
        module.eval()
    return StageResult(history=history, seconds=seconds, validation=validation, world_size=world)

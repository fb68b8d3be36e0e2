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

from resgen.training.averaging import WeightAverage
from resgen.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    recover_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)

__all__ = [
    "StageSpec",
    "StageResult",
    "autocast",
    "batch_generator",
    "cosine_lr",
    "resolve_device",
    "rng_state",
    "run_stage",
    "set_rng_state",
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


@frozen
class StageResult:
    """What :func:`run_stage` returns.

    Attributes:
        history: ``[(step, loss), ...]`` logged losses of the whole stage (resumed runs included).
        seconds: wall time spent training in this stage (summed over resumed runs).
        validation: ``[(step, loss), ...]`` of the stage's ``validate`` function (empty without
            one): the loss on data the stage never trains on, to see over-fitting.
    """

    history: list[tuple[int, float]]
    seconds: float
    validation: list[tuple[int, float]] = field(factory=list)


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


def run_stage(
    name: str,
    folder: Path,
    modules: dict[str, nn.Module],
    spec: StageSpec,
    loss_fn: Callable[[int], tuple[Tensor, dict[str, float]]],
    config: dict[str, Any],
    *,
    log_every: int = 10,
    device: str | torch.device = "cpu",
    validate: Callable[[], float] | None = None,
    validate_every: int | None = None,
) -> StageResult:
    """Train ``modules`` with AdamW for ``spec.steps`` steps of ``loss_fn(step)``, resumably.

    Args:
        name: stage name for the progress bar.
        folder: the stage's folder (``latest/`` and ``final/`` checkpoints inside).
        modules: trainable modules, saved under their names.
        spec: steps, batch size, learning rate.
        loss_fn: returns the loss of batch ``step`` and extra scalars to show.
        config: configuration stored with (and checked against) the checkpoints.
        log_every: steps between entries of the loss history.
        device: where the modules train (they are moved there first, see
            :func:`resolve_device`); ``loss_fn`` must return a loss computed there. Checkpoints
            are written from the CPU, so a stage resumes or loads on any device.
        validate: optional held-out loss, called with the modules in eval mode and without
            gradients after every ``validate_every`` steps (default: ``spec.checkpoint_every``)
            and at the end; its values are the result's ``validation``. It must not train or
            draw from the global random state the training uses (use its own generator).
        validate_every: steps between validations.
    """
    device = resolve_device(device)
    if validate_every is None:
        validate_every = spec.checkpoint_every
    if validate_every < 1:
        raise ValueError(f"validate_every must be >= 1, got {validate_every}")
    for module in modules.values():
        module.to(device)
    final, latest = folder / "final", folder / "latest"
    for checkpoint in (final, latest):  # what a killed write left (the caller holds the lock)
        recover_checkpoint(checkpoint)
    if resolve_checkpoint(final) is not None:
        state = load_checkpoint(final, modules, config, training_state=True) or {}
        _, history, seconds, validation = _progress(state, final)
        if "rng" in state:  # what follows draws as it would after training this stage
            _restore(final, lambda: set_rng_state(state["rng"], device))
        shutil.rmtree(latest, ignore_errors=True)
        for module in modules.values():
            module.eval()
        return StageResult(history=history, seconds=seconds, validation=validation)
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    average = WeightAverage(params, spec.ema_decay) if spec.ema_decay > 0 else None
    start, history, seconds, validation = 0, [], 0.0, []
    if resolve_checkpoint(latest) is not None:
        state = load_checkpoint(latest, modules, config, training_state=True) or {}
        start, history, seconds, validation = _progress(state, latest)
        if "rng" in state:
            _restore(latest, lambda: set_rng_state(state["rng"], device))
        if "optimizer" in state:
            _restore(latest, lambda: optimizer.load_state_dict(state["optimizer"]))
        if average is not None:
            if "average" not in state:
                raise ValueError(
                    f"{latest} holds no weight average but spec.ema_decay={spec.ema_decay}: "
                    "resume with the settings it was started with, or delete it"
                )
            _restore(latest, lambda: average.load_state_dict(state["average"]))

    def run_validation(step: int) -> float:
        """Validate at ``step``; returns the seconds it took (not training time)."""
        if validate is None:
            return 0.0
        began = time.perf_counter()
        for module in modules.values():
            module.eval()
        averaged = average.swapped() if average is not None else nullcontext()
        with torch.no_grad(), autocast(spec, device), averaged:
            validation.append((step, float(validate())))
        for module in modules.values():
            module.train()
        return time.perf_counter() - began

    for module in modules.values():
        module.train()

    def snapshot(step: int) -> dict[str, Any]:
        state = {
            "optimizer": _to_cpu(optimizer.state_dict()),
            "step": step,
            "history": history,
            "seconds": seconds,
            "validation": validation,
            "rng": rng_state(device),
        }
        if average is not None:
            state["average"] = average.state_dict()
        return state

    bar = tqdm(range(start, spec.steps), desc=name, initial=start, total=spec.steps, leave=True)
    tick = time.perf_counter()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, spec)
        with autocast(spec, device):
            loss, extras = loss_fn(step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{name}: the loss became {float(loss)} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        optimizer.step()
        if average is not None:
            average.update()
        if step % log_every == 0 or step == spec.steps - 1:
            history.append((step, float(loss.detach())))
            bar.set_postfix(
                loss=f"{float(loss.detach()):.4f}", **{k: f"{v:.3g}" for k, v in extras.items()}
            )
        if (step + 1) % validate_every == 0 and step + 1 < spec.steps:
            tick += run_validation(step + 1)
        if (step + 1) % spec.checkpoint_every == 0 and step + 1 < spec.steps:
            now = time.perf_counter()
            seconds, tick = seconds + now - tick, now
            save_checkpoint(latest, modules, config, snapshot(step + 1))
    bar.close()
    seconds += time.perf_counter() - tick
    if average is not None:
        average.apply()
    run_validation(spec.steps)
    save_checkpoint(
        final,
        modules,
        config,
        {
            "history": history,
            "seconds": seconds,
            "validation": validation,
            "rng": rng_state(device),
        },
    )
    shutil.rmtree(latest, ignore_errors=True)  # final/ is what every reader uses from now on
    for module in modules.values():
        module.eval()
    return StageResult(history=history, seconds=seconds, validation=validation)

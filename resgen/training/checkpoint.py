"""Atomic checkpoints in formats that cannot run code: safetensors for tensors, JSON for the rest.

A checkpoint is a folder::

    NAME.safetensors     the weights of each module
    config.json          what rebuilds the modules
    state.json           training state (step, loss history, optimizer settings, ...), with
    state.safetensors    its tensors (optimizer moments, random-number-generator states)

Nothing in it is unpickled, so a run folder from someone else is as safe to load as a
safetensors file. Run folders written before this format hold ``state.pt`` instead of
``state.json``: it is read only when resuming training, and only with
``torch.load(weights_only=True)`` (tensors and plain containers, no code); sampling never reads
training state.

A stage trained with sharded weights (FSDP2) writes its ``latest/`` checkpoint as
``torch.distributed.checkpoint`` shards instead of ``NAME.safetensors`` files, in the same
folder layout otherwise (:mod:`~resgen.training.distributed_checkpoint`).

**Writing.** A checkpoint is written into a temporary sibling (``.NAME.tmp-*``), every file and the
folder are flushed to disk, and it is swapped in with two renames: the previous checkpoint moves
to ``.NAME.old``, the new one to ``NAME``, then ``.NAME.old`` is removed. A crash between the two
renames leaves ``NAME`` missing and ``.NAME.old`` complete: :func:`resolve_checkpoint` (which every
reader uses) then reads ``.NAME.old``, and :func:`recover_checkpoint` (run by the trainer, which
holds the run folder's lock) renames it back and removes temporary folders left by killed writes.

**Which checkpoint a reader uses.** A stage folder holds ``final/`` once the stage finished and
``latest/`` only while it trains (it is removed once ``final/`` is in place). Everything that uses a
trained model reads ``final/`` (:func:`finished_checkpoint`); only the trainer resumes from
``latest/``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from resgen.errors import ResgenError
from resgen.files import atomic_write, fsync_path, new_file_mode

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "publish_checkpoint",
    "load_checkpoint",
    "read_config",
    "read_json",
    "build_from_config",
    "write_json",
    "save_tensors",
    "resolve_checkpoint",
    "recover_checkpoint",
    "finished_checkpoint",
]

T = TypeVar("T")


class CheckpointError(ResgenError, RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path``, whole or not at all (see
    :func:`~resgen.files.atomic_write`)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: str | Path, what: str = "file") -> Any:
    """The JSON content of ``path``.

    Args:
        path: the file.
        what: what the file is, for the error message (e.g. ``"recipe configuration"``).

    Raises:
        CheckpointError: the file is missing or not valid UTF-8 JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise CheckpointError(f"{path} is missing (the run's {what})") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON (the run's {what}): {error}") from error


# --------------------------------------------------------------------------- training state
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


def _encode(value: Any, tensors: dict[str, Tensor]) -> Any:
    """``value`` as JSON, its tensors moved to ``tensors`` (tuples and non-string keys kept)."""
    if isinstance(value, Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().cpu().contiguous().clone()  # safetensors refuses views
        return {_TENSOR: key}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {_ITEMS: [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a checkpoint's training state cannot hold a {type(value).__name__}")


def _decode(value: Any, tensors: dict[str, Tensor]) -> Any:
    """Invert :func:`_encode`."""
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {_TENSOR}:
        return tensors[value[_TENSOR]]
    if set(value) == {_TUPLE}:
        return tuple(_decode(v, tensors) for v in value[_TUPLE])
    if set(value) == {_ITEMS}:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value[_ITEMS]}
    return {k: _decode(v, tensors) for k, v in value.items()}


def _write_state(folder: Path, state: dict[str, Any]) -> None:
    tensors: dict[str, Tensor] = {}
    encoded = _encode(state, tensors)
    (folder / "state.json").write_text(json.dumps(encoded) + "\n")
    if tensors:
        _save_tensors(tensors, folder / "state.safetensors")


def _read_state(folder: Path) -> dict[str, Any] | None:
    """The training state of a checkpoint folder (``None`` when it holds none)."""
    path = folder / "state.json"
    if path.is_file():
        tensors_path = folder / "state.safetensors"
        try:
            tensors = load_file(str(tensors_path)) if tensors_path.is_file() else {}
            return _decode(read_json(path, "training state"), tensors)
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"cannot read training state {tensors_path}: {error}") from error
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"training state {path} is corrupt: {error!r}") from error
    legacy = folder / "state.pt"
    if not legacy.is_file():
        return None
    try:  # written by resgen before state.json; weights_only: plain data and tensors, no code
        with warnings.catch_warnings():  # its remarks on pickle protocols are noise here
            warnings.simplefilter("ignore")
            return torch.load(legacy, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(
            f"cannot read the training state {legacy} safely ({type(error).__name__}); delete "
            f"{folder} to restart this stage from its beginning"
        ) from error


# --------------------------------------------------------------------------- writing
def save_checkpoint(
    folder: str | Path,
    modules: dict[str, nn.Module],
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
) -> None:
    """Write ``modules`` (one ``NAME.safetensors`` each), ``config.json`` and the training state.

    Args:
        folder: the checkpoint folder (replaced as a whole; see the module's documentation).
        modules: modules whose ``state_dict`` is saved.
        config: JSON-serialisable configuration needed to rebuild the modules.
        state: optional training state: nested dicts, lists and tuples of tensors, numbers,
            strings, booleans and ``None`` (``state.json`` + ``state.safetensors``).

    Raises:
        OSError: the disk is full or the folder is not writable (the previous checkpoint is kept
            and no temporary folder is left).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        for name, module in modules.items():
            tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            _save_tensors(tensors, tmp / f"{name}.safetensors")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_checkpoint(tmp, folder, config, state)


def publish_checkpoint(
    tmp: str | Path, folder: str | Path, config: dict[str, Any], state: dict[str, Any] | None
) -> None:
    """Complete the temporary folder ``tmp`` (which holds the weights already) with
    ``config.json`` and the training state, flush it to disk and swap it in as ``folder`` (see
    the module's documentation). ``tmp`` must be a sibling named ``.NAME.tmp-*``.

    Raises:
        OSError: the disk is full or the folder is not writable (``tmp`` is removed and the
            previous checkpoint kept).
    """
    tmp, folder = Path(tmp), Path(folder)
    try:
        os.chmod(tmp, new_file_mode(directory=True))  # mkdtemp makes a private (0700) folder
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if state is not None:
            _write_state(tmp, state)
        for path in tmp.iterdir():
            os.chmod(path, new_file_mode())  # safetensors writes private (0600) files
            fsync_path(path)
        fsync_path(tmp)
        _restore_old(folder)
        old = _old(folder)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        fsync_path(folder.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_tensors(tensors: dict[str, Tensor], path: str | Path) -> None:
    """Write ``tensors`` (name -> tensor) as a safetensors file, whole or not at all and with the
    umask's permissions (:func:`~resgen.files.atomic_write`)."""
    atomic_write(path, lambda tmp: _save_tensors(tensors, tmp))


def _save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    try:
        save_file(tensors, str(path))
    except SafetensorError as error:  # the serialiser reports a full disk as its own error
        text = str(error)
        code = next((c for c, words in _WRITE_ERRORS if words in text), None)
        raise (
            OSError(code, text, str(path)) if code else OSError(f"cannot write {path}: {text}")
        ) from error


_WRITE_ERRORS = (
    (errno.ENOSPC, "No space left"),
    (errno.EFBIG, "File too large"),
    (errno.EDQUOT, "quota exceeded"),
)
"""What the safetensors serialiser's message says when the disk (or the file size limit) is full."""


# --------------------------------------------------------------------------- finding
def _old(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def _complete(folder: Path) -> bool:
    # config.json is written inside the temporary folder, so a folder under a checkpoint's
    # name (or .old) holding it is whole
    return (folder / "config.json").is_file()


def resolve_checkpoint(folder: str | Path) -> Path | None:
    """Where the checkpoint ``folder`` is: itself, or ``.NAME.old`` when a crash between the two
    renames of :func:`save_checkpoint` left only that; ``None`` when there is none."""
    folder = Path(folder)
    if _complete(folder):
        return folder
    return _old(folder) if _complete(_old(folder)) else None


def recover_checkpoint(folder: str | Path) -> None:
    """Undo what a killed :func:`save_checkpoint` left: rename a complete ``.NAME.old`` back to
    ``NAME`` when ``NAME`` is missing or incomplete, and remove ``.NAME.tmp-*`` folders.

    Only the process holding the run folder's lock may call this (it removes files)."""
    folder = Path(folder)
    _restore_old(folder)
    for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _restore_old(folder: Path) -> None:
    """Rename a complete ``.NAME.old`` back to ``NAME`` if ``NAME`` is not whole, else drop it."""
    old = _old(folder)
    if not _complete(folder) and _complete(old):
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(old, folder)
    elif old.exists():
        shutil.rmtree(old, ignore_errors=True)


def finished_checkpoint(stage: str | Path) -> Path:
    """The ``final/`` checkpoint of a stage folder: the one rule by which trained models are read.

    Args:
        stage: a stage folder of a run (e.g. ``RUN/generator``), holding ``final/`` and, while
            it trains, ``latest/``.

    Raises:
        CheckpointError: the stage has no finished checkpoint.
    """
    stage = Path(stage)
    found = resolve_checkpoint(stage / "final")
    if found is not None:
        return found
    if resolve_checkpoint(stage / "latest") is not None:
        raise CheckpointError(
            f"{stage} has not finished training (only latest/): re-run `resgen train` with the "
            "same --out to finish it"
        )
    raise CheckpointError(f"no finished checkpoint in {stage} ({stage / 'final'} is missing)")


# --------------------------------------------------------------------------- reading
def read_config(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder."""
    found = resolve_checkpoint(folder)
    if found is None:
        raise CheckpointError(f"no checkpoint in {folder} (config.json is missing)")
    config = read_json(found / "config.json", "checkpoint configuration")
    if not isinstance(config, dict):
        raise CheckpointError(f"{found / 'config.json'} does not hold a configuration")
    return config


def build_from_config(folder: str | Path, key: str, build: Callable[..., T]) -> T:
    """``build(**config[key])`` for the ``config.json`` of a checkpoint folder.

    Args:
        folder: the checkpoint folder.
        key: the section of its configuration (e.g. ``"codec"``).
        build: a constructor taking the section's entries as keyword arguments.

    Raises:
        CheckpointError: the section is missing or does not fit ``build`` (a checkpoint of
            another recipe or model).
    """
    config = read_config(folder)
    try:
        return build(**config[key])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{folder} does not hold the expected model ({key!r} configuration: {error}); "
            "is it a run of another recipe?"
        ) from error


def load_checkpoint(
    folder: str | Path,
    modules: dict[str, nn.Module],
    expected_config: dict[str, Any] | None = None,
    *,
    training_state: bool = False,
) -> dict[str, Any] | None:
    """Load weights into ``modules`` and, if asked, return the training state.

    Args:
        folder: the checkpoint folder (or its ``.old`` twin, see :func:`resolve_checkpoint`).
        modules: modules to load, by name.
        expected_config: when given, the saved ``config.json`` must equal it.
        training_state: also read the training state (resuming); sampling leaves it unread.

    Returns:
        The training state, or ``None`` (not asked for, or none saved).

    Raises:
        CheckpointError: the folder is missing, a file is corrupt, the saved config differs from
            ``expected_config``, or the weights do not fit a module (names or shapes differ).
    """
    found = resolve_checkpoint(folder)
    if found is None:
        raise CheckpointError(f"no checkpoint in {folder} (config.json is missing)")
    config = read_config(found)
    if expected_config is not None and config != json.loads(json.dumps(expected_config)):
        changed = sorted(
            k for k in set(config) | set(expected_config) if config.get(k) != expected_config.get(k)
        )
        raise CheckpointError(
            f"checkpoint {found} was written with a different configuration "
            f"(differs in: {', '.join(changed)}); use another output folder or the same settings"
        )
    for name, module in modules.items():
        path = found / f"{name}.safetensors"
        try:
            tensors = load_file(str(path))
        except (FileNotFoundError, SafetensorError, OSError) as error:
            raise CheckpointError(f"cannot read weights {path}: {error}") from error
        try:
            module.load_state_dict(tensors, strict=True)
        except RuntimeError as error:
            first = str(error).strip().splitlines()
            raise CheckpointError(
                f"weights {path} do not fit the model: {' '.join(s.strip() for s in first[:3])}"
            ) from error
    return _read_state(found) if training_state else None

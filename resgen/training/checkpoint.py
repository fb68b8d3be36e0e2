"""Atomic checkpoints: safetensors weights + JSON config + a torch file of training state.

A checkpoint is a folder. It is written into a temporary sibling and swapped in with renames, so an
interrupted write never leaves a half-written checkpoint where the last good one was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "read_config", "write_json"]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(handle.name, path)


def save_checkpoint(
    folder: str | Path,
    modules: dict[str, nn.Module],
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
) -> None:
    """Write ``modules`` (one ``NAME.safetensors`` each), ``config.json`` and ``state.pt``.

    Args:
        folder: the checkpoint folder (replaced as a whole).
        modules: modules whose ``state_dict`` is saved.
        config: JSON-serialisable configuration needed to rebuild the modules.
        state: optional training state (optimizer state, step, loss history), saved with torch.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        for name, module in modules.items():
            tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            save_file(tensors, str(tmp / f"{name}.safetensors"))
        write_json(tmp / "config.json", config)
        if state is not None:
            torch.save(state, tmp / "state.pt")
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _existing(folder: Path) -> Path | None:
    if (folder / "config.json").is_file():
        return folder
    old = folder.with_name(f".{folder.name}.old")  # interrupted between the two renames
    return old if (old / "config.json").is_file() else None


def read_config(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder."""
    found = _existing(Path(folder))
    if found is None:
        raise CheckpointError(f"no checkpoint in {folder} (config.json is missing)")
    try:
        return json.loads((found / "config.json").read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{found / 'config.json'} is not valid JSON: {error}") from error


def load_checkpoint(
    folder: str | Path,
    modules: dict[str, nn.Module],
    expected_config: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Load weights into ``modules`` and return the training state (``None`` if none was saved).

    Raises:
        CheckpointError: the folder is missing, a file is corrupt, the saved config differs from
            ``expected_config``, or the weights do not fit a module (names or shapes differ).
    """
    folder = Path(folder)
    found = _existing(folder)
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
            raise CheckpointError(f"weights {path} do not fit the model: {error}") from error
    state_path = found / "state.pt"
    if not state_path.is_file():
        return None
    try:
        return torch.load(state_path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise CheckpointError(f"cannot read training state {state_path}: {error}") from error

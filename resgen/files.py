"""Writing files the way a user expects: whole or not at all, on disk, readable like their others.

Every file ``resgen`` writes for a user (checkpoints, JSON, pictures, WAVs, statistics) goes
through :func:`atomic_write`: it is written under a temporary name beside its target, flushed to
disk, given the permissions the user's umask gives new files, and renamed into place, so a crash
or a full disk never leaves a half-written file under the final name. :func:`check_output_file`
checks a path given on the command line before any work is done.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["atomic_write", "check_output_file", "fsync_path", "new_file_mode"]


def new_file_mode(directory: bool = False) -> int:
    """The permission bits a new file (or folder) gets from the process umask, e.g. ``0o644``."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def fsync_path(path: str | Path) -> None:
    """Flush a file or a folder (its entries: renames into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output_file(path: str | Path, suffixes: Sequence[str] | None = None) -> Path:
    """Check, before any work, that a file can be written at ``path``.

    Missing parent folders are fine (they are created), but the nearest existing one must be a
    writable folder, and ``path`` itself must not be a folder or a special file.

    Args:
        path: the file to write.
        suffixes: the accepted suffixes (lower case, e.g. ``(".png", ".jpg")``); ``None``: any.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        IsADirectoryError: ``path`` is a folder.
        FileExistsError: ``path`` exists but is not a regular file (e.g. ``/dev/full``).
        NotADirectoryError: a parent of ``path`` is a file.
        PermissionError: the folder it goes in is not writable.
        ValueError: the suffix is not one of ``suffixes``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the name of a file to write")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise ValueError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(suffixes)}"
        )
    if path.exists() and not path.is_file():
        raise FileExistsError(f"{path} exists and is not a regular file")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: the folder {parent} is not writable")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write a file whole or not at all: ``write(tmp)`` fills a temporary file, then it is
    flushed to disk, given the umask's permissions and renamed to ``path``.

    Args:
        path: the file to (re)place; missing parent folders are created.
        write: writes the content to the path it is given (which exists, empty).

    Raises:
        OSError: the file cannot be written (the temporary file is removed; ``path`` keeps its
            previous content, if any).
    """
    path = check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        fsync_path(tmp)
        # mkstemp makes private (0600) files; the result is a user's file like any other
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)

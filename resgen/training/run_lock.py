"""One writer per run folder: ``resgen train`` holds ``RUN/.lock`` while it writes the folder.

The lock is an advisory ``fcntl.flock`` on ``RUN/.lock``, which holds the holder's pid and host
name for the message a second writer gets. The kernel releases it when its process exits, however
it ends (killed included), so a lock file left behind by a dead process is simply taken over.
``flock`` is not reliable on some network file systems (NFS without lock support).

Under torchrun the run's processes write one folder together: rank 0 holds the lock for all of
them (the others wait until it has it, and never remove anything).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from resgen.errors import RunFolderInUseError
from resgen.training import distributed

__all__ = ["LOCK_NAME", "check_run_folder", "lock_run_folder"]

LOCK_NAME = ".lock"
"""The lock file's name inside a run folder."""


@contextmanager
def lock_run_folder(folder: str | Path) -> Iterator[Path]:
    """Hold the run folder's lock for the block (the folder is created if missing); temporary
    files a killed writer left in the folder (``.*.tmp``) are removed once it is held.

    Args:
        folder: the run folder (``--out``).

    Yields:
        The folder.

    Raises:
        RunFolderInUseError: another process holds the lock (the message names it).
        OSError: the folder cannot be created or the lock file written.
    """
    folder = Path(folder)
    if not distributed.is_main():
        distributed.barrier()  # rank 0 made the folder and holds the lock for the run
        yield folder
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise RunFolderInUseError(
                f"{folder} is being written by another resgen process ({holder}); wait for it "
                "to finish or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        for stale in folder.glob(".*.tmp"):  # left by a killed atomic_write: nobody else writes
            if stale.is_file():
                stale.unlink(missing_ok=True)
        distributed.barrier()
        yield folder
    finally:
        os.close(fd)  # closing releases the lock


def check_run_folder(folder: str | Path) -> Path:
    """Check, before any work, that ``folder`` can be a run folder (it may not exist yet).

    Raises:
        NotADirectoryError: ``folder`` or one of its parents is a file.
        PermissionError: the nearest existing folder is not writable.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"--out {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {folder}: the folder {existing} is not writable")
    return folder

"""Which code made a figure: the git commit recorded beside every benchmark's results."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["git_commit"]


def git_commit(folder: str | Path | None = None) -> str:
    """The full hash of the commit checked out at ``folder`` (default: this package's
    checkout), or ``"unknown"`` outside a git checkout or without git.

    Read once at the start of a long run, it names the code that runs, whatever is committed
    meanwhile.
    """
    where = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=where
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"

"""The errors a user can fix, and the one rule by which the command line reports them.

Every input the command line reads (a flag, a run folder, an image, an audio file, a transcript)
is checked where it is read, and a bad one raises an exception of :data:`USER_ERRORS`: our own
:class:`ResgenError` subclasses, ``ValueError`` (a bad value or a corrupt file) or ``OSError``
(missing, unreadable or unwritable paths, a full disk). ``resgen`` prints such an error as one
line, ``resgen: error: ...``, and exits with status 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno

__all__ = ["ResgenError", "RunFolderInUseError", "USER_ERRORS", "describe"]


class ResgenError(Exception):
    """An error the user can fix (a bad input, a corrupt or mismatched file, a busy folder)."""


class RunFolderInUseError(ResgenError):
    """Another process is writing the run folder (it holds the folder's lock)."""


USER_ERRORS: tuple[type[BaseException], ...] = (ResgenError, ValueError, OSError, EOFError)
"""The exception types ``resgen`` reports as one line instead of a traceback."""

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def describe(error: BaseException) -> str:
    """``error`` as one line for the user: what went wrong and, for a full disk, what to do.

    Args:
        error: an exception of :data:`USER_ERRORS`.

    Returns:
        A single line (newlines of the original message become ``"; "``).
    """
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        where = f" writing {error.filename}" if error.filename else ""
        text = (
            f"no space left{where} ({error.strerror or error}); free some space (or raise the "
            "file size limit) and re-run the same command: a run resumes from its last checkpoint"
        )
    elif isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())

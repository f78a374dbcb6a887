"""What is really wrong with an input path: missing, a symbolic link loop, a directory, empty, unreadable.

``Path.is_file()`` answers False for all of these alike, which made every one
of them read as "does not exist"; and a zero-byte file reached the decoder,
which blamed its "Invalid data". :func:`file_problem` names the actual fault
so that messages say what to fix.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from emorec.errors import MediaError


def file_problem(path: str | os.PathLike, allow_empty: bool = False) -> str | None:
    """Why ``path`` cannot be read as an input file, or None when it can.

    Args:
        path: the file to check.
        allow_empty: accept a zero-byte file.

    Returns:
        A phrase to follow the path in a message, e.g. ``"does not exist"``,
        ``"is a symbolic link loop"``, ``"is empty (0 bytes)"``; None for a
        readable non-empty regular file.

    >>> file_problem("/nonexistent/emorec/file.wav")
    'does not exist'
    """
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        return _stat_problem(path, exc)
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a device, socket or pipe)"
    if info.st_size == 0 and not allow_empty:
        return "is empty (0 bytes)"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def _stat_problem(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop (the link points, through links, back to itself)"
    if exc.errno == errno.ENOENT:
        if path.is_symlink():
            return f"is a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        return "does not exist"
    if exc.errno == errno.ENOTDIR:
        return "does not exist (a folder on its path is a file)"
    if exc.errno == errno.EACCES:
        return "cannot be reached (permission denied on a folder of its path)"
    if exc.errno == errno.ENAMETOOLONG:
        return "has a name too long for the file system"
    return f"cannot be read ({exc.strerror or exc})"


def check_input_file(path: str | os.PathLike, what: str = "file", allow_empty: bool = False) -> Path:
    """``path`` as a Path if it is a readable non-empty file, else MediaError ``"<path>: <problem>"``.

    Args:
        path: the file to check.
        what: the kind of file, used only in the "does not exist" message (e.g. ``"audio file"``).
        allow_empty: accept a zero-byte file.

    Returns:
        ``Path(path)``.

    Raises:
        MediaError: the file is missing, a link loop, a directory, empty or unreadable.
    """
    path = Path(path)
    problem = file_problem(path, allow_empty=allow_empty)
    if problem is None:
        return path
    if problem == "does not exist":
        problem = f"no such {what}"
    raise MediaError(f"{path}: {problem}")

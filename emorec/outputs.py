"""Checks that an output path can be written, made before the work that fills it.

Commands that compute for minutes and then write (``emorec predict --out``,
``emorec evaluate --out``) check their outputs first, so an unusable path
fails at once with a one-line :class:`~emorec.errors.ConfigError` naming it,
and nothing (not even a tuned post-processing chain) is written.
A check creates no folder: the nearest existing ancestor must be a folder
in which a temporary file can be created (and is, then removed at once), the
way the write itself will create its temporary file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from emorec.errors import ConfigError


def _existing_ancestor(path: Path) -> Path:
    for parent in path.parents:
        if os.path.lexists(parent):
            return parent
    return Path(".")


def _check_folder_writable(folder: Path, path: Path, what: str) -> None:
    if not folder.is_dir():
        raise ConfigError(f"{path}: cannot write {what} there: {folder} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write {what} there: {folder} is not writable "
                          f"({exc.strerror or exc})") from None


def check_output_file(path, what: str = "the output") -> Path:
    """Raise unless ``path`` can be written as a file (its folders may still be missing).

    Args:
        path: the file to be written.
        what: what it is, for the message (``"the predictions"``).

    Returns:
        ``path`` as a Path.

    Raises:
        ConfigError: ``path`` is a folder, or its nearest existing ancestor is not a writable folder.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a file name for {what}")
    folder = path.parent if path.parent.is_dir() else _existing_ancestor(path)
    _check_folder_writable(folder, path, what)
    return path


def check_output_dir(path, what: str = "the outputs") -> Path:
    """Raise unless ``path`` is, or can be created as, a writable folder.

    Nothing is created; a temporary file is made and removed in the folder (or its nearest
    existing ancestor) to prove it writable.

    Args:
        path: the output folder.
        what: what goes there, for the message (``"the outputs"``).

    Returns:
        ``path`` as a Path.

    Raises:
        ConfigError: ``path`` is a file, or it (or its nearest existing ancestor) is not writable.
    """
    path = Path(path)
    if path.is_dir():
        _check_folder_writable(path, path, what)
    elif os.path.lexists(path):
        raise ConfigError(f"{path}: is a file, not a folder for {what}")
    else:
        _check_folder_writable(_existing_ancestor(path), path, what)
    return path


def write_output_file(path, data: bytes, what: str = "the output") -> Path:
    """Write ``data`` to ``path`` atomically, creating its folders.

    Args:
        path: the file to write (replaced if it exists).
        data: the bytes to write.
        what: what it is, for the message (``"the predictions"``).

    Returns:
        ``path`` as a Path.

    Raises:
        ConfigError: the folders or the file cannot be written (the OSError as one line).
    """
    from emorec.manifest import atomic_write_bytes

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write {what} ({exc.strerror or exc})") from None
    return path

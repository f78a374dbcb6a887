"""One build at a time per output directory: ``OUT/.emorec-build.lock``.

Two builds writing the same directory would each rewrite ``manifest.json``
from their own view, and the last writer would silently win. A build
therefore creates the lock file atomically (written under a temporary name,
then hard-linked into place, which fails if it exists) holding its process
id, host and start time, and removes it when it ends, however it ends
(success, error, Ctrl-C). A lock left by a process that no longer exists on
this host (``kill -9``, a power cut) is stale and is taken over with a
warning; a lock held by a live process, or by one on another host (which
cannot be checked), stops the build with a message naming its holder.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from emorec.errors import DatasetError

logger = logging.getLogger(__name__)

LOCK_NAME = ".emorec-build.lock"


class BuildLockedError(DatasetError):
    """Another build holds the output directory's lock."""


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of dataset directory ``out``.

    Args:
        out: the dataset (build output) directory.

    Returns:
        ``out/.emorec-build.lock`` (whether or not it exists).

    >>> lock_path("data/demo").as_posix()
    'data/demo/.emorec-build.lock'
    """
    return Path(out) / LOCK_NAME


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``; None elsewhere), to tell a reused pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, counted after the command name, which may itself hold spaces and parentheses.
    fields = text[text.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _owner() -> dict:
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "process_start": _process_start(pid),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


def _describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')}, since {holder.get('started')}"
        + (f" ({holder['command']})" if holder.get("command") else "")
    )


def _is_stale(holder: dict) -> bool:
    """True if the holder is certainly gone: same host, and its pid is dead or now another process."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    pid = holder["pid"]
    if not _pid_alive(pid):
        return True
    started = holder.get("process_start")
    return started is not None and _process_start(pid) not in (None, started)


def _read(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _create(path: Path, owner: dict) -> bool:
    """Create the lock holding ``owner``; False if it already exists."""
    fd, tmp = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(owner, handle)
            handle.write("\n")
        try:
            os.link(tmp, path)  # atomic, and complete when visible
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
        # A file system without hard links: exclusive creation, then the content.
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(owner, handle)
            handle.write("\n")
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def acquire(out: str | os.PathLike) -> dict:
    """Take the lock of ``out`` for this process; returns what was written in it.

    A stale lock (its process gone from this host) is taken over with a warning.

    Args:
        out: the dataset directory to lock (must exist).

    Returns:
        The owner record written into the lock: ``pid``, ``host``, ``process_start``,
        ``started`` (ISO time) and ``command``; pass it to :func:`release`.

    Raises:
        BuildLockedError: a live build (or one on another host, or an unreadable lock) holds it,
            or other builds kept taking it over five attempts.
    """
    path = lock_path(out)
    owner = _owner()
    for _ in range(5):  # a stale lock removed, or our temporary file cleaned, by a racing build
        try:
            if _create(path, owner):
                return owner
        except FileNotFoundError:
            continue
        try:
            holder = _read(path)
        except FileNotFoundError:
            continue  # released between our attempt and the read
        if holder is None:
            raise BuildLockedError(
                f"{path}: another build may be writing {Path(out)} (its lock file cannot be "
                "read); if no build is running there, delete the lock file and rerun"
            )
        if _is_stale(holder):
            logger.warning("%s: taking over the lock of a build that is gone (%s)", path, _describe(holder))
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        here = holder.get("host") == socket.gethostname()
        raise BuildLockedError(
            f"{path}: another build is writing {Path(out)}: {_describe(holder)}; wait for it to "
            "finish or stop it"
            + ("" if here else ", or, if it no longer runs on that host, delete the lock file")
            + " (two builds into one directory would overwrite each other's manifest)"
        )
    raise BuildLockedError(f"{path}: could not take the lock (other builds keep taking it)")


def release(out: str | os.PathLike, owner: dict) -> None:
    """Remove the lock of ``out`` if it is still ``owner``'s.

    A lock already gone, or now held by another process, is left alone.

    Args:
        out: the dataset directory.
        owner: the record :func:`acquire` returned (its ``pid`` and ``host`` are compared).
    """
    path = lock_path(out)
    try:
        holder = _read(path)
    except FileNotFoundError:
        return
    if holder is not None and holder.get("pid") == owner["pid"] and holder.get("host") == owner["host"]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def build_lock(out: str | os.PathLike) -> Iterator[dict]:
    """Hold the lock of ``out`` for the ``with`` block; released on return, error and Ctrl-C.

    Args:
        out: the dataset directory to lock (must exist).

    Yields:
        The owner record written into the lock (see :func:`acquire`).

    Raises:
        BuildLockedError: see :func:`acquire`.
    """
    owner = acquire(out)
    try:
        yield owner
    finally:
        release(out, owner)

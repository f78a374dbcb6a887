"""What a command prints on the terminal: Python log records, and TensorFlow's C++ log lines kept off it.

TensorFlow's C++ runtime writes its own log lines straight to file
descriptor 2 (the oneDNN banner, the CUDA stub notice, ``failed call to
cuInit`` on a machine without a GPU, and during training grappler's
``remapper failed: ... Mutation::Apply error``, an ``E`` line that is not an
error of the run). ``TF_CPP_MIN_LOG_LEVEL`` does not silence the lines that
absl writes before its logging is initialised, so :func:`configure` puts a
filter on the descriptor itself: a pipe read by a thread that forwards
everything except lines in absl/glog's format (``I0000 00:00:... file.cc:12]``)
and absl's "All log messages before absl::InitializeLog()" notice. Child
processes (the parallel dataset build) inherit the filtered descriptor.
With ``--verbose`` nothing is filtered and TensorFlow's own log level is left
at its default.

Call :func:`configure` once, at a command's entry point, before TensorFlow is
imported; library modules only log through :mod:`logging`. ``EMOREC_STDERR_FILTER=0``
leaves descriptor 2 alone (the test suite sets it: pytest swaps that
descriptor around every test).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import select
import sys
import threading

QUIET, NORMAL, VERBOSE = -1, 0, 1
FILTER_ENV = "EMOREC_STDERR_FILTER"
# absl/glog line prefix: severity letter, MMDD, time, thread id, file:line]
_CPP_LOG = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^ \]]+:\d+\]")
_ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# What the start of such a line can look like before its "file:line]" has arrived.
_CPP_PREFIX = re.compile(rb"^[IWEF](\d{0,3}|\d{4}( [\d:.]*(\s+\d*( [^ \]\n]*)?)?)?)$")

_state: dict = {}


class _LineFilter:
    """Drops C++ log lines from a byte stream, passing everything else through at once.

    Partial lines (tqdm's ``\\r`` updates) are forwarded as soon as they can
    no longer be the start of a C++ log line, so progress bars stay live.
    """

    def __init__(self, write):
        self._write = write
        self._pending = b""  # start of a line not yet decided
        self._dropping = False  # inside a C++ log line, until its newline

    def feed(self, data: bytes) -> None:
        """Filter one chunk read from the pipe."""
        out = []
        data = self._pending + data
        self._pending = b""
        while data:
            if self._dropping:
                end = data.find(b"\n")
                if end < 0:
                    return self._flush(out)
                data = data[end + 1:]
                self._dropping = False
                continue
            end = data.find(b"\n")
            line = data if end < 0 else data[:end + 1]
            verdict = self._judge(line, complete=end >= 0)
            if verdict is None:  # too short to tell: wait for more
                self._pending = data
                return self._flush(out)
            if verdict:
                out.append(line)
            elif end < 0:
                self._dropping = True
            data = b"" if end < 0 else data[end + 1:]
        self._flush(out)

    @staticmethod
    def _judge(line: bytes, complete: bool):
        """True = pass, False = drop, None = undecided (the start of a line that may become a log line)."""
        head = line.lstrip(b"\r")
        if _CPP_LOG.match(head) or head.startswith(_ABSL_NOTICE):
            return False
        if not complete and (_CPP_PREFIX.match(head) or _ABSL_NOTICE.startswith(head)):
            return None
        return True

    def _flush(self, out) -> None:
        if out:
            self._write(b"".join(out))

    def close(self) -> None:
        """Forward what is left undecided (a last line without its newline)."""
        if self._pending and not self._dropping:
            self._write(self._pending)
        self._pending = b""


def _install_fd_filter() -> None:
    """Route file descriptor 2 through :class:`_LineFilter` (idempotent)."""
    if "thread" in _state:
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    broken = []

    def forward(data: bytes) -> None:
        # Once the terminal is gone, keep draining the pipe so that writers never block.
        if broken:
            return
        view = memoryview(data)
        try:
            while view:
                written = os.write(original, view)
                view = view[written:]
        except OSError:
            broken.append(True)

    line_filter = _LineFilter(forward)
    # Child processes (the build's workers, multiprocessing's resource tracker, which lives until
    # we exit) inherit descriptor 2, so the pipe may never reach end-of-file: the exit wakes the
    # pump through its own pipe instead (it used to wait 5 s for an EOF that never came).
    wake_read, wake_write = os.pipe()

    def pump() -> None:
        while True:
            try:
                ready, _, _ = select.select([read_end, wake_read], [], [])
                # What is in the pipe is forwarded before the wake-up is obeyed.
                chunk = os.read(read_end, 65536) if read_end in ready else None
            except OSError:
                break
            if not chunk:
                break
            line_filter.feed(chunk)
        line_filter.close()

    thread = threading.Thread(target=pump, name="emorec-stderr-filter", daemon=True)
    thread.start()
    _state.update(thread=thread, original=original, read_end=read_end, wake=(wake_read, wake_write))
    atexit.register(_remove_fd_filter)


def _remove_fd_filter() -> None:
    """Restore descriptor 2 and let the pump forward what is still in the pipe."""
    thread = _state.pop("thread", None)
    if thread is None:
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(_state["original"], 2)  # our last write end: what we wrote is in the pipe now
    wake_read, wake_write = _state.pop("wake")
    os.write(wake_write, b"x")
    thread.join(timeout=5)
    for fd in (_state.pop("read_end"), _state.pop("original"), wake_read, wake_write):
        os.close(fd)


class _TqdmHandler(logging.Handler):
    """Writes records above any live progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _Formatter(logging.Formatter):
    """``message`` for INFO, ``warning: message`` and ``error: message`` above it."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno >= logging.WARNING:
            return f"warning: {text}"
        return text


def configure(verbosity: int = NORMAL) -> None:
    """Set up the terminal for a command: ``QUIET`` (warnings), ``NORMAL`` (info) or ``VERBOSE`` (debug).

    Must run before TensorFlow is imported for the C++ lines to be kept off
    the terminal; at ``VERBOSE`` they all reach it.

    Args:
        verbosity: one of :data:`QUIET`, :data:`NORMAL`, :data:`VERBOSE`.
    """
    if verbosity >= VERBOSE:
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        if os.environ.get(FILTER_ENV, "1") != "0" and _fd_is_usable():
            _install_fd_filter()
    level = {QUIET: logging.WARNING, NORMAL: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger("emorec")
    for handler in list(root.handlers):
        if isinstance(handler, _TqdmHandler):
            root.removeHandler(handler)
    handler = _TqdmHandler()
    handler.setFormatter(_Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # TensorFlow's and absl's Python loggers: their warnings are noise for a user unless verbose.
    for name in ("tensorflow", "absl", "h5py", "matplotlib"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= VERBOSE else logging.ERROR)


def _fd_is_usable() -> bool:
    """True when descriptor 2 is usable (not closed); the filter is pointless without it."""
    try:
        os.fstat(2)
    except OSError:
        return False
    return True

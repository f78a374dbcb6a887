"""The ``emorec`` command: one entry point for every subcommand, and the one place that turns errors into exit codes.

    emorec build {recola,manifest,demo} ... OUT     corpus -> TFRecord dataset
    emorec build {afew,clips} ... OUT              video clips -> clip dataset (emotiw*)
    emorec validate OUT                             check a dataset
    emorec train --model NAME [--data D]            train (the demo flow without --data)
    emorec evaluate RUN --data D --partition dev    AVEC-style evaluation
    emorec export RUN OUT                           SavedModel (ONNX, LiteRT)
    emorec predict EXPORT media.mp4 --out p.csv     predictions for new media
    emorec fuse RUN RUN... --data D --out FUSED     late fusion of runs (feature_lstm)
    emorec reproduce chen_jin --data D              a paper's experiment grid and its tables

``python -m emorec.train`` (``.evaluate``, ``.export``, ``.predict``) and
``python -m tfrecords_tools.build`` (``.validate``) run the same code.

Exit status: 0 on success; 2 when the input or the settings are unusable
(an :class:`~emorec.errors.EmorecError`, printed as ``error: <file>:
<problem>``); 1 for anything else, which is a bug and keeps its traceback;
``validate`` also exits 1 when it finds faults; 130 on Ctrl-C.
Each subcommand module (``emorec/commands/``) provides ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int`` and imports nothing heavy
at module level, so the terminal is configured (:mod:`emorec.console`) before
TensorFlow loads.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from emorec.console import NORMAL, QUIET, VERBOSE, configure
from emorec.errors import EmorecError

COMMANDS = {
    "build": "emorec.commands.build",
    "validate": "emorec.commands.validate",
    "train": "emorec.commands.train",
    "evaluate": "emorec.commands.evaluate",
    "export": "emorec.commands.export",
    "predict": "emorec.commands.predict",
    "fuse": "emorec.commands.fuse",
    "reproduce": "emorec.commands.reproduce",
}


def _verbosity_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true",
                       help="more detail, including TensorFlow's own log lines")
    group.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only, no progress bars")
    return common


def _add_command(subparsers, name: str, prog: str | None = None):
    module = importlib.import_module(COMMANDS[name])
    kwargs = {"prog": prog} if prog else {}
    parser = subparsers.add_parser(
        name, parents=[_verbosity_options()], help=module.DESCRIPTION.split("\n")[0],
        description=module.DESCRIPTION, epilog=getattr(module, "EPILOG", None),
        formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs,
    )
    module.add_arguments(parser)
    parser.set_defaults(_module=module)
    return parser


def build_parser(command: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    """The ``emorec`` parser with every subcommand, or (``command``) a parser for one of them alone.

    Args:
        command: a key of :data:`COMMANDS` to build a single-command parser
            (the ``python -m`` forms), or None for all of them.
        prog: the program name shown in usage lines.

    Returns:
        The parser; parsed arguments carry ``_module`` (the subcommand's module).
    """
    parser = argparse.ArgumentParser(
        prog=prog or "emorec", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if command is not None:
        # A one-command parser: the subcommand's own options at the top level.
        subparsers = parser.add_subparsers(dest="command")
        sub = _add_command(subparsers, command, prog=prog)
        return sub
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        _add_command(subparsers, name)
    return parser


def _version() -> str:
    from emorec import __version__

    return f"emorec {__version__}"


def verbosity(args) -> int:
    """``VERBOSE``, ``QUIET`` or ``NORMAL`` from parsed ``-v`` / ``-q``.

    Args:
        args: the :class:`argparse.Namespace` of a parser built by :func:`build_parser`
            (a namespace without ``verbose`` / ``quiet`` counts as neither).

    Returns:
        :data:`~emorec.console.VERBOSE` for ``-v``, :data:`~emorec.console.QUIET` for ``-q``,
        else :data:`~emorec.console.NORMAL`.
    """
    if getattr(args, "verbose", False):
        return VERBOSE
    if getattr(args, "quiet", False):
        return QUIET
    return NORMAL


def main(argv: Sequence[str] | None = None, *, command: str | None = None, prog: str | None = None) -> int:
    """Run ``emorec`` (or one ``command``) with ``argv``; returns the exit status.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
        command: run this subcommand with ``argv`` as its own arguments (``python -m`` forms).
        prog: program name for usage lines.

    Returns:
        0 on success, 2 for unusable input or settings, 1 for faults found by
        ``validate``, 130 when interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(command, prog).parse_args(argv)
    configure(verbosity(args))
    try:
        return int(args._module.run(args) or 0)
    except EmorecError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return 130


def exit_with(status: int) -> NoReturn:
    """End the process with ``status`` once every output is flushed and every exit handler has run.

    With TensorFlow loaded, the interpreter's own teardown (freeing its graphs,
    thread pools and the model's weights) takes 1.5-2 s on 2 cores and writes
    nothing; it is skipped when no other thread is still running. Without
    TensorFlow, or with another thread alive, this is ``sys.exit(status)``.

    Args:
        status: the exit status.

    Raises:
        SystemExit: when the ordinary exit is taken.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if "tensorflow" not in sys.modules or others or threading.current_thread() is not threading.main_thread():
        sys.exit(status)
    atexit._run_exitfuncs()  # logging.shutdown, the stderr filter's drain, multiprocessing's clean-up
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def entry() -> NoReturn:
    """The ``emorec`` console script: :func:`main` on ``sys.argv[1:]``, then :func:`exit_with` its status."""
    exit_with(main())


def module_main(command: str, prog: str) -> NoReturn:
    """``python -m`` entry: run ``command`` on ``sys.argv[1:]`` and exit with its status.

    Args:
        command: a key of :data:`COMMANDS`, run with the command line as its own arguments.
        prog: the program name shown in usage lines (e.g. ``python -m emorec.train``).

    Raises:
        SystemExit: when :func:`exit_with` takes the ordinary exit.
    """
    exit_with(main(command=command, prog=prog))


if __name__ == "__main__":
    entry()

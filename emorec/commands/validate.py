"""``emorec validate OUT``: check every shard and record of a dataset against its manifest."""

from __future__ import annotations

import logging
from pathlib import Path

DESCRIPTION = "Check an emorec dataset directory: shards, checksums and every record against manifest.json."
EPILOG = """exit status: 0 clean, 1 faults found (one error: line each), 2 the manifest cannot be read"""

logger = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    """Add the ``validate`` positional argument and options to ``parser``.

    Args:
        parser: the :class:`argparse.ArgumentParser` of the ``validate`` subcommand (or of
            ``python -m tfrecords_tools.validate``); changed in place.
    """
    parser.add_argument("data_dir", type=Path, help="dataset directory (holds manifest.json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    """Validate; 0 when clean, 1 when faults were found.

    Each fault and oddity is logged, then a one-line verdict printed.

    Args:
        args: the :class:`argparse.Namespace` parsed with :func:`add_arguments`'s options
            (``data_dir``, ``no_progress``).

    Returns:
        The exit status: 0 when clean, 1 when faults were found (warnings alone do not count).

    Raises:
        DatasetError: the manifest is missing or unreadable (the CLI exits with status 2).
    """
    from emorec.commands.build import progress
    from emorec.corpus.validate import validate_dataset

    result = validate_dataset(args.data_dir, progress=progress(args))
    for line in result.warnings:
        logger.warning("%s", line)
    for line in result.errors:
        logger.error("%s", line)
    status = "OK" if result.ok else "FAILED"
    print(
        f"{status}: {args.data_dir}: {result.shards} shards, {result.windows} windows, "
        f"{result.frames} frames; {len(result.errors)} errors, {len(result.warnings)} warnings"
    )
    return 0 if result.ok else 1

"""Collect the messages one emorec logger emits, whatever the root logger's set-up."""

import contextlib
import logging


@contextlib.contextmanager
def capture_logs(name: str, level: int = logging.INFO):
    """Yield a list that receives the formatted messages of logger ``name`` (and its children)."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = logging.getLogger(name)
    handler, old_level = _Collect(level), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)

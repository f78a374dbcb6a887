"""Run ``emorec train`` in-process for tests and get its result object (the exit code hides it)."""

from emorec.cli import build_parser
from emorec.commands.train import train_from_args


def train_cli(argv, on_step=None):
    """Parse ``argv`` as ``emorec train`` does and train; returns the TrainResult (DemoFlowResult without --data)."""
    return train_from_args(build_parser("train").parse_args(list(argv)), on_step=on_step)


def train_result(argv, on_step=None):
    """Like :func:`train_cli`, but always the TrainResult (the demo flow's ``.train``)."""
    result = train_cli(argv, on_step)
    return getattr(result, "train", result)

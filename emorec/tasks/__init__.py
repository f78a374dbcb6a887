"""Tasks (see :mod:`emorec.tasks.base`): looked up by the name a model registers with."""

from __future__ import annotations

from emorec.errors import ConfigError
from emorec.tasks.base import Task
from emorec.tasks.clip_classification import ClipClassificationTask
from emorec.tasks.feature_regression import FeatureRegressionTask
from emorec.tasks.frame_regression import FrameRegressionTask

_TASKS: dict[str, Task] = {
    task.name: task for task in (FrameRegressionTask(), FeatureRegressionTask(), ClipClassificationTask())
}


def get_task(name: str) -> Task:
    """The task registered as ``name``.

    Args:
        name: the task's registered name, e.g. ``frame_regression``.

    Returns:
        The task object.

    Raises:
        ConfigError: no such task.
    """
    try:
        return _TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(sorted(_TASKS))}") from None


__all__ = ["Task", "get_task"]

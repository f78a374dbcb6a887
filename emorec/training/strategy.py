"""Choosing the tf.distribute strategy: one device, MirroredStrategy or MultiWorkerMirroredStrategy.

``auto`` picks MultiWorkerMirroredStrategy when ``TF_CONFIG`` describes more
than one task, MirroredStrategy when there is more than one GPU, and TF's
default (one-device) strategy otherwise. Without GPUs, ``mirrored`` mirrors
over the logical CPU devices (see :func:`configure_cpu_devices`), which is
how the tests check that replicas add up to the single-device result.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from emorec.config import STRATEGIES
from emorec.errors import ConfigError


def configure_cpu_devices(count: int) -> None:
    """Split the CPU into ``count`` logical devices; must run before TensorFlow initialises.

    Args:
        count: number of logical CPU devices (the replicas of ``mirrored`` without GPUs).

    Raises:
        RuntimeError: TensorFlow has already initialised its devices (raised by ``tf.config``).
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def tf_config() -> dict:
    """The parsed ``TF_CONFIG`` environment variable (``{}`` if unset); ConfigError if malformed.

    Returns:
        The JSON mapping (``cluster``, ``task``), or ``{}`` when unset or blank.

    Raises:
        ConfigError: not JSON, not a mapping, or a ``cluster`` that is not a mapping.
    """
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"TF_CONFIG: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("cluster", {}), dict):
        raise ConfigError("TF_CONFIG: expected {\"cluster\": {...}, \"task\": {...}}")
    return doc


def _cluster_size(doc: dict) -> int:
    return sum(len(tasks) for tasks in doc.get("cluster", {}).values())


def _mirrored_devices() -> list[str] | None:
    if tf.config.list_logical_devices("GPU"):
        return None  # MirroredStrategy's default: every GPU
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy by name; see the module docstring.

    Args:
        name: ``auto`` (multi-worker with a ``TF_CONFIG`` cluster of several tasks, mirrored
            with several GPUs, else TF's default strategy), ``one`` (the first GPU, else the
            CPU), ``mirrored`` (every GPU, or every logical CPU device) or ``multiworker``.

    Returns:
        The ``tf.distribute.Strategy``.

    Raises:
        ConfigError: an unknown name, a malformed ``TF_CONFIG``, or ``multiworker`` without
            a ``TF_CONFIG`` cluster.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    if name == "auto":
        if _cluster_size(tf_config()) > 1:
            name = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "one":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=_mirrored_devices())
    doc = tf_config()
    if not doc.get("cluster"):
        raise ConfigError(
            "TF_CONFIG: --strategy multiworker needs the TF_CONFIG environment variable "
            "(cluster and task; see docs/training.md)"
        )
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, logs and the model (always true off a cluster).

    Args:
        strategy: the strategy training runs under.

    Returns:
        True for the ``chief`` task, or worker 0 of a cluster without one, or any strategy
        without a cluster.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_id(strategy: tf.distribute.Strategy) -> str:
    """``"<task_type>_<task_id>"`` of this process in a cluster, ``"local"`` otherwise.

    Args:
        strategy: the strategy training runs under.

    Returns:
        The worker's name (e.g. ``worker_1``).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return "local"
    return f"{resolver.task_type}_{resolver.task_id}"


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """The public class name of a strategy, for logs and the run record.

    Args:
        strategy: a ``tf.distribute.Strategy``.

    Returns:
        ``MultiWorkerMirroredStrategy`` (rather than its internal subclass),
        ``MirroredStrategy``, ``OneDeviceStrategy``, ``default`` for TF's default strategy,
        else the class name.

    >>> strategy_name(tf.distribute.get_strategy())
    'default'
    """
    public = {
        "MultiWorkerMirroredStrategy": tf.distribute.MultiWorkerMirroredStrategy,
        "MirroredStrategy": tf.distribute.MirroredStrategy,
        "OneDeviceStrategy": tf.distribute.OneDeviceStrategy,
    }
    for name, cls in public.items():  # TF's own class for the first is CollectiveAllReduceStrategy
        if isinstance(strategy, cls):
            return name
    name = type(strategy).__name__
    return "default" if "Default" in name else name

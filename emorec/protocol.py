"""Evaluation protocols (``evaluate/*.yaml``), typed: metrics, inference mode, partitions, post-processing chain.

The defaults of :class:`Protocol` are AVEC 2016's (``evaluate/avec2016.yaml``,
kept equal by a test), so an install without the ``evaluate/`` folder
evaluates the same way. Every key takes effect:

- ``metrics.convention``: the CCC's variance/covariance convention;
  ``metrics.also``: the metrics reported beside the headline CCC (the headline
  is always the CCC of all frames of the partition concatenated);
- ``inference.eval_window``: ``train`` (the run's window, zero state per
  window), ``whole`` or seconds; ``inference.chunk_frames``;
- ``partitions.tune``: the partition the chain is chosen on;
  ``partitions.apply``: where the stored chain may be applied;
- ``postprocess.steps``: the chain, in order, and the grids its steps search.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from emorec.config.base import (
    FieldError,
    Section,
    choice,
    fraction,
    list_of,
    non_negative_number,
    positive_int,
    positive_number,
    read_yaml,
    text,
)
from emorec.config.base import setting as _setting
from emorec.errors import ConfigError
from emorec.metrics import CONVENTIONS
from emorec.postprocess import (
    AVEC_STEPS,
    DEFAULT_MEDIAN_WINDOWS_S,
    DEFAULT_SHIFT_RANGE_S,
    DEFAULT_SMOOTHING_ALPHAS,
    SCALE_ABOUT,
    SMOOTHING_DIRECTIONS,
    STEPS,
    PostprocessGrids,
)
from emorec.schema import PARTITIONS

EXTRA_METRICS = ("ccc_per_recording_mean", "pearson", "rmse")


def eval_window(key: str, value):
    """A config rule accepting ``train``, ``whole`` or a positive number of seconds.

    Args:
        key: the dotted setting name, used in the error message.
        value: the value to check.

    Returns:
        ``"train"`` or ``"whole"`` unchanged, or the seconds as a float.

    Raises:
        FieldError: any other value.

    >>> eval_window("inference.eval_window", "whole"), eval_window("inference.eval_window", 6)
    ('whole', 6.0)
    """
    if value in ("train", "whole"):
        return value
    try:
        return positive_number(key, value)
    except FieldError:
        raise FieldError(key, f"must be train, whole or a positive number of seconds, got {value!r}") from None


def _shift_range(key: str, value):
    values = list_of(non_negative_number, unique=False)(key, value)
    if len(values) != 2:
        raise FieldError(key, f"must be [low, high] in seconds, got {value!r}")
    return values


def _alpha(key: str, value):
    return fraction(low_open=True, high_open=False)(key, value)


@dataclasses.dataclass(frozen=True)
class MetricsSettings(Section):
    """How the CCC is computed and what is reported beside it."""

    SECTION = "metrics"

    convention: str = _setting("avec", choice(*CONVENTIONS), doc="avec: variances N-1, covariance N")
    also: tuple = _setting(EXTRA_METRICS, list_of(choice(*EXTRA_METRICS), non_empty=False),
                           doc="reported beside the headline CCC")


@dataclasses.dataclass(frozen=True)
class InferenceSettings(Section):
    """How the model runs over a recording."""

    SECTION = "inference"

    eval_window: object = _setting("train", eval_window, doc="train | whole | seconds")
    chunk_frames: int = _setting(750, positive_int, doc="whole mode: frames per chunk, state carried over")


@dataclasses.dataclass(frozen=True)
class PartitionSettings(Section):
    """Where the chain is tuned and where it may be applied."""

    SECTION = "partitions"

    tune: str = _setting("dev", choice(*PARTITIONS))
    apply: tuple = _setting(("dev", "test"), list_of(choice(*PARTITIONS)))


@dataclasses.dataclass(frozen=True)
class PostprocessSettings(Section):
    """The chain (in order) and the grids its steps search."""

    SECTION = "postprocess"

    steps: tuple = _setting(AVEC_STEPS, list_of(choice(*STEPS), non_empty=False))
    median_windows_s: tuple = _setting(DEFAULT_MEDIAN_WINDOWS_S, list_of(positive_number, non_empty=False))
    shift_range_s: tuple = _setting(DEFAULT_SHIFT_RANGE_S, _shift_range, doc="[low, high] s, every frame between")
    scale_about: str = _setting("zero", choice(*SCALE_ABOUT), doc="zero: the baseline; mean: the other reading")
    smoothing_alphas: tuple = _setting(DEFAULT_SMOOTHING_ALPHAS, list_of(_alpha, non_empty=False))
    smoothing_direction: str = _setting("backward", choice(*SMOOTHING_DIRECTIONS))

    @property
    def grids(self) -> PostprocessGrids:
        """The search grids of :mod:`emorec.postprocess`."""
        return PostprocessGrids(median_windows_s=tuple(self.median_windows_s),
                                shift_range_s=tuple(self.shift_range_s),
                                smoothing_alphas=tuple(self.smoothing_alphas),
                                smoothing_direction=self.smoothing_direction)


_PARTS = {"metrics": MetricsSettings, "inference": InferenceSettings, "partitions": PartitionSettings,
          "postprocess": PostprocessSettings}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """An evaluation protocol (see the module docstring); the defaults are AVEC 2016's."""

    name: str = "avec2016"
    names: tuple = ("arousal", "valence")
    metrics: MetricsSettings = dataclasses.field(default_factory=MetricsSettings)
    inference: InferenceSettings = dataclasses.field(default_factory=InferenceSettings)
    partitions: PartitionSettings = dataclasses.field(default_factory=PartitionSettings)
    postprocess: PostprocessSettings = dataclasses.field(default_factory=PostprocessSettings)

    @classmethod
    def from_dict(cls, doc: dict, source: str = "<protocol>") -> Protocol:
        """A protocol from a mapping; errors name ``source``.

        Args:
            doc: ``{"name", "names", "metrics", "inference", "partitions", "postprocess"}``, any
                of them left out for its default.
            source: where the mapping came from (a path), to start error messages.

        Returns:
            The checked :class:`Protocol`.

        Raises:
            ConfigError: an unknown key or a bad value.
        """
        known = ("name", "names", *_PARTS)
        unknown = [k for k in doc if k not in known]
        if unknown:
            raise ConfigError(f"{source}: unknown protocol key(s) {', '.join(unknown)} (known: {', '.join(known)})")
        try:
            name = text("name", doc.get("name", cls.name))
            names = list_of(text)("names", doc.get("names", list(cls.names)))
        except FieldError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        parts = {key: part.from_dict(doc.get(key), source, key) for key, part in _PARTS.items()}
        return cls(name=name, names=names, **parts)

    def to_dict(self) -> dict:
        """Plain YAML-ready values.

        Returns:
            The protocol as nested dicts and lists, readable back by :meth:`from_dict`.
        """
        return {"name": self.name, "names": list(self.names),
                **{key: getattr(self, key).to_dict() for key in _PARTS}}


def default_protocol_path() -> Path:
    """``evaluate/avec2016.yaml`` of the checkout emorec is installed from.

    Returns:
        The path beside the ``emorec`` package folder (it exists only in a checkout; not
        checked here).
    """
    return protocol_path("avec2016")


def protocol_path(name: str) -> Path:
    """``evaluate/<name>.yaml`` of the checkout emorec is installed from (a task's named protocol).

    Args:
        name: the protocol's file stem (``avec2016``, ``avec2015``, ``emotiw2017``).

    Returns:
        The path beside the ``emorec`` package folder (not checked here).
    """
    import emorec

    return Path(emorec.__file__).resolve().parent.parent / "evaluate" / f"{name}.yaml"


def load_protocol(source: str | os.PathLike | dict | Protocol | None = None) -> Protocol:
    """A protocol from a YAML path, a mapping, a Protocol, or None.

    Args:
        source: a protocol YAML file, a mapping of its keys, a :class:`Protocol` (returned as
            it is), or None for ``evaluate/avec2016.yaml`` (the built-in AVEC 2016 defaults
            where the checkout has no such file).

    Returns:
        The :class:`Protocol`.

    Raises:
        ConfigError: a missing or malformed file (naming it), or bad keys or values.
    """
    if isinstance(source, Protocol):
        return source
    if isinstance(source, dict):
        return Protocol.from_dict(source)
    if source is None:
        source = default_protocol_path()
        if not source.is_file():
            return Protocol()
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"{path}: evaluation protocol file not found")
    return Protocol.from_dict(read_yaml(path), str(path))

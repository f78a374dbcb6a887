"""The training config's common sections: ``data``, ``optimizer`` and ``training``.

The ``model`` section is typed by the model's own config class and the
``loss`` section by its objective's (both named in the model registry).
Defaults here are the engine's; each paper's settings live in
``train/NAME.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from emorec.config.base import (
    FieldError,
    Section,
    boolean,
    choice,
    fraction,
    list_of,
    non_negative_int,
    optional,
    positive_int,
    positive_number,
    setting,
    text,
)
from emorec.feature_norm import FEATURE_NORMS
from emorec.schema import AUDIO_NORMS, FRAME_PERIOD, MODALITIES

STRATEGIES = ("auto", "one", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "rmsprop_nesterov")
CHECKPOINT_POLICIES = ("epoch", "end")


def window_seconds(key: str, value):
    """A positive whole number of 40 ms frames, in seconds.

    Args:
        key: the dotted setting name, used in the error message.
        value: the value to check, as read from YAML or a flag.

    Returns:
        ``value`` as a float.

    Raises:
        FieldError: not a finite positive number, or not a whole number of
            :data:`~emorec.schema.FRAME_PERIOD` frames (the config loader reports it as a
            ConfigError naming the file).

    >>> window_seconds("data.window", 6)
    6.0
    """
    value = positive_number(key, value)
    frames = value / FRAME_PERIOD
    if not math.isclose(frames, round(frames), abs_tol=1e-6):
        raise FieldError(key, f"must be a whole number of {FRAME_PERIOD} s frames, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
    """How training and validation windows are read from a dataset."""

    SECTION = "data"

    window: float = setting(6.0, window_seconds, doc="seconds per training sequence")
    hop: float | None = setting(None, optional(window_seconds),
                                doc="seconds between training windows; null = the window (no overlap)")
    target: str = setting("all", choice("all", "last"),
                          doc="frames a window is scored on: every frame, or its last (each frame predicted "
                              "from itself and its predecessors in the window)")
    modalities: tuple | None = setting(None, optional(list_of(choice(*MODALITIES))),
                                       doc="null = the model's own modalities")
    audio_norm: str = setting("none", choice(*AUDIO_NORMS),
                              doc="none: the raw waveform (Tzirakis' release); recording: zero mean, unit "
                                  "variance per recording (Nguyen et al.), applied when the data is read")
    feature_norm: str = setting("speaker", choice(*FEATURE_NORMS),
                                doc="feature sets: speaker = z-score with each speaker's statistics (Chen & Jin), "
                                    "train = with the training partition's, none = as stored")
    batch_size: int = setting(25, positive_int, doc="global batch size")
    augment: bool = setting(True, boolean, doc="the original per-frame face augmentation")
    stream_ordered: bool = setting(False, boolean, doc="row r of every batch continues one recording")

    def check(self) -> None:
        """The hop is at most the window; stream-ordered rows are scored on every frame."""
        if self.hop is not None and self.hop > self.window + 1e-9:
            raise FieldError("hop", f"must not exceed data.window ({self.window} s), got {self.hop}")
        if self.stream_ordered and self.target != "all":
            raise FieldError("target", "must be all with stream_ordered (stateful rows are scored on every frame)")

    @property
    def window_frames(self) -> int:
        """Frames per training sequence (``window / 0.04``)."""
        return int(round(self.window / FRAME_PERIOD))

    @property
    def hop_frames(self) -> int:
        """Frames between training windows."""
        return self.window_frames if self.hop is None else int(round(self.hop / FRAME_PERIOD))


@dataclasses.dataclass(frozen=True)
class OptimizerConfig(Section):
    """The optimiser and its hyper-parameters."""

    SECTION = "optimizer"

    name: str = setting("adam", choice(*OPTIMIZERS))
    learning_rate: float = setting(1.0e-4, positive_number)
    beta_1: float = setting(0.9, positive_number)
    beta_2: float = setting(0.999, positive_number)
    epsilon: float = setting(1.0e-7, positive_number, doc="Keras' default; TF 1 (the releases) used 1e-8")
    rho: float = setting(0.9516951530106196, fraction(low_open=True),
                         doc="rmsprop_nesterov: weight of the gradient moving averages (2^(-1/14): downhill's "
                             "rms_halflife 14, Theanets)")
    momentum: float = setting(0.9, fraction(), doc="rmsprop_nesterov: Nesterov momentum (Chen & Jin: 0.9)")
    centered: bool = setting(True, boolean, doc="rmsprop_nesterov: divide by the centred RMS (Graves, downhill)")

    def check(self) -> None:
        """β1 and β2 below 1."""
        for key in ("beta_1", "beta_2"):
            if getattr(self, key) >= 1:
                raise FieldError(key, f"must be below 1, got {getattr(self, key)!r}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Section):
    """The schedule, the strategy, validation and checkpoints."""

    SECTION = "training"

    epochs: int | None = setting(50, optional(positive_int))
    steps_per_epoch: int | None = setting(None, optional(positive_int),
                                          doc="null = one pass over the training windows")
    max_steps: int | None = setting(None, optional(positive_int), doc="stop after this many steps in all")
    seed: int = setting(0, non_negative_int)
    checkpoint_every: int | None = setting(None, optional(positive_int),
                                           doc="also save `latest` every N steps inside an epoch")
    checkpoints: str = setting("epoch", choice(*CHECKPOINT_POLICIES),
                               doc="epoch: save latest (and best when it improves) every epoch; "
                                   "end: only when training ends, the best weights held in memory")
    keep_optimizer_state: bool = setting(True, boolean,
                                         doc="the finished run's `latest` keeps the optimizer state "
                                             "(needed only to continue it exactly with more epochs)")
    strategy: str = setting("auto", choice(*STRATEGIES))
    jit_compile: object = setting("auto", choice("auto", True, False, "update"),
                                  doc="XLA: true compiles the training and validation steps, update only the "
                                      "optimizer's update (the gradient runs plain), false nothing; auto = "
                                      "the model's registered choice, measured exact and faster (one device)")
    validate: bool = setting(True, boolean, doc="dev validation after each epoch (best checkpoint)")
    early_stopping_patience: int | None = setting(
        None, optional(positive_int),
        doc="stop after this many epochs without a better validation score (Chen & Jin: 50); null = never")
    stateful: bool = setting(False, boolean, doc="carry LSTM states across stream-ordered windows")

    def check(self) -> None:
        """``epochs`` may be null only with ``max_steps`` or early stopping; early stopping needs validation."""
        if self.epochs is None and self.max_steps is None and self.early_stopping_patience is None:
            raise FieldError("epochs", "may be null only with training.max_steps (--steps) or "
                                       "training.early_stopping_patience set")
        if self.early_stopping_patience is not None and not self.validate:
            raise FieldError("early_stopping_patience", "needs training.validate: true (it watches the dev score)")


@dataclasses.dataclass(frozen=True)
class ModelConfig(Section):
    """Base of every model family's config: the registry ``name`` plus the family's settings.

    A family class lists the registry names it configures in ``NAMES``; its
    settings come from option groups (sections without a name) that it
    inherits, each checking its own rules.
    """

    SECTION = "model"
    NAMES: ClassVar[tuple[str, ...]] = ()

    name: str = setting("", text, doc="the registry name")

    def check(self) -> None:
        """The name must be one this class configures."""
        super().check()
        if self.NAMES and self.name not in self.NAMES:
            raise FieldError("name", f"must be one of {', '.join(self.NAMES)}, got {self.name!r}")

    def to_dict(self) -> dict:
        """The settings with ``name`` first."""
        doc = super().to_dict()
        return {"name": doc.pop("name"), **doc}

    @classmethod
    def for_model(cls, name: str, config=None):
        """``config`` (a mapping of settings, or already a ``cls``) as the config of model ``name``.

        Raises:
            ConfigError: unknown keys or bad values, or a mapping naming another model.
        """
        from emorec.errors import ConfigError

        if isinstance(config, cls):
            return config
        doc = dict(config or {})
        given = doc.setdefault("name", name)
        if given != name:
            raise ConfigError(f"model config names {given!r} but is used to build {name!r}")
        return cls.from_dict(doc, f"model {name}")

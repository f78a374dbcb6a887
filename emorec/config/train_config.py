"""The training config: ``train/NAME.yaml`` + its ``demo:`` section + ``--set`` overrides + flags, typed.

Resolution order (later wins): each section's built-in defaults <- the YAML
file <- its ``demo:`` section (only when training on the embedded demo
corpus) <- ``--set key.sub=value`` overrides <- the dedicated flags
(``--epochs``, ``--batch-size``...). The ``model`` and ``loss`` sections are
typed by the classes the model registry names for the model
(``ModelSpec.config_class``, ``ModelSpec.loss_config_class``). The result is
saved as ``RUN_DIR/config.yaml`` (the ``demo:`` section already merged, plus a
``run:`` record of where it ran); that file can be passed back with
``--config`` to repeat the run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from emorec.config.base import Origins, Section, deep_merge, dump_yaml, parse_override, read_yaml
from emorec.config.sections import DataConfig, OptimizerConfig, TrainingConfig
from emorec.errors import ConfigError

SECTIONS = ("model", "data", "optimizer", "training", "loss")
_TOP_LEVEL = (*SECTIONS, "demo", "run")


def train_config_dir() -> Path:
    """The repository's ``train/`` directory (next to the installed ``emorec`` package).

    Returns:
        The absolute path of ``train/`` beside the ``emorec`` package folder (it exists only in
        a checkout, e.g. an editable install; not checked here).
    """
    import emorec

    return Path(emorec.__file__).resolve().parent.parent / "train"


def config_path_for(model_name: str) -> Path:
    """The shipped training config of a model, ``train/<model_name>.yaml``.

    Args:
        model_name: the model's registry name (e.g. ``e2e_av``).

    Returns:
        The path of the existing YAML file.

    Raises:
        ConfigError: the directory or the file does not exist (the message lists the models
            that have one).
    """
    directory = train_config_dir()
    path = directory / f"{model_name}.yaml"
    if not directory.is_dir():
        raise ConfigError(
            f"{directory}: training config directory not found (emorec must be installed "
            "from a checkout with `pip install -e .`, or pass --config FILE)"
        )
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise ConfigError(f"{path}: no training config for model {model_name!r}; have: {', '.join(known)}")
    return path


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A resolved, checked training config: one typed section each, plus where it ran (``run``)."""

    model: Section
    data: DataConfig
    optimizer: OptimizerConfig
    training: TrainingConfig
    loss: Section
    run: Mapping | None = None  # a record of an earlier run (config.yaml), not a setting
    source: str = "<config>"

    @property
    def model_name(self) -> str:
        """The registry name of the model."""
        return self.model.name

    @property
    def window_frames(self) -> int:
        """Frames per training sequence."""
        return self.data.window_frames

    def to_dict(self) -> dict:
        """The settings as plain YAML-ready values (``run`` included when present).

        Returns:
            ``{section: {setting: value}}`` for every name of :data:`SECTIONS`, plus ``run``.
        """
        doc = {name: getattr(self, name).to_dict() for name in SECTIONS}
        if self.run:
            doc["run"] = dict(self.run)
        return doc

    def replace(self, **sections) -> TrainConfig:
        """A copy with whole sections replaced.

        ``config.replace(training=config.training.replace(epochs=2))`` changes one setting.

        Args:
            **sections: new section objects by field name (``model``, ``data``, ``optimizer``,
                ``training``, ``loss``, ``run``, ``source``); not checked against each other.

        Returns:
            The new :class:`TrainConfig`.
        """
        return dataclasses.replace(self, **sections)

    def with_overrides(self, overrides: Iterable[str]) -> TrainConfig:
        """This config with ``--set``-style overrides applied and checked again.

        Args:
            overrides: ``key.sub=value`` strings, the value read as YAML.

        Returns:
            The new, re-resolved :class:`TrainConfig`.

        Raises:
            ConfigError: an override names an unknown section or key, or sets a bad value.
        """
        return resolve_config(self.to_dict(), overrides=overrides, source_name=self.source)

    def save(self, run_dir, run_info: Mapping | None = None) -> Path:
        """Write ``RUN_DIR/config.yaml`` atomically (with a ``run:`` record when given).

        Args:
            run_dir: the training run directory (created if missing).
            run_info: where and how the run ran (stored under ``run:``, replacing this config's own
                ``run`` record); None keeps the existing record.

        Returns:
            The path of the written ``config.yaml``.
        """
        from emorec.manifest import atomic_write_bytes
        from emorec.rundir import RunDir

        doc = self.to_dict()
        if run_info:
            doc["run"] = dict(run_info)
        path = RunDir(run_dir).config
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, dump_yaml(doc).encode())
        return path


def _model_spec(name, origins: Origins):
    from emorec.models import get_model_spec

    if not isinstance(name, str) or not name:
        raise ConfigError(f"{origins.of('model.name')}: model.name (the registry name) is required")
    try:
        return get_model_spec(name)
    except ConfigError as exc:
        raise ConfigError(f"{origins.of('model.name')}: {exc}") from None


def _task_loss_class(spec):
    from emorec.tasks import get_task

    return get_task(spec.task).loss_config_class


def resolve_config(
    source: str | os.PathLike | Mapping | TrainConfig,
    *,
    demo: bool = False,
    overrides: Iterable[str] = (),
    flags: Sequence[tuple[str, object, str]] = (),
    source_name: str | None = None,
) -> TrainConfig:
    """Resolve a training config: YAML (or mapping) <- ``demo:`` <- ``overrides`` <- ``flags``; checked.

    Args:
        source: a YAML path, a mapping of sections, or a :class:`TrainConfig` (returned as it is
            when nothing is added).
        demo: merge the file's ``demo:`` section (training on the embedded demo corpus).
        overrides: ``key.sub=value`` strings (``--set``).
        flags: ``(dotted key, value, flag name)`` of the dedicated command-line flags that were given.
        source_name: how to name a mapping source in messages.

    Returns:
        The :class:`TrainConfig`.

    Raises:
        ConfigError: an unknown section or key, or a bad value; the message names the place the value
            came from (the file, its demo section, the ``--set`` or the flag).
    """
    overrides = list(overrides)
    if isinstance(source, TrainConfig):
        if not (demo or overrides or flags):
            return source
        source_name, source = source.source, source.to_dict()
    if isinstance(source, Mapping):
        doc, name = dict(source), source_name or "<config>"
    else:
        doc, name = read_yaml(source), str(source)
    unknown = [k for k in doc if k not in _TOP_LEVEL]
    if unknown:
        raise ConfigError(f"{name}: unknown section(s) {', '.join(map(repr, unknown))} "
                          f"(expected {', '.join(_TOP_LEVEL)})")
    demo_section = doc.pop("demo", None) or {}
    run = doc.pop("run", None)
    if not isinstance(demo_section, Mapping):
        raise ConfigError(f"{name}: `demo` must be a mapping of overrides")
    origins = Origins(name)
    merged: dict = {}
    layers = [(doc, name)]
    if demo:
        layers.append((demo_section, f"{name} (demo section)"))
    layers += [(parse_override(text), f"--set {text}") for text in overrides]
    layers += [(_nest(dotted, value), label) for dotted, value, label in flags]
    for layer, label in layers:
        bad = [k for k in layer if k not in SECTIONS]
        if bad:
            raise ConfigError(f"{label}: unknown section(s) {', '.join(map(repr, bad))} "
                              f"(expected {', '.join(SECTIONS)})")
        merged = deep_merge(merged, layer)
        origins.record(layer, label)
    model_doc = merged.get("model") or {}
    if not isinstance(model_doc, Mapping):
        raise ConfigError(f"{origins.of('model')}: `model` must be a mapping")
    spec = _model_spec(model_doc.get("name"), origins)
    loss_class = spec.loss_config_class or _task_loss_class(spec)
    config = TrainConfig(
        model=spec.config_class.from_dict(model_doc, origins, "model"),
        data=DataConfig.from_dict(merged.get("data"), origins),
        optimizer=OptimizerConfig.from_dict(merged.get("optimizer"), origins),
        training=TrainingConfig.from_dict(merged.get("training"), origins),
        loss=loss_class.from_dict(merged.get("loss"), origins, "loss"),
        run=run,
        source=name,
    )
    _check_across(config, spec, origins)
    return config


def _nest(dotted: str, value) -> dict:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _check_across(config: TrainConfig, spec, origins: Origins) -> None:
    """Rules between sections."""
    if config.training.stateful and not config.data.stream_ordered:
        raise ConfigError(
            f"{origins.of('training.stateful')}: training.stateful needs data.stream_ordered: true "
            "(--stateful sets both)"
        )
    wanted = config.data.modalities
    if wanted is not None and not set(spec.modalities) <= set(wanted):
        raise ConfigError(
            f"{origins.of('data.modalities')}: model {spec.name} reads {list(spec.modalities)}, "
            f"but data.modalities is {list(wanted)}"
        )


def load_run_config(run_dir) -> TrainConfig:
    """The resolved config a training run saved (``RUN_DIR/config.yaml``).

    Args:
        run_dir: a directory written by ``emorec train``.

    Returns:
        The :class:`TrainConfig`, resolved again from the saved file (``demo:`` already merged).

    Raises:
        ConfigError: the file is missing or no longer a valid config (naming it).
    """
    from emorec.rundir import RunDir

    path = RunDir(run_dir).config
    if not path.is_file():
        raise ConfigError(f"{path}: not found; RUN_DIR must be a directory written by emorec train")
    return resolve_config(path)

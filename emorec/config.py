"""Training configuration: ``train/NAME.yaml`` + demo overrides + command-line overrides.

Resolution order (later wins): built-in defaults (:data:`DEFAULTS`) <- the YAML
file <- its ``demo:`` section (only when training on the embedded demo corpus)
<- ``--set key.sub=value`` overrides <- the dedicated flags (``--epochs``,
``--batch-size`` ...). The result is validated and saved as ``config.yaml`` in
the run directory, without the ``demo:`` section (already merged) and with a
``run:`` section recording where it ran; that file can be passed back with
``--config`` to repeat the run.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from emorec.errors import ConfigError
from emorec.manifest import atomic_write_bytes
from emorec.schema import FRAME_PERIOD, MODALITIES

CONFIG_NAME = "config.yaml"
STRATEGIES = ("auto", "one", "mirrored", "multiworker")
OPTIMIZERS = ("adam",)

DEFAULTS: dict = {
    "model": {},
    "data": {
        "window": 6.0,
        "modalities": None,  # None = the model's own modalities (registry)
        "batch_size": 25,
        "shuffle_buffer": 256,
        "augment": True,
        "stream_ordered": False,
    },
    "optimizer": {"name": "adam", "learning_rate": 1.0e-4},
    "training": {
        "epochs": 50,
        "steps_per_epoch": None,  # None = one pass over the training windows
        "max_steps": None,  # stop after this many steps in all (``--steps``)
        "seed": 0,
        "checkpoint_every": None,  # also save `latest` every N steps inside an epoch
        "strategy": "auto",
        "validate": True,
        "stateful": False,  # carry LSTM states across stream-ordered windows (emorec.training.stateful)
    },
    "loss": {},
}
# Sections whose keys are checked; `model` and `loss` belong to the model's code.
_STRICT_SECTIONS = ("data", "optimizer", "training")
_TOP_LEVEL = (*DEFAULTS, "demo", "run")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def train_config_dir() -> Path:
    """The repository's ``train/`` directory (next to the installed ``emorec`` package)."""
    import emorec

    return Path(emorec.__file__).resolve().parent.parent / "train"


def config_path_for(model_name: str) -> Path:
    """``train/<model_name>.yaml``; ConfigError if it does not exist."""
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


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """Recursive dict merge; values of ``override`` win, nested dicts merge key by key."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: str | os.PathLike) -> dict:
    """Parse a YAML mapping; ConfigError naming the file otherwise."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(doc).__name__}")
    return doc


def parse_override(text: str, source: str = "--set") -> dict:
    """``"training.epochs=3"`` -> ``{"training": {"epochs": 3}}``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"{source}: expected key.sub=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: cannot parse the value of {text!r} ({exc})") from exc
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "3e-4" (no dot) as a string
    for part in reversed(parts):
        value = {part: value}
    return value


def resolve_config(
    source: str | os.PathLike | Mapping,
    *,
    demo: bool = False,
    overrides: Iterable[str] = (),
    flags: Mapping | None = None,
) -> dict:
    """Defaults <- YAML file (or mapping) <- ``demo:`` (if ``demo``) <- ``overrides`` <- ``flags``; validated.

    ``flags`` is a nested dict of the dedicated command-line options that were
    given (``{"training": {"epochs": 3}}``); ``None`` values are ignored.
    """
    if isinstance(source, Mapping):
        doc, name = copy.deepcopy(dict(source)), "<config>"
    else:
        doc, name = read_yaml(source), str(source)
    demo_section = doc.pop("demo", None) or {}
    doc.pop("run", None)  # the record of an earlier run, not a setting
    if not isinstance(demo_section, Mapping):
        raise ConfigError(f"{name}: `demo` must be a mapping of overrides")
    check_keys(doc, name)
    config = deep_merge(DEFAULTS, doc)
    if demo:
        check_keys(demo_section, f"{name} (demo section)")
        config = deep_merge(config, demo_section)
    for text in overrides:
        override = parse_override(text)
        check_keys(override, f"--set {text}")
        config = deep_merge(config, override)
    if flags:
        config = deep_merge(config, _drop_none(flags))
    validate_config(config, name)
    return config


def _drop_none(tree: Mapping) -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            value = _drop_none(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def check_keys(doc: Mapping, source: str) -> None:
    """Reject unknown top-level sections and unknown keys of the data/optimizer/training sections."""
    for key, value in doc.items():
        if key not in _TOP_LEVEL:
            raise ConfigError(f"{source}: unknown section {key!r} (expected {', '.join(_TOP_LEVEL)})")
        if key in _STRICT_SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: `{key}` must be a mapping")
            unknown = sorted(set(value) - set(DEFAULTS[key]))
            if unknown:
                raise ConfigError(
                    f"{source}: unknown key(s) {', '.join(f'{key}.{u}' for u in unknown)} "
                    f"(known: {', '.join(DEFAULTS[key])})"
                )


def _require(ok: bool, source: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: {message}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int_or_none(value) -> bool:
    return value is None or (_is_int(value) and value >= 1)


def validate_config(config: Mapping, source: str = "<config>") -> None:
    """Raise ConfigError (naming ``source`` and the key) if a setting is missing or out of range."""
    check_keys(config, source)
    model, data, opt, training = config["model"], config["data"], config["optimizer"], config["training"]
    _require(isinstance(model, Mapping) and isinstance(model.get("name"), str) and model["name"],
             source, "model.name (the registry name) is required")
    _require(isinstance(config["loss"], Mapping), source, "`loss` must be a mapping")
    window = data["window"]
    _require(isinstance(window, (int, float)) and not isinstance(window, bool) and window > 0,
             source, f"data.window must be a positive number of seconds, got {window!r}")
    frames = window / FRAME_PERIOD
    _require(math.isclose(frames, round(frames), abs_tol=1e-6), source,
             f"data.window={window} is not a whole number of {FRAME_PERIOD} s frames")
    mods = data["modalities"]
    _require(mods is None or (isinstance(mods, list) and mods and set(mods) <= set(MODALITIES)),
             source, f"data.modalities must be a non-empty list drawn from {list(MODALITIES)}, got {mods!r}")
    _require(_is_int(data["batch_size"]) and data["batch_size"] >= 1, source,
             f"data.batch_size must be a positive integer, got {data['batch_size']!r}")
    _require(_is_int(data["shuffle_buffer"]) and data["shuffle_buffer"] >= 1, source,
             f"data.shuffle_buffer must be a positive integer, got {data['shuffle_buffer']!r}")
    for key in ("augment", "stream_ordered"):
        _require(isinstance(data[key], bool), source, f"data.{key} must be true or false")
    _require(opt["name"] in OPTIMIZERS, source,
             f"optimizer.name must be one of {', '.join(OPTIMIZERS)}, got {opt['name']!r}")
    lr = opt["learning_rate"]
    _require(isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0, source,
             f"optimizer.learning_rate must be a positive number, got {lr!r}")
    _require(_positive_int_or_none(training["epochs"]), source,
             f"training.epochs must be a positive integer, got {training['epochs']!r}")
    _require(training["epochs"] is not None or training["max_steps"] is not None, source,
             "training.epochs may be null only with training.max_steps (--steps) set")
    for key in ("steps_per_epoch", "max_steps", "checkpoint_every"):
        _require(_positive_int_or_none(training[key]), source,
                 f"training.{key} must be a positive integer or null, got {training[key]!r}")
    _require(_is_int(training["seed"]) and training["seed"] >= 0, source,
             f"training.seed must be a non-negative integer, got {training['seed']!r}")
    _require(training["strategy"] in STRATEGIES, source,
             f"training.strategy must be one of {', '.join(STRATEGIES)}, got {training['strategy']!r}")
    for key in ("validate", "stateful"):
        _require(isinstance(training[key], bool), source, f"training.{key} must be true or false")


def window_frames(config: Mapping) -> int:
    """Frames per training sequence (``data.window / FRAME_PERIOD``)."""
    return int(round(config["data"]["window"] / FRAME_PERIOD))


def save_config(config: Mapping, run_dir: str | os.PathLike, run_info: Mapping | None = None) -> Path:
    """Write the resolved config (plus a ``run:`` record) to ``RUN_DIR/config.yaml`` atomically."""
    doc = copy.deepcopy(dict(config))
    doc.pop("demo", None)
    if run_info:
        doc["run"] = dict(run_info)
    path = Path(run_dir) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, yaml.safe_dump(doc, sort_keys=False).encode())
    return path

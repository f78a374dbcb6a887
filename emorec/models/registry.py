"""The one registry that maps a model name to its builder and its training objective.

A builder takes the ``model`` section of ``train/NAME.yaml`` (a dict) and
returns a Keras functional model whose inputs are a dict of named tensors taken
from a data batch (``audio``, ``video``, ``landmarks``) and whose outputs are a
dict holding at least ``emotion`` ``(batch, time, 2)`` = [arousal, valence].

An objective turns a batch, the model outputs and a moment reducer into
``(total_loss, {term_name: value})``; the reducer makes the CCC exact under
tf.distribute (see :mod:`emorec.losses`). Models without one use the plain
CCC objective.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model name."""

    name: str
    builder: Callable[[dict], object]
    objective: Callable | None
    modalities: tuple[str, ...]
    description: str


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    modalities: tuple[str, ...],
    objective: Callable | None = None,
    description: str = "",
):
    """Decorator registering ``builder(config) -> keras.Model`` under ``name``."""

    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, objective, tuple(modalities), description)
        return builder

    return decorate


def _load_builtin_models() -> None:
    # Importing the model modules runs their @register_model decorators.
    from emorec.models import builtin  # noqa: F401


def get_model_spec(name: str) -> ModelSpec:
    """Look a model up by name; the error lists the names that exist."""
    _load_builtin_models()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown model {name!r}; available: {', '.join(available_models())}"
        ) from None


def build_model(name: str, config: dict):
    """Build the named model from its ``model`` config section."""
    return get_model_spec(name).builder(dict(config))


def available_models() -> list[str]:
    """Sorted names of every registered model."""
    _load_builtin_models()
    return sorted(_REGISTRY)

"""The one registry that maps a model name to its builder and its training objective.

It imports no model module: the model modules register themselves when
imported, and :mod:`emorec.models` (the package) imports all of them, so
``from emorec.models import get_model_spec`` sees every model.

A builder takes the model's typed config (its ``config_class``, built from
the ``model`` section of ``train/NAME.yaml``) and returns a Keras functional model whose inputs are a dict of named tensors taken
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

from emorec.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model name.

    ``objective`` and ``loss_config_class`` default to the task's (None here);
    ``task`` names an entry of :mod:`emorec.tasks`.
    """

    name: str
    builder: Callable
    config_class: type
    modalities: tuple[str, ...]
    task: str
    objective: Callable | None
    loss_config_class: type | None
    description: str
    # training.jit_compile: auto compiles its whole step (True) or only its optimizer update ("update"),
    # where benchmarks/xla.py measured that exact and faster; False: nothing.
    xla: bool | str = False


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    modalities: tuple[str, ...],
    config_class: type,
    task: str = "frame_regression",
    objective: Callable | None = None,
    loss_config_class: type | None = None,
    description: str = "",
    xla: bool | str = False,
):
    """Decorator registering ``builder(config) -> keras.Model`` under ``name``.

    Args:
        name: the registry name (``model.name`` in the YAML).
        modalities: the dataset modalities the model reads.
        config_class: the :class:`~emorec.config.ModelConfig` subclass of its ``model:`` section.
        task: the task it solves (a name in :mod:`emorec.tasks`).
        objective: ``objective(batch, outputs, reduce_fn, **loss) -> (loss, terms)``; None = the
            task's.
        loss_config_class: the section class of its ``loss:`` settings; None = the task's.
        description: one line for listings.
        xla: what ``training.jit_compile: auto`` compiles with XLA on one device: True the whole
            step, ``"update"`` only the optimizer's update, False nothing (set only where
            ``benchmarks/xla.py`` measured it faster and ``tests/test_xla.py`` exact).

    Returns:
        The decorator; it registers the builder and returns it unchanged.

    Raises:
        ValueError: when decorating, if ``name`` is already registered, or only one of
            ``objective`` and ``loss_config_class`` is given.
    """

    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        if xla not in (True, False, "update"):
            raise ValueError(f"model {name!r}: xla must be True, False or 'update', got {xla!r}")
        if (objective is None) != (loss_config_class is None):
            raise ValueError(f"model {name!r}: give both objective and loss_config_class, or neither")
        _REGISTRY[name] = ModelSpec(name, builder, config_class, tuple(modalities), task, objective,
                                    loss_config_class, description, xla)
        return builder

    return decorate


def get_model_spec(name: str) -> ModelSpec:
    """Look a model up by name.

    Args:
        name: a registered model name.

    Returns:
        Its :class:`ModelSpec`.

    Raises:
        ConfigError: no model of that name is registered (the message lists those that are).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; available: {', '.join(available_models())}"
        ) from None


def build_model(name: str, config=None):
    """Build the named model from its ``model`` settings.

    Args:
        name: a registered model name.
        config: a mapping of its settings (missing keys take the defaults), an instance of its
            config class, or None for all defaults.

    Returns:
        The Keras model the builder makes (offline, untrained unless the settings name
        weights to load).

    Raises:
        ConfigError: an unknown model, or bad settings.
    """
    spec = get_model_spec(name)
    return spec.builder(spec.config_class.for_model(name, config))


def available_models() -> list[str]:
    """Sorted names of every registered model.

    Returns:
        The names, in alphabetical order (every model once :mod:`emorec.models` is imported).
    """
    return sorted(_REGISTRY)

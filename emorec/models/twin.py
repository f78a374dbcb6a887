"""The state twin of a recurrent model: the same layers and weights, with the LSTM state as an input and an output.

Every emorec model whose recurrent part is one or more
:class:`~emorec.models.recurrent.RecurrentHead` layers has a twin mapping
``{inputs..., "states"}`` to ``{outputs..., "states"}``: each head starts from
its slice of ``states`` instead of zeros, and the heads' final states are
returned packed the same way, ``(batch, heads · 2 · layers, units)`` with the
heads in the order of ``model.layers`` (``ae_2slstm``: video head, then
audio head) and, per head, rows ``2 l`` and ``2 l + 1`` = h and c of its LSTM
layer ``l``. Zeros start a recording.

One builder serves every use: stateful training keeps every output (the
objective needs the reconstructions), streaming export and whole-recording
evaluation keep ``emotion`` alone (so decoders drop out of the twin). It
replays the offline model's functional graph on new inputs, swapping only the
heads' calls (Keras' ``Functional._run_through_graph``), so it works for any
architecture without knowing its layer names.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from emorec.errors import ConfigError

STATES = "states"


def recurrent_heads(model: keras.Model) -> list:
    """The model's :class:`~emorec.models.recurrent.RecurrentHead` layers, in layer order.

    Args:
        model: a Keras model (only its top-level layers are searched).

    Returns:
        The heads (empty when the model has none); their order is the order of their rows in
        the packed state.
    """
    from emorec.models.recurrent import RecurrentHead

    return [layer for layer in model.layers if isinstance(layer, RecurrentHead)]


def state_shape(model: keras.Model) -> tuple[int, int]:
    """``(rows, units)`` of the packed state of all the model's heads (no batch axis).

    Args:
        model: an offline emorec model with one or more recurrent heads of one size.

    Returns:
        ``(heads × 2 × layers, units)``: the heads' packed states stacked along the rows.

    Raises:
        ConfigError: the model has no recurrent head, or heads of different sizes.
    """
    heads = recurrent_heads(model)
    if not heads:
        raise ConfigError(f"model {model.name}: no recurrent head with explicit states, so no state twin")
    if len({head.state_shape for head in heads}) != 1:
        raise ConfigError(f"model {model.name}: recurrent heads of different sizes cannot share one state")
    rows, units = heads[0].state_shape
    return rows * len(heads), units


def state_twin(model: keras.Model, outputs: Sequence[str] | None = None, name: str | None = None) -> keras.Model:
    """The twin of ``model`` with ``states`` in and out (see the module docstring).

    Args:
        model: an offline emorec model (functional, dict inputs and outputs) with recurrent heads.
        outputs: the offline outputs to keep (None = all).
        name: the twin's name (default ``<model>_stateful``).

    Returns:
        A Keras model sharing every layer (and so every weight) with ``model``.

    Raises:
        ConfigError: the model has no recurrent head, or ``outputs`` names one it lacks.
    """
    rows_total, units = state_shape(model)
    heads = recurrent_heads(model)
    rows = rows_total // len(heads)
    states_in = keras.Input((rows_total, units), name=STATES)
    finals: dict[int, object] = {}

    def operation_fn(op):
        if op not in heads:
            return op
        k = heads.index(op)

        def call(*args, **kwargs):
            out = op(*args, initial_states=states_in[:, k * rows:(k + 1) * rows], **kwargs)
            finals[k] = out[1]
            return out

        return call

    inputs = {t.name: keras.Input(t.shape[1:], dtype=t.dtype, name=t.name) for t in model.inputs}
    replayed = model._run_through_graph(inputs, operation_fn=operation_fn)
    keep = list(replayed) if outputs is None else list(outputs)
    missing = [k for k in keep if k not in replayed]
    if missing:
        raise ConfigError(f"model {model.name}: has no output(s) {missing} (it has {list(replayed)})")
    ordered = [finals[k] for k in range(len(heads))]
    final = ordered[0] if len(ordered) == 1 else keras.layers.Concatenate(axis=1, name="next_states")(ordered)
    return keras.Model({**inputs, STATES: states_in}, {**{k: replayed[k] for k in keep}, STATES: final},
                       name=name or f"{model.name}_stateful")

"""Stateful training (``training.stateful``): the LSTM state carries over from one window of a recording to the next.

The paper trains on independent 0.2 s windows, each from a zero state (the
default). In stateful mode the data come stream-ordered
(``make_dataset(..., stream_ordered=True)``: row ``r`` of every batch
continues the recording of row ``r`` of the previous batch) and the training
loop carries each row's recurrent state explicitly:

    states ← states · (1 − reset)          a row whose recording starts here starts from zero
    outputs, new ← model(inputs, states)   the model's stateful twin (same layers, same weights)
    states ← stop_gradient(new) · has_frames   truncated backprop; empty (padding) rows hold zeros

Keras' ``stateful=True`` LSTMs are not used: they need a fixed batch size, have
no per-row reset and keep their state in layer variables that neither
tf.distribute nor our state layout knows about. The explicit state is the
packed ``(B, 2 · layers, units)`` tensor of
:class:`~emorec.models.recurrent.RecurrentHead` (heads stacked in graph
order), so any model whose recurrent part is a ``RecurrentHead`` (the e2e and
ae_lstm families) can be trained this way.

Under a tf.distribute strategy each replica carries the states of its own
rows: ``experimental_distribute_dataset`` splits every global batch into
contiguous, equal slices in replica order, so row ``r`` always lands on
replica ``r // (B / R)``. The states live between steps as per-replica values;
their global concatenation is copied after every step into a variable that
the run's checkpoint holds, so a resumed run continues its lanes exactly.
MultiWorkerMirroredStrategy is refused (a worker cannot gather the other
workers' states into its checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from emorec.errors import ConfigError

STATES = "states"


def recurrent_heads(model: keras.Model) -> list:
    """The model's :class:`RecurrentHead` layers in graph order (empty if it has none)."""
    from emorec.models.recurrent import RecurrentHead

    return [layer for layer in model.layers if isinstance(layer, RecurrentHead)]


def check_stateful(config: Mapping, model: keras.Model, strategy) -> None:
    """ConfigError unless ``config``/``model``/``strategy`` allow stateful training."""
    name = config["model"]["name"]
    if not config["data"]["stream_ordered"]:
        raise ConfigError(
            f"model {name}: training.stateful needs data.stream_ordered: true (use --stateful, which sets both)"
        )
    heads = recurrent_heads(model)
    if not heads:
        raise ConfigError(
            f"model {name}: training.stateful needs a recurrent head with explicit states "
            "(emorec.models.recurrent.RecurrentHead); this model has none"
        )
    if len({head.state_shape for head in heads}) != 1:
        raise ConfigError(f"model {name}: training.stateful needs recurrent heads of equal size")
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise ConfigError(
            f"model {name}: training.stateful runs on one machine (one device or MirroredStrategy); "
            "the carried states cannot be checkpointed across workers"
        )
    replicas = int(strategy.num_replicas_in_sync)
    batch = int(config["data"]["batch_size"])
    if batch % replicas:
        raise ConfigError(
            f"model {name}: training.stateful needs data.batch_size ({batch}) divisible by the "
            f"number of replicas ({replicas}) so every replica keeps the same rows"
        )


def state_shape(model: keras.Model) -> tuple[int, int]:
    """``(rows, units)`` of the packed state of all heads (no batch axis)."""
    heads = recurrent_heads(model)
    rows, units = heads[0].state_shape
    return rows * len(heads), units


def build_stateful_model(model: keras.Model) -> keras.Model:
    """Twin of ``model`` taking and returning ``states``: ``{inputs, states}`` → ``{outputs..., states}``.

    Every layer is the offline model's own (shared weights); each recurrent
    head starts from its slice of ``states`` instead of zeros. Unlike the
    streaming export models, the twin keeps every output (reconstructions
    too), so the model's training objective applies unchanged.
    """
    heads = recurrent_heads(model)
    if not heads:
        raise ConfigError(f"model {model.name}: no RecurrentHead layer, so no stateful form")
    rows = heads[0].state_shape[0]
    states_in = keras.Input(state_shape(model), name=STATES)
    finals = []

    def operation_fn(op):
        if op not in heads:
            return op

        def call(*args, **kwargs):
            k = len(finals)
            out = op(*args, initial_states=states_in[:, k * rows:(k + 1) * rows], **kwargs)
            finals.append(out[1])
            return out

        return call

    inputs = {t.name: keras.Input(t.shape[1:], dtype=t.dtype, name=t.name) for t in model.inputs}
    # Replays the functional graph on new inputs, swapping only the heads' calls.
    outputs = model._run_through_graph(inputs, operation_fn=operation_fn)
    final = finals[0] if len(finals) == 1 else keras.layers.Concatenate(axis=1, name="next_states")(finals)
    return keras.Model({**inputs, STATES: states_in}, {**outputs, STATES: final}, name=f"{model.name}_stateful")


def carry(states, reset):
    """States with the rows that start a recording (``reset`` True) set to zero."""
    keep = 1.0 - tf.cast(reset, states.dtype)
    return states * keep[:, None, None]


def settle(new_states, mask):
    """Next states: gradient cut (truncated BPTT) and zeros on rows without a real frame (padding)."""
    has_frames = tf.cast(tf.reduce_any(mask > 0, axis=1), new_states.dtype)
    return tf.stop_gradient(new_states) * has_frames[:, None, None]


class StatefulStep:
    """``step(batch) -> terms``, like the engine's step, carrying each row's state between calls.

    ``variable`` holds the global ``(B, rows, units)`` states after the last
    step (checkpointed with the run); the first call reads it, so a restored
    checkpoint continues where it stopped.
    """

    def __init__(self, model, optimizer, objective, strategy, batch_size: int):
        # The engine imports this module lazily, so importing it back here makes no cycle.
        from emorec.training.engine import replica_update

        self.strategy = strategy
        self.twin = build_stateful_model(model)
        self.input_names = [t.name for t in model.inputs]
        self.shape = state_shape(model)
        self.variable = tf.Variable(np.zeros((batch_size, *self.shape), np.float32), trainable=False,
                                    name="carried_states")
        self._states = None
        replicas = strategy.num_replicas_in_sync
        twin, input_names = self.twin, self.input_names

        def replica_step(batch, states):
            inputs = {k: batch[k] for k in input_names}
            inputs[STATES] = carry(states, batch["reset"])
            out, outputs = replica_update(model, twin, inputs, batch, objective, optimizer, replicas)
            return out, settle(outputs[STATES], batch["mask"])

        @tf.function
        def step(batch, states):
            per_replica, new_states = strategy.run(replica_step, args=(batch, states))
            terms = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                     for k, v in per_replica.items()}
            return terms, new_states

        self._step = step

    def _distribute(self, global_states):
        per = global_states.shape[0] // self.strategy.num_replicas_in_sync
        # Replica k holds rows [k·per, (k+1)·per), the slice experimental_distribute_dataset gives it.
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.identity(global_states[ctx.replica_id_in_sync_group * per:
                                                  (ctx.replica_id_in_sync_group + 1) * per])
        )

    def __call__(self, batch):
        """Train on one (distributed) batch; returns the reduced loss terms."""
        if self._states is None:
            self._states = self._distribute(tf.convert_to_tensor(self.variable))
        terms, self._states = self._step(batch, self._states)
        local = self.strategy.experimental_local_results(self._states)
        self.variable.assign(tf.concat([tf.convert_to_tensor(s) for s in local], axis=0))
        return terms


def predict_stream(model, dataset) -> dict:
    """Run ``model`` statefully over a stream-ordered dataset; ``{recording_id: (gold, pred)}`` per recording.

    Each recording is predicted as one sequence (state carried across its
    rows), which equals the offline model on the whole recording.
    """
    from emorec.training.engine import _stitch

    twin = build_stateful_model(model)
    names = [t.name for t in model.inputs]

    @tf.function(reduce_retracing=True)
    def forward(inputs, states, reset):
        out = twin({**inputs, STATES: carry(states, reset)}, training=False)
        return out["emotion"], out[STATES]

    states = None
    parts: dict[str, list] = {}
    for batch in dataset:
        if states is None:
            states = tf.zeros((batch["reset"].shape[0], *state_shape(model)))
        pred, states = forward({k: batch[k] for k in names}, states, batch["reset"])
        pred = pred.numpy()
        mask = batch["mask"].numpy() > 0
        labels = batch["labels"].numpy()
        for row, (rid, start) in enumerate(zip(batch["recording_id"].numpy(), batch["start_frame"].numpy())):
            keep = mask[row]
            if keep.any():
                frames = start + np.nonzero(keep)[0]
                parts.setdefault(rid.decode(), []).append((frames, pred[row][keep], labels[row][keep]))
    return _stitch(parts)

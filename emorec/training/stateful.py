"""Stateful training (``training.stateful``): the LSTM state carries over from one window of a recording to the next.

The paper trains on independent 0.2 s windows, each from a zero state (the
default). In stateful mode the data come stream-ordered
(``ReadSpec(stream_ordered=True)``: row ``r`` of every batch
continues the recording of row ``r`` of the previous batch) and the training
loop carries each row's recurrent state explicitly:

    states ← states · (1 − reset)          a row whose recording starts here starts from zero
    outputs, new ← model(inputs, states)   the model's stateful twin (same layers, same weights)
    states ← stop_gradient(new) · has_frames   truncated backprop; empty (padding) rows hold zeros

Keras' ``stateful=True`` LSTMs are not used: they need a fixed batch size, have
no per-row reset and keep their state in layer variables that neither
tf.distribute nor our state layout knows about. The explicit state is the
packed ``(B, 2 · layers, units)`` tensor of
:class:`~emorec.models.recurrent.RecurrentHead` (see
:mod:`emorec.models.twin`), so any model whose recurrent part is a
``RecurrentHead`` (the e2e and ae_lstm families) can be trained this way.

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

import numpy as np
import tensorflow as tf

from emorec.errors import ConfigError
from emorec.models.twin import STATES, recurrent_heads, state_shape, state_twin
from emorec.training.predictions import carry
from emorec.training.replica import reduce_terms, replica_update
from emorec.training.steps import StepContext, TrainStep


def check_stateful(config, model, strategy) -> None:
    """ConfigError unless the config, the model and the strategy allow stateful training.

    Args:
        config: the resolved :class:`~emorec.config.TrainConfig` (model name, batch size).
        model: the offline model to train.
        strategy: the ``tf.distribute`` strategy training runs under.

    Raises:
        ConfigError: the model has no recurrent head or heads of different sizes, the
            strategy is multi-worker, or the batch size is not divisible by the replicas.
    """
    name = config.model_name
    if not recurrent_heads(model):
        raise ConfigError(
            f"model {name}: training.stateful needs a recurrent head with explicit states "
            "(emorec.models.recurrent.RecurrentHead); this model has none"
        )
    state_shape(model)  # heads of one size
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise ConfigError(
            f"model {name}: training.stateful runs on one machine (one device or MirroredStrategy); "
            "the carried states cannot be checkpointed across workers"
        )
    replicas = int(strategy.num_replicas_in_sync)
    batch = config.data.batch_size
    if batch % replicas:
        raise ConfigError(
            f"model {name}: training.stateful needs data.batch_size ({batch}) divisible by the "
            f"number of replicas ({replicas}) so every replica keeps the same rows"
        )


def settle(new_states, mask):
    """Next states: gradient cut (truncated BPTT) and zeros on rows without a real frame (padding).

    Args:
        new_states: ``(B, rows, units)`` states at the end of the batch.
        mask: ``(B, T)`` frame mask of the batch (> 0 = real frame).

    Returns:
        The ``(B, rows, units)`` states to carry, without gradient; rows that held only
        padding are zero.

    >>> import numpy as np
    >>> states = settle(np.ones((2, 1, 1), np.float32), np.array([[1.0, 0.0], [0.0, 0.0]]))
    >>> np.asarray(states).ravel().tolist()
    [1.0, 0.0]
    """
    has_frames = tf.cast(tf.reduce_any(mask > 0, axis=1), new_states.dtype)
    return tf.stop_gradient(new_states) * has_frames[:, None, None]


class StatefulStep(TrainStep):
    """Trains like :class:`~emorec.training.steps.WindowedStep`, carrying each row's state.

    The state is carried between calls, row by row.

    ``variable`` holds the global ``(B, rows, units)`` states after the last
    step (checkpointed with the run); the first call reads it, so a restored
    checkpoint continues where it stopped. Validation streams whole recordings.

    Args:
        context: the step's model, optimizer, objective, strategy, input names, batch size
            and XLA choice.
    """

    stream_validation = True

    def __init__(self, context: StepContext):
        model, optimizer, objective = context.model, context.optimizer, context.objective
        self.strategy = strategy = context.strategy
        self.twin = twin = state_twin(model)
        names = list(context.input_names)
        self.shape = state_shape(model)
        self.variable = tf.Variable(np.zeros((context.batch_size, *self.shape), np.float32), trainable=False,
                                    name="carried_states")
        self._states = None
        replicas = strategy.num_replicas_in_sync
        self.jit_compile = context.jit_compile
        apply = context.update_fn()

        def replica_step(batch, states):
            inputs = {k: batch[k] for k in names}
            inputs[STATES] = carry(states, batch["reset"])
            out, outputs = replica_update(model, twin, inputs, batch, objective, optimizer, replicas, apply)
            return out, settle(outputs[STATES], batch["mask"])

        @tf.function(jit_compile=context.jit_compile)
        def step(batch, states):
            per_replica, new_states = strategy.run(replica_step, args=(batch, states))
            return reduce_terms(strategy, per_replica), new_states

        self._step = step

    def checkpoint_items(self) -> dict:
        """The carried states, so that a resumed run continues its lanes.

        Returns:
            ``{"carried_states": variable}`` to save with the run's checkpoint.
        """
        return {"carried_states": self.variable}

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

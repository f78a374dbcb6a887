"""Training steps: what the trainer calls once per (distributed) batch.

A step object is built by the task (:meth:`emorec.tasks.Task.make_step`)
and hides how a batch becomes an update: :class:`WindowedStep` treats every
row as an independent example (the papers' training, and clip
classification); :class:`emorec.training.stateful.StatefulStep` carries each
row's LSTM state across batches. The trainer only needs:

- ``step(batch) -> {term: scalar tensor}`` (the loss terms, reduced over replicas);
- ``step.checkpoint_items() -> dict`` of extra trackables to save with the run
  (the carried states), so resume is exact;
- ``step.stream_validation`` (bool): validate by streaming whole recordings, as trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from emorec.training.replica import compiled_update, reduce_terms, replica_update


@dataclasses.dataclass
class StepContext:
    """What a step is made of: the model, its optimizer and objective, the strategy and the batch size."""

    model: object
    optimizer: object
    objective: Callable
    strategy: tf.distribute.Strategy
    batch_size: int
    input_names: list[str]
    jit_compile: bool = False  # XLA for the whole step (one device only: see emorec.training.engine.xla_mode)
    jit_update: bool = False  # XLA for the optimizer's update alone (one device only)


class TrainStep:
    """Base class: a callable training step (see the module docstring)."""

    stream_validation = False
    jit_compile = False

    def __call__(self, batch) -> dict:
        raise NotImplementedError

    def checkpoint_items(self) -> dict:
        """Extra objects saved in the run's checkpoints (none by default)."""
        return {}


class WindowedStep(TrainStep):
    """Every row of a batch is an independent example from a zero state."""

    def __init__(self, context: StepContext):
        model, optimizer, objective = context.model, context.optimizer, context.objective
        strategy, names = context.strategy, list(context.input_names)
        replicas = strategy.num_replicas_in_sync
        self.jit_compile = context.jit_compile

        apply = compiled_update(optimizer, model.trainable_variables) if context.jit_update else None

        def replica_step(batch):
            out, _ = replica_update(model, model, {k: batch[k] for k in names}, batch, objective,
                                    optimizer, replicas, apply)
            return out

        @tf.function(jit_compile=context.jit_compile)
        def step(batch):
            return reduce_terms(strategy, strategy.run(replica_step, args=(batch,)))

        self._step = step

    def __call__(self, batch) -> dict:
        """Train on one (distributed) batch; returns the reduced loss terms."""
        return self._step(batch)

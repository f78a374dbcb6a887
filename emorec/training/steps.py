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

XLA_MODES = ("off", "step", "update")  # nothing, the whole step, the optimizer's update alone


@dataclasses.dataclass
class StepContext:
    """What a step is made of: the model, its optimizer and objective, the strategy and the batch size."""

    model: object
    optimizer: object
    objective: Callable
    strategy: tf.distribute.Strategy
    batch_size: int
    input_names: list[str]
    xla: str = "off"  # what XLA compiles, one of XLA_MODES (one device only: emorec.training.engine.xla_mode)

    def __post_init__(self):
        if self.xla not in XLA_MODES:
            raise ValueError(f"StepContext.xla must be one of {', '.join(XLA_MODES)}, got {self.xla!r}")

    @property
    def jit_compile(self) -> bool:
        """Whether the whole step (and the validation forward pass) is compiled."""
        return self.xla == "step"

    def update_fn(self):
        """``update(grads)`` with only the optimizer's update compiled (``xla`` update), else None.

        Returns:
            :func:`~emorec.training.replica.compiled_update` of the model's trainable variables,
            or None: the step calls ``apply_gradients`` op by op.
        """
        if self.xla != "update":
            return None
        return compiled_update(self.optimizer, self.model.trainable_variables)


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
        apply = context.update_fn()

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

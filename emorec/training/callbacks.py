"""What happens around the training steps: NaN guard, progress bar, TensorBoard, history, checkpoints, hooks.

The trainer (:mod:`emorec.training.engine`) calls every callback at the same
points, in the order they are listed:

- ``on_train_begin(trainer)``;
- ``on_epoch_begin(trainer, epoch, skip)`` (``epoch`` 0-based, ``skip`` batches already done);
- ``on_step_end(trainer, info)`` with ``info = {epoch, step_in_epoch, global_step, terms}``
  (the counters already advanced; ``terms`` plain floats);
- ``on_epoch_end(trainer, epoch, row, improved)`` with the epoch's history ``row``;
- ``on_train_end(trainer, finished)`` (``finished``: every epoch done, or ``max_steps`` reached).

Callbacks read what they need from the trainer (``run_dir``, ``model``,
``state``, ``checkpoints``, ``config``, ``chief``, ``history``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math

import tensorflow as tf

from emorec.errors import EmorecError
from emorec.manifest import atomic_write_bytes

logger = logging.getLogger(__name__)


class TrainingDivergedError(EmorecError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class Callback:
    """Base class: every hook does nothing."""

    def on_train_begin(self, trainer) -> None:
        """Before the first step."""

    def on_epoch_begin(self, trainer, epoch: int, skip: int) -> None:
        """Before an epoch's first step."""

    def on_step_end(self, trainer, info: dict) -> None:
        """After every step."""

    def on_epoch_end(self, trainer, epoch: int, row: dict, improved: bool) -> None:
        """After an epoch's validation."""

    def on_train_end(self, trainer, finished: bool) -> None:
        """After the last step (also when training stops early on ``max_steps``)."""


class NaNGuard(Callback):
    """Stops training at the first non-finite loss term, naming the step and the last good checkpoint."""

    def on_step_end(self, trainer, info: dict) -> None:
        """Raise :class:`TrainingDivergedError` on NaN/inf."""
        bad = {k: v for k, v in info["terms"].items() if not math.isfinite(v)}
        if bad:
            raise TrainingDivergedError(
                f"{trainer.run_dir.path}: non-finite loss at step {info['global_step']} (epoch "
                f"{info['epoch'] + 1}, batch {info['step_in_epoch']}): "
                f"{', '.join(f'{k}={v}' for k, v in bad.items())}; training stopped, last good checkpoint: "
                f"{trainer.checkpoints.latest_path or 'none'}"
            )


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running mean loss and CCCs."""

    def __init__(self, total_batches: int | None, epochs: int | None):
        self.total, self.epochs = total_batches, epochs
        self.bar = None
        self.sums: dict[str, float] = {}
        self.count = 0

    def on_epoch_begin(self, trainer, epoch: int, skip: int) -> None:
        """Open the bar at the epoch's data position."""
        from tqdm import tqdm

        self.sums, self.count = {}, 0
        self.bar = tqdm(total=self.total, initial=skip, desc=f"epoch {epoch + 1}/{self.epochs or '?'}",
                        leave=True, dynamic_ncols=True)

    def on_step_end(self, trainer, info: dict) -> None:
        """Advance and show the running means."""
        self.count += 1
        for k, v in info["terms"].items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        shown = {"loss": f"{self.sums['loss'] / self.count:.4f}"}
        for key, label in (("ccc_arousal", "aro"), ("ccc_valence", "val"), ("accuracy", "acc")):
            if key in self.sums:
                shown[label] = f"{self.sums[key] / self.count:.3f}"
        self.bar.update(1)
        self.bar.set_postfix(shown)

    def on_epoch_end(self, trainer, epoch: int, row: dict, improved: bool) -> None:
        """Close the bar."""
        self._close()

    def on_train_end(self, trainer, finished: bool) -> None:
        """Close a bar left open by an early stop."""
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _scalar_metadata() -> bytes:
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR,
    ).SerializeToString()


def summary_scalar(tag: str, value: float, step: int) -> None:
    """``tf.summary.scalar`` without needing the tensorboard package (same event format).

    Args:
        tag: the scalar's name.
        value: its value (written as float32).
        step: the global step.
    """
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_scalar_metadata())


class TensorBoardScalars(Callback):
    """Per-step loss terms (``train_step/*``) and per-epoch rows (``epoch/*``) in ``RUN_DIR/tb``."""

    def __init__(self):
        self.writer = None

    def on_train_begin(self, trainer) -> None:
        """Open the event file."""
        self.writer = tf.summary.create_file_writer(str(trainer.run_dir.tensorboard))

    def on_step_end(self, trainer, info: dict) -> None:
        """Write the step's terms."""
        with self.writer.as_default():
            for k, v in info["terms"].items():
                summary_scalar(f"train_step/{k}", v, info["global_step"])

    def on_epoch_end(self, trainer, epoch: int, row: dict, improved: bool) -> None:
        """Write the epoch's means and validation metrics."""
        step = row["global_step"]
        with self.writer.as_default():
            for k, v in row.items():
                if k.startswith(("train_", "dev_")) and isinstance(v, float) and math.isfinite(v):
                    summary_scalar(f"epoch/{k}", v, step)
        self.writer.flush()

    def on_train_end(self, trainer, finished: bool) -> None:
        """Close the event file."""
        if self.writer is not None:
            self.writer.close()


class HistoryWriter(Callback):
    """``history.json`` and ``history.csv``: one row per epoch, rewritten atomically after each."""

    def on_epoch_end(self, trainer, epoch: int, row: dict, improved: bool) -> None:
        """Write both files."""
        write_history(trainer.run_dir, trainer.history)


def write_history(run_dir, history: list[dict]) -> None:
    """Write ``history.json`` and ``history.csv`` of ``run_dir`` (a :class:`~emorec.rundir.RunDir`).

    Args:
        run_dir: the run directory.
        history: one dict per epoch; the CSV's columns are every key, in first-seen order.
    """
    atomic_write_bytes(run_dir.history_json, (json.dumps(history, indent=2) + "\n").encode())
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(run_dir.history_csv, buffer.getvalue().encode())


def read_history(run_dir, epochs_completed: int) -> list[dict]:
    """The rows of ``history.json`` up to ``epochs_completed`` (later rows belong to work that is redone).

    Args:
        run_dir: the run directory (a :class:`~emorec.rundir.RunDir`).
        epochs_completed: the last epoch whose row is kept (1-based ``epoch`` values).

    Returns:
        The rows with ``epoch <= epochs_completed``; empty without a file.
    """
    path = run_dir.history_json
    if not path.is_file():
        return []
    return [row for row in json.loads(path.read_text()) if row["epoch"] <= epochs_completed]


class EpochLog(Callback):
    """One log line per epoch: mean loss and the validation CCCs."""

    def on_epoch_end(self, trainer, epoch: int, row: dict, improved: bool) -> None:
        """Log the line."""
        shown = {k: round(v, 4) for k, v in row.items() if k.startswith("dev_") and "per_rec" not in k
                 and isinstance(v, float)}
        logger.info("epoch %d: loss %.4f %s%s", epoch + 1, row.get("train_loss", float("nan")), shown,
                    " (best so far)" if improved and trainer.validating else "")


class Checkpointer(Callback):
    """Saves ``latest`` and ``best.keras`` as ``training.checkpoints`` says.

    ``epoch``: ``latest`` after every epoch (and every ``checkpoint_every``
    steps), ``best.keras`` whenever the validation score improves.
    ``end``: both only when training ends; the best epoch's weights are held in
    memory until then (a killed run restarts from its beginning, which is as
    exact as resuming and writes far less: the demo's choice).
    """

    def __init__(self, policy: str, every: int | None, keep_optimizer_state: bool):
        self.policy, self.every, self.keep_optimizer_state = policy, every, keep_optimizer_state
        self.best_weights: list | None = None
        # ``end``: the model's current weights are the best ones; they are copied out only when the
        # next epoch is about to change them (85M weights: ~0.6 s a copy, ~1 s a swap back and forth).
        self.best_is_current = False

    def on_epoch_begin(self, trainer, epoch: int, skip: int) -> None:
        """``end``: keep a copy of the best weights before training changes them."""
        if self.best_is_current:
            self.best_weights = trainer.model.get_weights()
            self.best_is_current = False

    def on_step_end(self, trainer, info: dict) -> None:
        """The in-epoch ``latest`` every ``checkpoint_every`` steps."""
        if self.policy == "epoch" and self.every and info["global_step"] % self.every == 0:
            trainer.checkpoints.save_latest(info["global_step"])

    def on_epoch_end(self, trainer, epoch: int, row: dict, improved: bool) -> None:
        """Save (or remember) the best model and the latest checkpoint."""
        if self.policy == "end":
            if improved:
                self.best_is_current = True
            return
        trainer.checkpoints.save_latest(row["global_step"])
        if improved:
            trainer.checkpoints.save_best_model()

    def on_train_end(self, trainer, finished: bool) -> None:
        """``end``: write both now; a finished run's ``latest`` loses its optimizer state if asked."""
        step = int(trainer.state.global_step.numpy())
        if step == 0:
            return
        keep = self.keep_optimizer_state or not finished
        if self.policy == "end" or not keep:
            trainer.checkpoints.save_latest(step, optimizer_state=keep)
        if self.policy == "end" and self.best_is_current:
            trainer.checkpoints.save_best_model()
        elif self.policy == "end" and self.best_weights is not None:
            final = trainer.model.get_weights()
            trainer.model.set_weights(self.best_weights)
            try:
                trainer.checkpoints.save_best_model()
            finally:
                trainer.model.set_weights(final)


class EarlyStopping(Callback):
    """Ends the run when the best validation score is ``patience`` epochs old (Chen & Jin: 50).

    Whether to stop is read from the trainer's state (the best epoch is
    checkpointed), so a resumed run stops where an uninterrupted one would;
    ``best.keras`` keeps the best epoch's weights. The run stops at the end of
    the ``patience``-th epoch after the best one ("no improvement after 50
    epochs"); the score is the task's validation score (dev CCC), where
    Theanets watched its validation loss.
    """

    def __init__(self, patience: int):
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self.patience = int(patience)

    def on_epoch_end(self, trainer, epoch: int, row: dict, improved: bool) -> None:
        """Ask the trainer to stop after this epoch when the best one is ``patience`` epochs back."""
        best = int(trainer.state.best_epoch.numpy())
        if epoch + 1 - best >= self.patience:
            logger.info("early stopping: no better %s for %d epochs (best epoch %d)",
                        trainer.task.score_name, epoch + 1 - best, best)
            trainer.stop_training = True


class StepHook(Callback):
    """Calls ``fn(info)`` after every step (tests and embedding applications)."""

    def __init__(self, fn):
        self.fn = fn

    def on_step_end(self, trainer, info: dict) -> None:
        """Call the function."""
        self.fn(info)

"""Run-directory checkpoints: ``checkpoints/latest`` (to resume) and ``best.keras`` (the best epoch's model).

``latest`` holds every model variable (weights, non-trainable statistics and
the Keras ``SeedGenerator`` states that drive dropout), every optimizer
variable (Adam moments, iteration count), the step's own extra state (the
carried LSTM states of stateful training) and a :class:`TrainState` (epochs
completed, steps done inside the current epoch, global step, best score and
its epoch). With the data pipeline a function of ``(seed, epoch)``, those two
counters are the data position: a resumed run rebuilds epoch ``e``'s dataset
and skips the batches already trained on. Only the newest ``latest`` is kept.

``best.keras`` is the only copy of the best weights (config + weights, loads
with ``keras.saving.load_model``): no optimizer state, since nothing resumes
from it. With ``training.keep_optimizer_state: false`` a *finished* run's
``latest`` drops the optimizer variables too (a third of its size for Adam);
it can then still be continued with more epochs, from fresh optimizer
moments, which is not an exact continuation and is logged as such.

Keras 3 models are not fully tracked by ``tf.train.Checkpoint(model=...)``
(only variables the optimizer knows about are found), so the variables are
listed explicitly; the same model code gives the same list order.

Under MultiWorkerMirroredStrategy every worker takes part in a save (saving
may need collectives); only the chief writes into the run directory, the
others write to a scratch directory that is deleted at once.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from emorec.rundir import RunDir

logger = logging.getLogger(__name__)

_OPTIMIZER_KEY = "optimizer_variables"


class TrainState(tf.Module):
    """Counters saved with the weights: where training is and what the best epoch was."""

    def __init__(self):
        super().__init__(name="train_state")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_completed")
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.best_score = tf.Variable(float("nan"), dtype=tf.float64, trainable=False, name="best_score")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")

    def as_dict(self) -> dict:
        """Plain Python values of the counters.

        Returns:
            ``{"epoch", "step_in_epoch", "global_step", "best_epoch"}`` as ints and
            ``"best_score"`` as a float (NaN before any epoch was scored).
        """
        return {
            "epoch": int(self.epoch.numpy()),
            "step_in_epoch": int(self.step_in_epoch.numpy()),
            "global_step": int(self.global_step.numpy()),
            "best_score": float(self.best_score.numpy()),
            "best_epoch": int(self.best_epoch.numpy()),
        }


class RunCheckpoints:
    """The ``latest`` checkpoint and ``best.keras`` of one run directory.

    Args:
        run_dir: the training run directory.
        model: the model whose variables (all of them, not only the trainable ones) are saved.
        optimizer: the optimizer whose variables are saved with them.
        state: the run's :class:`TrainState`.
        extra: more trackables to save, by name (e.g. the carried LSTM states of stateful
            training).
        chief: whether this worker writes into the run directory; other workers save into a
            scratch directory that is deleted after each save.
        worker: this worker's name, for the scratch directory's name.
    """

    def __init__(self, run_dir, model, optimizer, state: TrainState, *, extra: dict | None = None,
                 chief: bool = True, worker: str = "local"):
        self.run_dir = RunDir(run_dir)
        self.model = model
        self.chief = chief
        items = dict(model_variables=list(model.variables), state=state, **(extra or {}))
        self.checkpoint = tf.train.Checkpoint(**items, **{_OPTIMIZER_KEY: list(optimizer.variables)})
        self.weights_checkpoint = tf.train.Checkpoint(**items)
        if chief:
            root, self._scratch = self.run_dir.checkpoints, None
        else:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"emorec-ckpt-{worker}-"))
            root = self._scratch
        directory = str(root / RunDir.LATEST)
        self.latest = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=1)
        self._latest_weights = tf.train.CheckpointManager(self.weights_checkpoint, directory, max_to_keep=1)

    @property
    def best_model_path(self) -> Path:
        """``RUN_DIR/best.keras``."""
        return self.run_dir.best_model

    def _cleanup(self, manager: tf.train.CheckpointManager, path: str | None) -> str | None:
        if self._scratch is not None:
            shutil.rmtree(manager.directory, ignore_errors=True)
            return None
        return path

    def save_latest(self, step: int, optimizer_state: bool = True) -> str | None:
        """Save the resume checkpoint of ``step``; older ones are deleted.

        Args:
            step: the global step, used as the checkpoint number.
            optimizer_state: include the optimizer variables (False: weights and counters only,
                for a finished run with ``training.keep_optimizer_state: false``).

        Returns:
            The checkpoint's path prefix on the chief; None on other workers.
        """
        manager = self.latest if optimizer_state else self._latest_weights
        path = manager.save(checkpoint_number=step)
        # The two managers share the directory and each deletes only its own old files.
        _drop_other_checkpoints(Path(manager.directory), Path(path).name)
        return self._cleanup(manager, path)

    def save_best_model(self) -> Path | None:
        """Write the model's current weights as ``best.keras`` (chief only).

        Returns:
            The path of ``best.keras`` on the chief; None on other workers.
        """
        if not self.chief:
            return None
        return save_keras_atomic(self.model, self.best_model_path)

    def restore_latest(self) -> str | None:
        """Restore the newest ``latest`` checkpoint of the run directory; None if there is none.

        A checkpoint saved without optimizer variables restores the weights and counters
        alone, with a warning that the optimizer starts afresh.

        Returns:
            The restored checkpoint's path prefix, or None.

        Raises:
            AssertionError: the checkpoint does not match the model's or optimizer's variables
                (``assert_consumed``).
        """
        path = self.latest_path
        if path is None:
            return None
        names = {name for name, _ in tf.train.list_variables(path)}
        if any(name.startswith(f"{_OPTIMIZER_KEY}/") for name in names):
            self.checkpoint.restore(path).assert_consumed()
        else:
            self.weights_checkpoint.restore(path).assert_consumed()
            logger.warning(
                "%s holds no optimizer state (the run finished with training.keep_optimizer_state: false): "
                "training continues from its weights with fresh optimizer moments, which is not an exact "
                "continuation", path)
        return path

    @property
    def latest_path(self) -> str | None:
        """Path prefix of the newest ``latest`` checkpoint in the run directory."""
        return tf.train.latest_checkpoint(str(self.run_dir.latest))

    def close(self) -> None:
        """Remove a non-chief worker's scratch directory."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _drop_other_checkpoints(directory: Path, keep: str) -> None:
    """Delete every checkpoint in ``directory`` but ``keep`` (two managers write there)."""
    for file in directory.glob("ckpt-*"):
        if not file.name.startswith(f"{keep}."):
            file.unlink(missing_ok=True)


def has_checkpoint(run_dir) -> bool:
    """True if the run directory holds a ``latest`` checkpoint.

    Args:
        run_dir: the training run directory.

    Returns:
        Whether training can resume from it.
    """
    return tf.train.latest_checkpoint(str(RunDir(run_dir).latest)) is not None


def save_keras_atomic(model, path) -> Path:
    """``model.save`` to a temporary ``.keras`` name beside ``path``, then rename.

    Args:
        model: the Keras model (config and weights are saved, no optimizer).
        path: the ``.keras`` file to write (its folder is created; replaced if it exists).

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _file_mode() -> int:
    from emorec.manifest import default_file_mode

    return default_file_mode()

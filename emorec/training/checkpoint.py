"""Run-directory checkpoints: ``latest`` (to resume) and ``best`` (by dev CCC), plus ``best.keras``.

A checkpoint holds every model variable (weights, non-trainable statistics and
the Keras ``SeedGenerator`` states that drive dropout), every optimizer
variable (Adam moments, iteration count) and a :class:`TrainState` (epochs
completed, steps done inside the current epoch, global step, best dev score
and its epoch). With the data pipeline a function of ``(seed, epoch)``, those
two counters are the data position: a resumed run rebuilds epoch ``e``'s
dataset and skips the batches already trained on.

Keras 3 models are not fully tracked by ``tf.train.Checkpoint(model=...)``
(only variables the optimizer knows about are found), so the variables are
listed explicitly; the same model code gives the same list order.

Under MultiWorkerMirroredStrategy every worker takes part in a save (saving
may need collectives); only the chief writes into the run directory, the
others write to a scratch directory that is deleted at once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from emorec.manifest import atomic_write_bytes

LATEST = "latest"
BEST = "best"
BEST_MODEL_NAME = "best.keras"


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
        """Plain Python values of the counters."""
        return {
            "epoch": int(self.epoch.numpy()),
            "step_in_epoch": int(self.step_in_epoch.numpy()),
            "global_step": int(self.global_step.numpy()),
            "best_score": float(self.best_score.numpy()),
            "best_epoch": int(self.best_epoch.numpy()),
        }


class RunCheckpoints:
    """The ``latest`` and ``best`` checkpoint managers of one run directory."""

    def __init__(self, run_dir, model, optimizer, state: TrainState, *, chief: bool = True,
                 worker: str = "local", keep_latest: int = 2):
        self.run_dir = Path(run_dir)
        self.model = model
        self.chief = chief
        self.checkpoint = tf.train.Checkpoint(
            model_variables=list(model.variables),
            optimizer_variables=list(optimizer.variables),
            state=state,
        )
        if chief:
            root = self.run_dir / "checkpoints"
            self._scratch = None
        else:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"emorec-ckpt-{worker}-"))
            root = self._scratch
        self.latest = tf.train.CheckpointManager(self.checkpoint, str(root / LATEST), max_to_keep=keep_latest)
        self.best_dir = root / BEST

    @property
    def best_model_path(self) -> Path:
        """``RUN_DIR/best.keras``."""
        return self.run_dir / BEST_MODEL_NAME

    def _save(self, manager: tf.train.CheckpointManager, step: int) -> str | None:
        path = manager.save(checkpoint_number=step)
        if self._scratch is not None:
            shutil.rmtree(manager.directory, ignore_errors=True)
            return None
        return path

    def save_latest(self, step: int) -> str | None:
        """Save the resume checkpoint; returns its path on the chief."""
        return self._save(self.latest, step)

    def save_best(self, step: int) -> str | None:
        """Make the ``latest`` checkpoint saved at ``step`` the best one, and write ``best.keras``.

        The checkpoint's files are hard-linked into ``best/`` rather than
        written a second time (about 1 GB for ae_lstm with Adam's state), so
        call :meth:`save_latest` for the same step first. Only the chief
        touches files; no worker joins a save collective here.
        """
        if not self.chief:
            return None
        latest = self.latest.latest_checkpoint
        if latest is None or not latest.endswith(f"-{step}"):
            raise RuntimeError(f"save_best({step}) needs the latest checkpoint of step {step}, found {latest}")
        path = _link_checkpoint(latest, self.best_dir)
        save_keras_atomic(self.model, self.best_model_path)
        return path

    def restore_latest(self) -> str | None:
        """Restore the newest ``latest`` checkpoint of the run directory; None if there is none."""
        path = tf.train.latest_checkpoint(str(self.run_dir / "checkpoints" / LATEST))
        if path is None:
            return None
        self.checkpoint.restore(path).assert_consumed()
        return path

    @property
    def latest_path(self) -> str | None:
        """Path prefix of the newest ``latest`` checkpoint in the run directory."""
        return tf.train.latest_checkpoint(str(self.run_dir / "checkpoints" / LATEST))

    @property
    def best_path(self) -> str | None:
        """Path prefix of the ``best`` checkpoint in the run directory."""
        return tf.train.latest_checkpoint(str(self.run_dir / "checkpoints" / BEST))

    def close(self) -> None:
        """Remove a non-chief worker's scratch directory."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def has_checkpoint(run_dir) -> bool:
    """True if the run directory holds a ``latest`` checkpoint."""
    return tf.train.latest_checkpoint(str(Path(run_dir) / "checkpoints" / LATEST)) is not None


def save_keras_atomic(model, path) -> Path:
    """``model.save`` to a temporary ``.keras`` name beside ``path``, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _link_checkpoint(prefix: str, directory: Path) -> str:
    """Make the checkpoint ``prefix`` the only one in ``directory`` by hard links (copies where links fail)."""
    source = Path(prefix)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("ckpt-*"):
        old.unlink()
    for file in source.parent.glob(f"{source.name}.*"):
        try:
            os.link(file, directory / file.name)
        except OSError:
            shutil.copy2(file, directory / file.name)
    # The state file tf.train.latest_checkpoint reads (a text proto; relative to the directory).
    state = f'model_checkpoint_path: "{source.name}"\nall_model_checkpoint_paths: "{source.name}"\n'
    atomic_write_bytes(directory / "checkpoint", state.encode())
    return str(directory / source.name)

"""The training loop: one code path for one device, MirroredStrategy and MultiWorkerMirroredStrategy.

Keras' ``fit`` is not used: it fails under MultiWorkerMirroredStrategy in
Keras 3, and the CCC needs moments summed across replicas. The trainer asks
the model's task (:mod:`emorec.tasks`) for the data, the objective, the step
and the validation, runs the steps, and leaves everything around them to
callbacks (:mod:`emorec.training.callbacks`: NaN guard, progress bar,
TensorBoard, history, checkpoints).

Reproducibility (and exact resume): ``keras.utils.set_random_seed(seed)``
before the model is built; epoch ``e``'s dataset is built afresh from the
seed (shuffle order and augmentation draws are functions of it); dropout
draws come from the Keras ``SeedGenerator`` states, which are model variables
and are checkpointed. A resumed run restores weights, optimizer, seed states
and ``(epoch, step_in_epoch)``, rebuilds epoch ``e``'s dataset and skips the
batches already trained on, so on CPU it reaches the same weights as an
uninterrupted run.

Validation runs after every epoch (on every worker, the whole dev set,
outside the strategy); the best epoch is the one with the highest task score
(``dev_ccc_mean`` for the regression task). With
``training.early_stopping_patience`` the run stops after that many epochs
without a better score (:class:`~emorec.training.callbacks.EarlyStopping`).

Before anything is built, the task may complete the config from the dataset
(:meth:`emorec.tasks.base.Task.configure`: e.g. the feature sets a model
reads and their dimensions); the completed config is the one saved.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import keras
import tensorflow as tf

from emorec.errors import ConfigError
from emorec.rundir import RunDir
from emorec.training.callbacks import (
    Checkpointer,
    EarlyStopping,
    EpochLog,
    HistoryWriter,
    NaNGuard,
    ProgressBar,
    StepHook,
    TensorBoardScalars,
    TrainingDivergedError,
    read_history,
)
from emorec.training.checkpoint import RunCheckpoints, TrainState, has_checkpoint
from emorec.training.steps import StepContext
from emorec.training.strategy import is_chief, make_strategy, strategy_name, worker_id

logger = logging.getLogger(__name__)

__all__ = ["TrainResult", "Trainer", "TrainingDivergedError", "default_run_dir", "train"]


@dataclasses.dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    config: object  # the TrainConfig
    history: list[dict]
    global_step: int
    best_model: Path | None  # RUN_DIR/best.keras
    latest_checkpoint: str | None
    best_score: float | None  # the task's validation score of the best epoch
    best_epoch: int | None  # 1-based
    score_name: str = "score"
    model: object = dataclasses.field(default=None, repr=False)  # the Keras model, final weights

    @property
    def best_dev_ccc(self) -> float | None:
        """The best epoch's mean dev CCC (the regression task's score)."""
        return self.best_score if self.score_name == "dev_ccc_mean" else None


def default_run_dir(model_name: str) -> Path:
    """``runs/<model>-<YYYYmmdd-HHMMSS>`` under the current directory.

    Args:
        model_name: the registered model name.

    Returns:
        The relative path (not created), stamped with the local time.
    """
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model_name}-{stamp}"


def xla_mode(setting, spec, strategy) -> str:
    """What XLA compiles: ``training.jit_compile`` for this model and strategy.

    ``auto`` takes the model's registered choice (measured exact and faster) on
    one device and compiles nothing on several; ``true`` or ``update`` on several
    replicas is refused, since the cross-replica sums of the CCC and of the
    gradients are not compiled.

    Args:
        setting: ``training.jit_compile``: True, False, ``"update"`` or ``"auto"``.
        spec: the model's registry entry (``xla``: True, ``"update"`` or False).
        strategy: the run's ``tf.distribute`` strategy.

    Returns:
        ``"step"`` (the whole training step and the validation forward pass),
        ``"update"`` (only the optimizer's update; the gradient runs plain) or ``"off"``.

    Raises:
        ConfigError: ``jit_compile`` true or update with several replicas.
    """
    single = strategy.num_replicas_in_sync == 1 and not isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if setting == "auto":
        setting = spec.xla if single else False
    if setting is not False and not single:
        raise ConfigError(
            f"training.jit_compile: {str(setting).lower()} compiles for one device; this run has "
            f"{strategy.num_replicas_in_sync} replicas ({strategy_name(strategy)}): use jit_compile auto or false")
    return {True: "step", "update": "update"}.get(setting, "off")


def make_optimizer(config):
    """The Keras optimizer of an :class:`~emorec.config.OptimizerConfig`.

    Args:
        config: the ``optimizer`` section (``adam`` or ``rmsprop_nesterov`` and its settings).

    Returns:
        A new :class:`keras.optimizers.Adam` or :class:`~emorec.optimizers.RMSpropNesterov`.

    Raises:
        ConfigError: another optimizer name.
    """
    if config.name == "adam":
        return keras.optimizers.Adam(learning_rate=config.learning_rate, beta_1=config.beta_1,
                                     beta_2=config.beta_2, epsilon=config.epsilon)
    if config.name == "rmsprop_nesterov":
        from emorec.optimizers import RMSpropNesterov

        return RMSpropNesterov(learning_rate=config.learning_rate, rho=config.rho, momentum=config.momentum,
                               epsilon=config.epsilon, centered=config.centered)
    raise ConfigError(f"unsupported optimizer {config.name!r}")


class Trainer:
    """One training run: the model, its step, its state and its callbacks (``train`` is the entry point)."""

    def __init__(self, config, data, run_dir, strategy, *, progress: bool = True, on_step=None):
        from emorec.models import get_model_spec
        from emorec.tasks import get_task

        self.data = data
        self.run_dir = RunDir(run_dir)
        self.strategy = strategy
        self.chief = is_chief(strategy)
        self.spec = get_model_spec(config.model_name)
        self.task = get_task(self.spec.task)
        self.config = config = self.task.configure(config, data, self.spec)
        self.modalities = self.task.modalities(self.spec, config)
        self.task.check_data(data, self.spec, config)
        self.progress = progress and self.chief
        self.on_step = on_step
        self.history: list[dict] = []
        self.stop_training = False  # set by a callback (early stopping) to end the run after this epoch

    def build(self) -> None:
        """Model, optimizer, step and checkpoints, under the strategy's scope."""
        keras.utils.set_random_seed(self.config.training.seed)
        with self.strategy.scope():
            self.model = self.spec.builder(self.config.model)
            self.optimizer = make_optimizer(self.config.optimizer)
            self.optimizer.build(self.model.trainable_variables)
        names = [t.name for t in self.model.inputs]
        self.xla = xla_mode(self.config.training.jit_compile, self.spec, self.strategy)
        context = StepContext(self.model, self.optimizer, self.task.objective(self.spec, self.config.loss),
                              self.strategy, self.config.data.batch_size, names, xla=self.xla)
        self.step = self.task.make_step(self.config, context)
        self.state = TrainState()
        self.checkpoints = RunCheckpoints(self.run_dir.path, self.model, self.optimizer, self.state,
                                          extra=self.step.checkpoint_items(), chief=self.chief,
                                          worker=worker_id(self.strategy))

    def _callbacks(self) -> list:
        training = self.config.training
        callbacks = [NaNGuard()]
        if self.progress:
            callbacks.append(ProgressBar(self.task.batches_per_epoch(self.data, self.config), training.epochs))
        if self.chief:
            callbacks += [TensorBoardScalars(), HistoryWriter()]
        callbacks += [EpochLog(), Checkpointer(training.checkpoints, training.checkpoint_every,
                                               training.keep_optimizer_state)]
        if training.early_stopping_patience is not None:
            callbacks.append(EarlyStopping(training.early_stopping_patience))
        if self.on_step is not None:
            callbacks.append(StepHook(self.on_step))
        return callbacks

    def run(self, resume: bool) -> TrainResult:
        """Train (from the latest checkpoint when ``resume``); returns the result."""
        state, training = self.state, self.config.training
        restored = self.checkpoints.restore_latest() if resume else None
        if restored:
            logger.info("resumed from %s at step %d (epoch %d, batch %d of it)", restored,
                        int(state.global_step.numpy()), int(state.epoch.numpy()) + 1,
                        int(state.step_in_epoch.numpy()))
        self.history = read_history(self.run_dir, int(state.epoch.numpy())) if restored else []
        dev = self.task.dev_dataset(self.data, self.config, self.modalities)
        self.validating = dev is not None
        validate = self.task.validator(self.model, self.step, dev) if dev is not None else None
        callbacks = self._callbacks()
        for callback in callbacks:
            callback.on_train_begin(self)
        finished = False
        try:
            last = training.epochs if training.epochs is not None else sys.maxsize
            for epoch in range(int(state.epoch.numpy()), last):
                if training.max_steps and int(state.global_step.numpy()) >= training.max_steps:
                    break
                row, complete = self._run_epoch(epoch, callbacks)
                self._end_epoch(epoch, row, complete, validate, callbacks)
                if self.stop_training:
                    break
            finished = True
        finally:
            for callback in callbacks:
                if finished or not isinstance(callback, Checkpointer):
                    callback.on_train_end(self, finished)
            self.checkpoints.close()
        best = float(state.best_score.numpy())
        best_model = self.run_dir.best_model if self.run_dir.best_model.is_file() else None
        return TrainResult(
            run_dir=self.run_dir.path, config=self.config, history=self.history,
            global_step=int(state.global_step.numpy()), best_model=best_model,
            latest_checkpoint=self.checkpoints.latest_path,
            best_score=None if math.isnan(best) else best, best_epoch=int(state.best_epoch.numpy()) or None,
            score_name=self.task.score_name, model=self.model,
        )

    def _run_epoch(self, epoch: int, callbacks) -> tuple[dict, bool]:
        """Train one epoch (from its data position); returns the history row and whether the data ran out."""
        state, max_steps = self.state, self.config.training.max_steps
        skip = int(state.step_in_epoch.numpy())
        dataset = self.task.train_dataset(self.data, self.config, self.modalities, epoch, skip)
        dataset = self.strategy.experimental_distribute_dataset(dataset)
        for callback in callbacks:
            callback.on_epoch_begin(self, epoch, skip)
        sums: dict[str, float] = {}
        count = 0
        started = time.time()
        complete = True
        for batch in dataset:
            terms = {k: float(v) for k, v in self.step(batch).items()}
            state.global_step.assign_add(1)
            state.step_in_epoch.assign_add(1)
            count += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            info = {"epoch": epoch, "step_in_epoch": int(state.step_in_epoch.numpy()),
                    "global_step": int(state.global_step.numpy()), "terms": terms}
            for callback in callbacks:
                callback.on_step_end(self, info)
            if max_steps and info["global_step"] >= max_steps:
                complete = False
                break
        if count == 0 and skip == 0:
            windows = sum(s.windows for s in self.data.shards("train"))
            raise ConfigError(
                f"{self.data.path}: no training batch in epoch {epoch + 1}: the train partition holds "
                f"{windows} stored windows, fewer than a batch of {self.config.data.batch_size}; "
                f"pass --batch-size {max(1, windows)} or fewer"
            )
        row = {"epoch": epoch + 1, "global_step": int(state.global_step.numpy()), "steps": count,
               "seconds": round(time.time() - started, 3)}
        row.update({f"train_{k}": v / max(count, 1) for k, v in sorted(sums.items())})
        return row, complete

    def _end_epoch(self, epoch: int, row: dict, complete: bool, validate, callbacks) -> None:
        """Validate, track the best epoch, then the epoch-end callbacks."""
        state = self.state
        if validate is not None:
            row.update(validate())
        score = row.get(self.task.score_name, float("nan"))
        best = float(state.best_score.numpy())
        # Without validation the newest epoch stands in for the best one.
        improved = (validate is None) or (math.isfinite(score) and (math.isnan(best) or score > best))
        if improved:
            state.best_score.assign(score)
            state.best_epoch.assign(epoch + 1)
        row["best_epoch"] = int(state.best_epoch.numpy())
        if complete:
            state.epoch.assign(epoch + 1)
            state.step_in_epoch.assign(0)
        self.history.append(row)
        for callback in callbacks:
            callback.on_epoch_end(self, epoch, row, improved)


def train(
    config,
    data,
    run_dir,
    strategy: tf.distribute.Strategy | str | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[dict], None] | None = None,
    run_info: Mapping | None = None,
) -> TrainResult:
    """Train ``config`` on ``data`` into ``run_dir``.

    Args:
        config: a :class:`~emorec.config.TrainConfig`, or a mapping / YAML path that resolves to one.
        data: the dataset (a :class:`~emorec.dataset.DatasetHandle` or its directory).
        run_dir: the run directory.
        strategy: a tf.distribute strategy, a name (``auto``, ``one``, ``mirrored``,
            ``multiworker``) or None for ``config.training.strategy``.
        resume: continue from ``RUN_DIR/checkpoints/latest`` (from scratch if there is none);
            without it a run directory that already holds a checkpoint is refused.
        progress: show progress bars.
        on_step: called after every step with ``epoch`` (0-based), ``step_in_epoch``,
            ``global_step`` and the step's loss ``terms``.
        run_info: extra entries for the ``run:`` record of ``config.yaml``.

    Returns:
        The :class:`TrainResult`.

    Raises:
        TrainingDivergedError: a NaN/inf loss.
        ConfigError, DatasetError: unusable settings or data.
    """
    from emorec.config import resolve_config
    from emorec.dataset import open_dataset

    config = resolve_config(config)
    data = open_dataset(data)
    if strategy is None or isinstance(strategy, str):
        strategy = make_strategy(strategy or config.training.strategy)
    run_dir = RunDir(run_dir)
    if not resume and has_checkpoint(run_dir.path):
        raise ConfigError(f"{run_dir.path}: already holds a training run; pass --resume or choose another --out")
    trainer = Trainer(config, data, run_dir.path, strategy, progress=progress, on_step=on_step)
    config = trainer.config  # completed from the dataset by the task
    if trainer.chief:
        run_dir.path.mkdir(parents=True, exist_ok=True)
        info = {
            "data_dir": str(data.path.resolve()),
            "strategy": strategy_name(strategy),
            "num_replicas": int(strategy.num_replicas_in_sync),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "resumed": bool(resume and has_checkpoint(run_dir.path)),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        }
        info.update(run_info or {})
        config.save(run_dir.path, info)
    trainer.build()
    return trainer.run(resume)

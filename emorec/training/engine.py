"""The custom training loop: one code path for one device, MirroredStrategy and MultiWorkerMirroredStrategy.

Keras' ``fit`` is not used: it fails under MultiWorkerMirroredStrategy in
Keras 3, and the CCC needs moments summed across replicas. Per replica the
step computes the objective with :func:`emorec.losses.global_moments`, so its
value is the global-batch loss and its gradient that replica's share;
regularisation (``model.losses``, a function of the replicated weights, the
same on every replica) is divided by the number of replicas. Keras 3's
TensorFlow optimizer all-reduces the gradients with SUM inside
``apply_gradients`` (``TFOptimizer._all_reduce_sum_gradients``), so the update
uses exactly the single-device gradient of ``loss + Σ model.losses``.

Reproducibility (and exact resume): ``keras.utils.set_random_seed(seed)``
before the model is built; epoch ``e``'s dataset is built afresh from the seed
``epoch_seed(seed, e)`` (shuffle order and augmentation draws are functions of
it); dropout draws come from the Keras ``SeedGenerator`` states, which are
model variables and are checkpointed. A resumed run restores weights,
optimizer, seed states and ``(epoch, step_in_epoch)``, rebuilds epoch ``e``'s
dataset and skips the batches already trained on, so on CPU it reaches the
same weights as an uninterrupted run.

Validation runs on the dev windows after every epoch (on every worker, the
whole dev set, outside the strategy), stitches the per-frame predictions of
each recording back together (averaging where stored windows overlap) and
scores them with :func:`emorec.metrics.evaluate_recordings` (AVEC CCC on the
concatenation of the dev recordings). The best epoch is the one with the
highest mean of the arousal and valence CCCs.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from emorec.config import resolve_config, save_config, window_frames
from emorec.errors import ConfigError, EmorecError
from emorec.manifest import atomic_write_bytes, read_manifest
from emorec.training.checkpoint import RunCheckpoints, has_checkpoint
from emorec.training.strategy import is_chief, make_strategy, strategy_name, worker_id

HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
DIMENSIONS = ("arousal", "valence")


class TrainingDivergedError(EmorecError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    config: dict
    history: list[dict]
    global_step: int
    best_model: Path | None  # RUN_DIR/best.keras
    best_checkpoint: str | None
    latest_checkpoint: str | None
    best_dev_ccc: float | None  # mean of the arousal and valence dev CCCs of the best epoch
    best_epoch: int | None  # 1-based
    model: object = dataclasses.field(default=None, repr=False)  # the Keras model, final weights


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of epoch ``epoch`` (0-based): a fixed function of the run seed and the epoch."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 1) % (2**31 - 1)


def default_run_dir(model_name: str) -> Path:
    """``runs/<model>-<YYYYmmdd-HHMMSS>`` under the current directory."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model_name}-{stamp}"


def _input_names(model) -> list[str]:
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, Mapping):
        return list(struct)
    return [t.name for t in model.inputs]


def _numeric(batch: dict) -> dict:
    # String tensors (recording ids) cannot go to accelerators; the step does not need them.
    return {k: v for k, v in batch.items() if v.dtype != tf.string}


def _objective(spec, loss_config: Mapping) -> Callable:
    from emorec.losses import ccc_objective

    objective = spec.objective or ccc_objective
    # `loss:` settings of the YAML are keyword arguments of the model's objective.
    return functools.partial(objective, **loss_config) if loss_config else objective


def _make_optimizer(config: Mapping):
    opt = config["optimizer"]
    if opt["name"] == "adam":
        return keras.optimizers.Adam(learning_rate=float(opt["learning_rate"]))
    raise ConfigError(f"unsupported optimizer {opt['name']!r}")


def _stitch(per_recording: dict) -> dict:
    out = {}
    for rid, parts in per_recording.items():
        frames = np.concatenate([p[0] for p in parts])
        length = int(frames.max()) + 1
        pred = np.zeros((length, 2))
        gold = np.zeros((length, 2))
        count = np.zeros(length)
        np.add.at(pred, frames, np.concatenate([p[1] for p in parts]))
        np.add.at(gold, frames, np.concatenate([p[2] for p in parts]))
        np.add.at(count, frames, 1.0)
        seen = count > 0
        out[rid] = (gold[seen] / count[seen, None], pred[seen] / count[seen, None])
    return out


def replica_update(model, forward_model, inputs, batch, objective, optimizer, replicas: int):
    """One replica's training update; returns (the logged terms as float32, the forward outputs).

    ``forward_model`` runs ``inputs`` (``model`` itself, or a twin sharing its
    weights); the objective's moments are summed across replicas, and ``model``'s
    weights get the gradient of the objective plus its share of the regularization.
    """
    from emorec.losses import global_moments

    with tf.GradientTape() as tape:
        outputs = forward_model(inputs, training=True)
        loss, terms = objective(batch, outputs, reduce_fn=global_moments)
        reg = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
        # Every replica holds the same weights, so each adds its 1/replicas share of
        # the penalty and the SUM of the replica gradients counts it once.
        scaled = loss + reg / replicas
    grads = tape.gradient(scaled, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    out = {k: tf.cast(v, tf.float32) for k, v in terms.items()}
    out["objective"] = tf.cast(loss, tf.float32)
    out["regularization"] = tf.cast(reg, tf.float32)
    out["loss"] = out["objective"] + out["regularization"]
    return out, outputs


def make_forward(model):
    """A traced ``inputs -> emotion`` inference function (one per model; shapes may vary)."""

    @tf.function(reduce_retracing=True)
    def forward(inputs):
        return model(inputs, training=False)["emotion"]

    return forward


def predict_windows(model, dataset, input_names=None, forward=None) -> dict:
    """Run ``model`` over a window dataset; ``{recording_id: (gold (N, 2), pred (N, 2))}`` per recording.

    Frames are placed by ``start_frame``; a frame covered by several
    (overlapping) windows gets the mean of their predictions. Padding
    (``mask`` 0) is skipped.
    """
    input_names = input_names or _input_names(model)
    forward = forward or make_forward(model)
    parts: dict[str, list] = {}
    for batch in dataset:
        pred = forward({k: batch[k] for k in input_names}).numpy()
        mask = batch["mask"].numpy() > 0
        labels = batch["labels"].numpy()
        for row, (rid, start) in enumerate(zip(batch["recording_id"].numpy(), batch["start_frame"].numpy())):
            keep = mask[row]
            if not keep.any():
                continue
            frames = start + np.nonzero(keep)[0]
            parts.setdefault(rid.decode(), []).append((frames, pred[row][keep], labels[row][keep]))
    return _stitch(parts)


def validation_metrics(per_recording: dict) -> dict:
    """Flat dev metrics (``dev_ccc_arousal``, ``dev_ccc_valence``, ``dev_ccc_mean``, per-recording means)."""
    from emorec.metrics import evaluate_recordings

    result = evaluate_recordings(per_recording, names=DIMENSIONS)
    out = {}
    for name in DIMENSIONS:
        out[f"dev_ccc_{name}"] = result[name]["ccc"]
        out[f"dev_ccc_{name}_per_recording_mean"] = result[name]["ccc_per_recording_mean"]
    out["dev_ccc_mean"] = float(np.mean([out[f"dev_ccc_{n}"] for n in DIMENSIONS]))
    return out


def _scalar_metadata() -> bytes:
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR,
    ).SerializeToString()


def summary_scalar(tag: str, value: float, step: int) -> None:
    """``tf.summary.scalar`` without needing the tensorboard package (same event format)."""
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=_scalar_metadata())


def _write_history(run_dir: Path, history: list[dict]) -> None:
    atomic_write_bytes(run_dir / HISTORY_JSON, (json.dumps(history, indent=2) + "\n").encode())
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(run_dir / HISTORY_CSV, buffer.getvalue().encode())


def _read_history(run_dir: Path, epochs_completed: int) -> list[dict]:
    path = run_dir / HISTORY_JSON
    if not path.is_file():
        return []
    # Entries past the restored checkpoint belong to work that is redone.
    return [row for row in json.loads(path.read_text()) if row["epoch"] <= epochs_completed]


def _train_batches(data_dir, manifest, config, modalities) -> int | None:
    """Batches in one pass over the training windows, when it can be read from the manifest."""
    data, training = config["data"], config["training"]
    if training["steps_per_epoch"]:
        return int(training["steps_per_epoch"])
    if data["stream_ordered"] or window_frames(config) != manifest.window_frames:
        return None
    windows = sum(s.windows for s in manifest.shards_for("train"))
    return windows // int(data["batch_size"])


class _Trainer:
    """State shared by the pieces of one run (kept small; ``train`` is the public entry point)."""

    def __init__(self, config, data_dir, run_dir, strategy, progress, on_step):
        from emorec.models.registry import get_model_spec

        self.config = config
        self.data_dir = Path(data_dir)
        self.run_dir = Path(run_dir)
        self.strategy = strategy
        self.chief = is_chief(strategy)
        self.progress = progress and self.chief
        self.on_step = on_step
        self.spec = get_model_spec(config["model"]["name"])
        self.modalities = list(config["data"]["modalities"] or self.spec.modalities)
        self.manifest = read_manifest(self.data_dir)
        missing = set(self.modalities) - set(self.manifest.modalities)
        if missing:
            raise ConfigError(
                f"{self.data_dir}: model {self.spec.name!r} needs modalities {sorted(missing)} "
                f"that the dataset does not hold (it has {list(self.manifest.modalities)})"
            )
        self.frames = window_frames(config)
        self.seed = int(config["training"]["seed"])
        self.batch_size = int(config["data"]["batch_size"])

    # --- data ---------------------------------------------------------------------------

    def train_dataset(self, epoch: int, skip: int) -> tf.data.Dataset:
        from emorec.data import make_dataset

        data, training = self.config["data"], self.config["training"]
        steps = training["steps_per_epoch"]
        ds = make_dataset(
            self.data_dir, "train", batch_size=self.batch_size, modalities=self.modalities,
            training=True, augment=bool(data["augment"]), window_frames=self.frames,
            stream_ordered=bool(data["stream_ordered"]), shuffle_buffer=int(data["shuffle_buffer"]),
            seed=epoch_seed(self.seed, epoch), repeat=bool(steps), drop_remainder=True,
        )
        if steps:
            ds = ds.take(steps)
        if skip:
            ds = ds.skip(skip)
        ds = ds.map(_numeric)
        options = tf.data.Options()
        # Every worker reads the same (seeded) stream and keeps its slice of each global batch,
        # so the global batches are those of a single-device run.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    def dev_dataset(self) -> tf.data.Dataset | None:
        from emorec.data import make_dataset, partition_has_labels

        if not self.config["training"]["validate"] or not self.manifest.shards_for("dev"):
            return None
        if not partition_has_labels(self.data_dir, "dev"):
            return None
        return make_dataset(
            self.data_dir, "dev", batch_size=self.batch_size, modalities=self.modalities,
            training=False, window_frames=self.frames,
            stream_ordered=bool(self.config["data"]["stream_ordered"]), drop_remainder=False,
        )

    # --- model and step -----------------------------------------------------------------

    def build(self) -> None:
        keras.utils.set_random_seed(self.seed)
        with self.strategy.scope():
            self.model = self.spec.builder(dict(self.config["model"]))
            self.optimizer = _make_optimizer(self.config)
            self.optimizer.build(self.model.trainable_variables)
        self.input_names = _input_names(self.model)
        self.objective = _objective(self.spec, self.config["loss"])
        self.train_step = self._make_train_step()
        self.forward = make_forward(self.model)
        self.stateful = None
        if self.config["training"]["stateful"]:
            # Stateful training (emorec.training.stateful) swaps in its own step, which carries
            # each row's LSTM state across batches; the state variable joins the checkpoint.
            from emorec.training.stateful import StatefulStep, check_stateful

            check_stateful(self.config, self.model, self.strategy)
            self.stateful = StatefulStep(self.model, self.optimizer, self.objective, self.strategy,
                                         self.batch_size)
            self.train_step = self.stateful

    def _make_train_step(self):
        model, optimizer, objective, strategy = self.model, self.optimizer, self.objective, self.strategy
        replicas = strategy.num_replicas_in_sync
        input_names = self.input_names

        def replica_step(batch):
            inputs = {k: batch[k] for k in input_names}
            out, _ = replica_update(model, model, inputs, batch, objective, optimizer, replicas)
            return out

        @tf.function
        def train_step(batch):
            per_replica = strategy.run(replica_step, args=(batch,))
            # Replicas agree on global terms; MEAN also averages any replica-local term.
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                    for k, v in per_replica.items()}

        return train_step

    # --- the loop -----------------------------------------------------------------------

    def run(self, resume: bool) -> TrainResult:
        cfg = self.config["training"]
        state_ckpt = self._checkpoints()
        state = self.state
        restored = state_ckpt.restore_latest() if resume else None
        if restored and self.progress:
            print(f"resumed from {restored}: {state.as_dict()}", file=sys.stderr)
        history = _read_history(self.run_dir, int(state.epoch.numpy())) if restored else []
        writer = tf.summary.create_file_writer(str(self.run_dir / "tb")) if self.chief else None
        dev = self.dev_dataset()
        per_epoch = _train_batches(self.data_dir, self.manifest, self.config, self.modalities)
        max_steps = cfg["max_steps"]
        try:
            last = cfg["epochs"] if cfg["epochs"] is not None else sys.maxsize
            for epoch in range(int(state.epoch.numpy()), last):
                if max_steps and int(state.global_step.numpy()) >= max_steps:
                    break
                row, complete = self._run_epoch(epoch, per_epoch, max_steps, state_ckpt, writer)
                self._end_epoch(epoch, row, dev, history, state_ckpt, writer, complete)
        finally:
            if writer is not None:
                writer.close()
            state_ckpt.close()
        best = float(state.best_score.numpy())
        best_model = state_ckpt.best_model_path if state_ckpt.best_model_path.is_file() else None
        return TrainResult(
            run_dir=self.run_dir, config=self.config, history=history,
            global_step=int(state.global_step.numpy()), best_model=best_model,
            best_checkpoint=state_ckpt.best_path, latest_checkpoint=state_ckpt.latest_path,
            best_dev_ccc=None if math.isnan(best) else best,
            best_epoch=int(state.best_epoch.numpy()) or None, model=self.model,
        )

    def _checkpoints(self) -> RunCheckpoints:
        from emorec.training.checkpoint import TrainState

        self.state = TrainState()
        if self.stateful is not None:
            self.state.carried_states = self.stateful.variable
        return RunCheckpoints(self.run_dir, self.model, self.optimizer, self.state,
                              chief=self.chief, worker=worker_id(self.strategy))

    def _run_epoch(self, epoch, per_epoch, max_steps, ckpt, writer) -> tuple[dict, bool]:
        """Train one epoch (from its data position); returns the history row and whether the data ran out."""
        state = self.state
        skip = int(state.step_in_epoch.numpy())
        every = self.config["training"]["checkpoint_every"]
        dataset = self.strategy.experimental_distribute_dataset(self.train_dataset(epoch, skip))
        total = self.config["training"]["epochs"] or "?"
        bar = tqdm(total=per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{total}",
                   disable=not self.progress, leave=True, dynamic_ncols=True)
        sums: dict[str, float] = {}
        count = 0
        started = time.time()
        for batch in dataset:
            terms = {k: float(v) for k, v in self.train_step(batch).items()}
            step = int(state.global_step.numpy()) + 1
            if not all(math.isfinite(v) for v in terms.values()):
                bar.close()
                bad = ", ".join(f"{k}={v}" for k, v in terms.items() if not math.isfinite(v))
                raise TrainingDivergedError(
                    f"{self.run_dir}: non-finite loss at step {step} (epoch {epoch + 1}, batch "
                    f"{skip + count + 1}): {bad}; training stopped, last good checkpoint: "
                    f"{ckpt.latest_path or 'none'}"
                )
            state.global_step.assign(step)
            state.step_in_epoch.assign(state.step_in_epoch + 1)
            count += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            if writer is not None:
                with writer.as_default():
                    for k, v in terms.items():
                        summary_scalar(f"train_step/{k}", v, step)
            bar.update(1)
            bar.set_postfix(_postfix(sums, count))
            if every and step % every == 0:
                ckpt.save_latest(step)
            if self.on_step is not None:
                self.on_step({"epoch": epoch, "step_in_epoch": int(state.step_in_epoch.numpy()),
                              "global_step": step, "terms": terms})
            if max_steps and step >= max_steps:
                complete = False
                break
        else:
            complete = True
        bar.close()
        if count == 0 and skip == 0:
            raise ConfigError(
                f"{self.data_dir}: no training batch in epoch {epoch + 1} (fewer training windows "
                f"than batch_size={self.batch_size}?)"
            )
        row = {"epoch": epoch + 1, "global_step": int(state.global_step.numpy()), "steps": count,
               "seconds": round(time.time() - started, 3)}
        row.update({f"train_{k}": v / max(count, 1) for k, v in sorted(sums.items())})
        return row, complete

    def _end_epoch(self, epoch, row, dev, history, ckpt, writer, complete) -> None:
        """Validate, record, and save the best and latest checkpoints."""
        state = self.state
        if dev is not None:
            if self.stateful is not None:
                from emorec.training.stateful import predict_stream

                # Evaluated as trained: the state runs through each whole dev recording.
                predictions = predict_stream(self.model, dev)
            else:
                predictions = predict_windows(self.model, dev, self.input_names, self.forward)
            row.update(validation_metrics(predictions))
        score = row.get("dev_ccc_mean", float("nan"))
        best = float(state.best_score.numpy())
        # Without validation the newest epoch stands in for the best one.
        improved = (dev is None) or (math.isfinite(score) and (math.isnan(best) or score > best))
        if improved:
            state.best_score.assign(score)
            state.best_epoch.assign(epoch + 1)
        row["best_epoch"] = int(state.best_epoch.numpy())
        history.append(row)
        if complete:
            state.epoch.assign(epoch + 1)
            state.step_in_epoch.assign(0)
        step = int(state.global_step.numpy())
        if writer is not None:
            with writer.as_default():
                for k, v in row.items():
                    if k.startswith(("train_", "dev_")) and isinstance(v, float) and math.isfinite(v):
                        summary_scalar(f"epoch/{k}", v, step)
            writer.flush()
        if self.chief:
            _write_history(self.run_dir, history)
        ckpt.save_latest(step)
        if improved:
            ckpt.save_best(step)
        if self.progress:
            shown = {k: round(v, 4) for k, v in row.items() if k.startswith("dev_ccc") and "per_rec" not in k}
            print(f"epoch {epoch + 1}: loss {row.get('train_loss', float('nan')):.4f} {shown}",
                  file=sys.stderr)


def _postfix(sums: dict, count: int) -> dict:
    shown = {"loss": f"{sums['loss'] / count:.4f}"}
    for name in DIMENSIONS:
        key = f"ccc_{name}"
        if key in sums:
            shown[name[:3]] = f"{sums[key] / count:.3f}"
    return shown


def train(
    config: dict,
    data_dir,
    run_dir,
    strategy: tf.distribute.Strategy | str | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[dict], None] | None = None,
    run_info: Mapping | None = None,
) -> TrainResult:
    """Train ``config`` (a config dict, see :mod:`emorec.config`; defaults filled in) on ``data_dir`` into ``run_dir``.

    ``strategy``: a tf.distribute strategy, a name (``auto``, ``one``,
    ``mirrored``, ``multiworker``) or None for ``config.training.strategy``.
    ``resume`` continues from ``RUN_DIR/checkpoints/latest`` (from scratch if
    there is none); without it a run directory that already holds a checkpoint
    is refused. ``on_step(info)`` is called after every step with ``epoch``
    (0-based), ``step_in_epoch``, ``global_step`` and the step's loss ``terms``. Raises :class:`TrainingDivergedError` on a
    NaN/inf loss.
    """
    config = resolve_config(config)  # fills defaults and validates; resolved configs pass unchanged
    if strategy is None or isinstance(strategy, str):
        strategy = make_strategy(strategy or config["training"]["strategy"])
    run_dir = Path(run_dir)
    if not (Path(data_dir) / "manifest.json").is_file():
        raise ConfigError(f"{data_dir}: no manifest.json here; build a dataset with `python -m tfrecords_tools.build`")
    if not resume and has_checkpoint(run_dir):
        raise ConfigError(f"{run_dir}: already holds a training run; pass --resume or choose another --out")
    trainer = _Trainer(config, data_dir, run_dir, strategy, progress, on_step)
    if trainer.chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        info = {
            "data_dir": str(Path(data_dir).resolve()),
            "strategy": strategy_name(strategy),
            "num_replicas": int(strategy.num_replicas_in_sync),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "resumed": bool(resume and has_checkpoint(run_dir)),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        }
        info.update(run_info or {})
        save_config(config, run_dir, info)
    trainer.build()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return trainer.run(resume)

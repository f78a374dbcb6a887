"""Continuous arousal and valence per 40 ms frame (Tzirakis et al., Nguyen et al.): the regression task.

- Records: windows of frames (:mod:`emorec.schema`), read by :mod:`emorec.data`.
- Objective: the model's own (``ae_lstm``'s joint loss) or the CCC loss
  (:func:`emorec.losses.ccc_objective`), exact under tf.distribute.
- Step: independent windows (:class:`~emorec.training.steps.WindowedStep`)
  or, with ``training.stateful``, windows carrying the LSTM state
  (:class:`~emorec.training.stateful.StatefulStep`).
- Validation: the dev recordings' frames put back on their grid, AVEC CCC on
  their concatenation; the best epoch has the highest mean of the arousal and
  valence CCCs (``dev_ccc_mean``).
- Evaluation protocol: :mod:`emorec.evaluate` (AVEC 2016, ``evaluate/avec2016.yaml``).
- Export: :mod:`emorec.export` (``serving_default`` and ``step`` signatures).
"""

from __future__ import annotations

import functools

import numpy as np

from emorec.errors import ConfigError
from emorec.tasks.base import Task

DIMENSIONS = ("arousal", "valence")


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of epoch ``epoch`` (0-based): a fixed function of the run seed and the epoch."""
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 1) % (2**31 - 1)


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


class FrameRegressionTask(Task):
    """See the module docstring."""

    name = "frame_regression"
    score_name = "dev_ccc_mean"

    @property
    def loss_config_class(self):
        """The plain CCC objective's (empty) ``loss:`` section."""
        from emorec.losses import CCCLossConfig

        return CCCLossConfig

    # -- data --------------------------------------------------------------------------------

    def check_data(self, data, spec, config) -> None:
        """The model's modalities must be stored; the training window must fit the stored one."""
        data.require_modalities(self.modalities(spec, config), f"model {spec.name}")
        if not data.has_partition("train"):
            raise ConfigError(f"{data.path}: dataset has no recordings in partition 'train'")

    def train_read(self, config, modalities, epoch: int):
        """The :class:`~emorec.data.ReadSpec` of epoch ``epoch``'s training batches."""
        from emorec.data import ReadSpec

        data, training = config.data, config.training
        return ReadSpec(
            batch_size=data.batch_size, modalities=tuple(modalities), training=True, augment=data.augment,
            window_frames=data.window_frames, stream_ordered=data.stream_ordered,
            shuffle_buffer=data.shuffle_buffer, seed=epoch_seed(training.seed, epoch),
            repeat=bool(training.steps_per_epoch), drop_remainder=True,
        )

    def train_dataset(self, data, config, modalities, epoch: int, skip: int):
        """Epoch ``epoch``'s training batches (every worker reads the same seeded stream)."""
        import tensorflow as tf

        from emorec.data import make_dataset
        from emorec.training.replica import numeric

        ds = make_dataset(data, "train", self.train_read(config, modalities, epoch))
        steps = config.training.steps_per_epoch
        if steps:
            ds = ds.take(steps)
        if skip:
            ds = ds.skip(skip)
        ds = ds.map(numeric)
        options = tf.data.Options()
        # Every worker reads the same (seeded) stream and keeps its slice of each global batch,
        # so the global batches are those of a single-device run.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    def batches_per_epoch(self, data, config) -> int | None:
        """``steps_per_epoch``, or one pass over the stored windows when that can be read from the manifest."""
        if config.training.steps_per_epoch:
            return config.training.steps_per_epoch
        if config.data.stream_ordered or config.data.window_frames != data.window_frames:
            return None
        windows = sum(s.windows for s in data.shards("train"))
        return windows // config.data.batch_size

    def dev_dataset(self, data, config, modalities):
        """Dev windows as trained (stream-ordered for stateful runs); None without a labelled dev partition."""
        from emorec.data import ReadSpec, make_dataset

        if not config.training.validate or not data.has_partition("dev") or not data.has_labels("dev"):
            return None
        spec = ReadSpec(batch_size=config.data.batch_size, modalities=tuple(modalities),
                        window_frames=config.data.window_frames,
                        stream_ordered=config.data.stream_ordered, drop_remainder=False)
        return make_dataset(data, "dev", spec)

    # -- training ----------------------------------------------------------------------------

    def objective(self, spec, loss_config):
        """The model's objective (or the CCC loss) with the run's ``loss:`` settings."""
        from emorec.losses import ccc_objective

        objective = spec.objective or ccc_objective
        settings = loss_config.to_dict()
        return functools.partial(objective, **settings) if settings else objective

    def make_step(self, config, context):
        """Windowed, or stateful with ``training.stateful``."""
        if config.training.stateful:
            from emorec.training.stateful import StatefulStep, check_stateful

            check_stateful(config, context.model, context.strategy)
            return StatefulStep(context)
        from emorec.training.steps import WindowedStep

        return WindowedStep(context)

    def validator(self, model, step, dev):
        """A callable giving the dev CCCs of the current weights, evaluated as trained."""
        from emorec.training.predictions import make_forward, predict_stream, predict_windows

        if step.stream_validation:
            return lambda: validation_metrics(predict_stream(model, dev))
        forward = make_forward(model)  # traced once, reused every epoch
        return lambda: validation_metrics(predict_windows(model, dev, forward=forward))

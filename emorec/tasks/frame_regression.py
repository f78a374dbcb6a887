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

from emorec.errors import ConfigError, DatasetError
from emorec.tasks.base import Task

DIMENSIONS = ("arousal", "valence")


def validation_metrics(per_recording: dict) -> dict:
    """Flat dev metrics (``dev_ccc_arousal``, ``dev_ccc_valence``, ``dev_ccc_mean``, per-recording means).

    Args:
        per_recording: gold and predictions per recording, as
            :func:`emorec.metrics.evaluate_recordings` takes them.

    Returns:
        ``{"dev_ccc_<dim>", "dev_ccc_<dim>_per_recording_mean"}`` for arousal and valence, and
        ``dev_ccc_mean`` over both (CCC over the concatenated recordings).

    Raises:
        ConfigError: no recordings.
        AlignmentError: gold and predictions that do not pair up, or not two columns.
        LabelError: NaN or inf in the gold or the predictions.

    >>> gold = np.array([[0.0, 0.1], [0.5, 0.2], [1.0, 0.4]])
    >>> m = validation_metrics({"r1": (gold, gold)})  # perfect: (N - 1) / N, the AVEC convention
    >>> round(m["dev_ccc_mean"], 6), round(m["dev_ccc_valence_per_recording_mean"], 6)
    (0.666667, 0.666667)
    """
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
        """The model's modalities are stored, train is labelled, and the stored windows give the training ones."""
        data.require_modalities(self.modalities(spec, config), f"model {spec.name}")
        data.check_labels("train", required=True)
        data.check_labels("dev")
        self.check_windows(data, spec, config)

    def check_windows(self, data, spec, config) -> None:
        """The stored windows give the training windows (the same, or split evenly), unless stream-ordered.

        Raises:
            ConfigError: naming the dataset, both window settings and the build that would fit.
        """
        cfg = config.data
        if cfg.stream_ordered:
            return  # rows are re-cut from each recording's stitched frames, whatever was stored
        from emorec.data import count_examples

        try:
            count_examples(data, "train", cfg.window_frames, cfg.hop_frames)
        except DatasetError as exc:
            raise ConfigError(
                f"{exc}; model {spec.name} trains on {cfg.window_frames}-frame windows every {cfg.hop_frames} "
                f"frames (data.window {cfg.window} s, data.hop {cfg.hop} s): rebuild the dataset with "
                f"`emorec build ... --window {cfg.window}` (windows no shorter, no --hop), or change data.window"
            ) from None

    def read_spec(self, config, modalities, **settings):
        """The :class:`~emorec.data.ReadSpec` of this config (``settings`` override it)."""
        from emorec.data import ReadSpec

        data = config.data
        values = dict(batch_size=data.batch_size, modalities=tuple(modalities), augment=data.augment,
                      window_frames=data.window_frames, hop_frames=data.hop_frames, stream_ordered=data.stream_ordered,
                      target=data.target, audio_norm=data.audio_norm)
        values.update(settings)
        return ReadSpec(**values)

    def train_dataset(self, data, config, modalities, epoch: int, skip: int):
        """Epoch ``epoch``'s training batches, the first ``skip`` left out (every worker reads the same stream)."""
        import tensorflow as tf

        from emorec.data import make_dataset
        from emorec.training.replica import numeric

        spec = self.read_spec(config, modalities, training=True, seed=config.training.seed, epoch=epoch,
                              steps=config.training.steps_per_epoch, skip=skip, drop_remainder=True)
        ds = make_dataset(data, "train", spec).map(numeric)
        options = tf.data.Options()
        # Every worker reads the same (seeded) stream and keeps its slice of each global batch,
        # so the global batches are those of a single-device run.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    def batches_per_epoch(self, data, config) -> int | None:
        """``steps_per_epoch``, or one pass over the training examples when that can be counted."""
        from emorec.data import count_examples

        if config.training.steps_per_epoch:
            return config.training.steps_per_epoch
        if config.data.stream_ordered:
            return None
        return count_examples(data, "train", config.data.window_frames, config.data.hop_frames) // config.data.batch_size

    def dev_dataset(self, data, config, modalities):
        """Dev as trained: windows (stream-ordered for stateful runs), or whole recordings for sliding windows."""
        from emorec.data import make_dataset

        if not config.training.validate or not data.has_partition("dev") or not data.has_labels("dev"):
            return None
        if config.data.target == "last":
            return DevRecordings(data, tuple(modalities), config.data.audio_norm, config.data.window_frames,
                                 config.data.batch_size)
        return make_dataset(data, "dev", self.read_spec(config, modalities, drop_remainder=False))

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
        if isinstance(dev, DevRecordings):
            return lambda: validation_metrics(dev.predict(model))
        forward = make_forward(model, step.jit_compile)  # traced once, reused every epoch
        return lambda: validation_metrics(predict_windows(model, dev, forward=forward))


class DevRecordings:
    """Dev recordings read whole, predicted by sliding windows (``data.target: last``), as evaluation does."""

    def __init__(self, data, modalities, audio_norm: str, window_frames: int, batch_size: int):
        self.data, self.modalities, self.audio_norm = data, modalities, audio_norm
        self.window_frames, self.batch_size = window_frames, batch_size
        self._predictor = None

    def predict(self, model) -> dict:
        """``{recording_id: (gold, pred)}`` with every frame predicted from its window's last output."""
        from emorec.data import read_recordings
        from emorec.inference import RecordingPredictor

        if self._predictor is None or self._predictor.model is not model:
            self._predictor = RecordingPredictor(model, "sliding", self.window_frames, batch_size=self.batch_size)
        out = {}
        for rid, arrays in read_recordings(self.data, "dev", self.modalities, self.audio_norm):
            out[rid] = (arrays["labels"], self._predictor(arrays).astype(np.float64))
        return out

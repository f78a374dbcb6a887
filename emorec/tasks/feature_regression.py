"""Arousal and valence per 40 ms frame from stored feature sets (Chen & Jin, ``feature_lstm``).

The same problem as :mod:`emorec.tasks.frame_regression` (same labels,
validation metrics and evaluation protocol family), with other inputs and
objectives:

- Inputs: the feature sets the model config names (``model.features``; null
  = every set the dataset holds, filled in with their dimensions by
  :meth:`FeatureRegressionTask.configure`), as ``features_<name>`` batches,
  z-scored per speaker or with the training partition's statistics
  (``data.feature_norm``). No audio or face is read.
- Objective: the loss zoo (:mod:`emorec.loss_zoo`, ``loss:`` section
  ``name``, ``reduction``, ``tube_epsilon``) on the model's target columns.
- Step: independent windows (:class:`~emorec.training.steps.WindowedStep`);
  stateful training is not offered.
- Validation: every dev recording predicted whole (one pass from a zero
  state, as ``evaluate/avec2015.yaml`` evaluates), AVEC CCC of the
  concatenation; the score ``dev_ccc_mean`` is the mean over the model's
  target dimensions (a single-target model is chosen on its own dimension).
- Evaluation protocol: :mod:`emorec.evaluate` with ``evaluate/avec2015.yaml``
  (exponential smoothing); late fusion: :mod:`emorec.fusion`.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from emorec.errors import ConfigError
from emorec.tasks.frame_regression import DIMENSIONS, FrameRegressionTask

logger = logging.getLogger(__name__)

# What the demo corpus extracts when model.features is null.
DEMO_FEATURE_SETS = ("audio_lld", "video_geometric", "video_appearance")


def landmarks_available() -> bool:
    """dlib is installed and its 68-point model file is found (video_geometric can be extracted).

    Returns:
        Whether ``dlib`` imports and :func:`emorec.features.landmarks68.find_shape_predictor`
        finds the model file.
    """
    import importlib.util

    from emorec.features.landmarks68 import find_shape_predictor

    if importlib.util.find_spec("dlib") is None:
        return False
    try:
        find_shape_predictor()
    except ConfigError:
        return False
    return True


def feature_validation_metrics(per_recording: dict, targets) -> dict:
    """Dev metrics as the frame task's, with ``dev_ccc_mean`` the mean over ``targets`` only.

    Args:
        per_recording: gold and predictions per recording, as
            :func:`emorec.metrics.evaluate_recordings` takes them.
        targets: the dimension names the model predicts.

    Returns:
        The :func:`emorec.tasks.frame_regression.validation_metrics` dict, ``dev_ccc_mean``
        replaced.
    """
    from emorec.tasks.frame_regression import validation_metrics

    out = validation_metrics(per_recording)
    out["dev_ccc_mean"] = float(np.mean([out[f"dev_ccc_{name}"] for name in targets]))
    return out


class FeatureRegressionTask(FrameRegressionTask):
    """See the module docstring."""

    name = "feature_regression"
    score_name = "dev_ccc_mean"
    protocol = "avec2015"  # whole recordings, exponential smoothing tuned on dev

    @property
    def loss_config_class(self):
        """The loss zoo's ``loss:`` section."""
        from emorec.loss_zoo import ZooLossConfig

        return ZooLossConfig

    # -- data --------------------------------------------------------------------------------

    def configure(self, config, data, spec):
        """``model.features`` (null: every stored set) and ``model.feature_dims`` filled from the dataset.

        Raises:
            DatasetError: a set the dataset does not hold.
            ConfigError: dimensions given in the config that differ from the stored ones.
        """
        model = config.model
        names = tuple(model.features) if model.features is not None else tuple(data.feature_dims)
        if not names:
            raise ConfigError(
                f"{data.path}: model {spec.name} reads feature sets and the dataset holds none; build one with "
                "`emorec build ... --extract audio_lld,...` or `--features ...` (docs/feature_lstm.md)")
        dims = data.require_features(names, f"model {spec.name}")
        if model.feature_dims is not None and tuple(model.feature_dims) != tuple(dims.values()):
            raise ConfigError(
                f"{data.path}: model.feature_dims {list(model.feature_dims)} differ from the stored dimensions "
                f"{dims} of {list(names)}; drop model.feature_dims (it is read from the dataset)")
        completed = model.replace(features=names, feature_dims=tuple(dims.values()))
        return config.replace(model=completed)

    def demo_dataset_options(self, config) -> dict:
        """A demo dataset holding the model's sets (default: audio_lld, video_geometric, video_appearance)."""
        from emorec.features.sets import EXTRACTED_SETS

        wanted = tuple(config.model.features) if config.model.features is not None else DEMO_FEATURE_SETS
        if config.model.features is None and not landmarks_available():
            logger.warning("video_geometric left out of the demo: dlib or its 68-point model is missing "
                           "(pip install 'emorec[landmarks]'; apt-get install libdlib-data)")
            wanted = tuple(name for name in wanted if name != "video_geometric")
        unknown = [name for name in wanted if name not in EXTRACTED_SETS]
        if unknown:
            raise ConfigError(
                f"model.features {list(wanted)}: the demo corpus can compute {', '.join(EXTRACTED_SETS)}, not "
                f"{', '.join(unknown)}; pass --data for released feature sets")
        return {"extract": wanted, "modalities": ()}

    def modalities(self, spec, config) -> tuple[str, ...]:
        """No audio or face is read: the inputs are feature sets."""
        return ()

    def check_data(self, data, spec, config) -> None:
        """The sets are stored, train is labelled, and the stored windows give the training ones."""
        if config.model.features is None:
            raise ConfigError("feature_regression: model.features unknown (Task.configure fills it in)")
        data.require_features(tuple(config.model.features), f"model {spec.name}")
        data.check_labels("train", required=True)
        data.check_labels("dev")
        if config.training.stateful or config.data.stream_ordered:
            raise ConfigError(f"model {spec.name}: trains on independent windows of feature sets; "
                              "training.stateful and data.stream_ordered are not offered")
        self.check_windows(data, spec, config)

    def read_spec(self, config, modalities, **settings):
        """The frame task's :class:`~emorec.data.ReadSpec` with the model's feature sets and no modality."""
        settings = {"features": tuple(config.model.features), "feature_norm": config.data.feature_norm,
                    "augment": False, **settings}
        return super().read_spec(config, (), **settings)

    def dev_dataset(self, data, config, modalities):
        """Every dev recording, read whole (features normalised as in training)."""
        if not config.training.validate or not data.has_partition("dev") or not data.has_labels("dev"):
            return None
        return DevFeatureRecordings(data, tuple(config.model.features), config.data.feature_norm,
                                    config.model.targets)

    # -- training ----------------------------------------------------------------------------

    def objective(self, spec, loss_config):
        """The loss zoo's objective with the run's ``loss:`` settings (targets added by :meth:`make_step`)."""
        from emorec.loss_zoo import zoo_objective

        objective = spec.objective or zoo_objective
        return functools.partial(objective, **loss_config.to_dict())

    def make_step(self, config, context):
        """Windowed steps; the objective covers the model's target columns only."""
        import dataclasses

        from emorec.training.steps import WindowedStep

        columns = tuple(DIMENSIONS.index(t) for t in config.model.targets)
        objective = functools.partial(context.objective, targets=columns)
        return WindowedStep(dataclasses.replace(context, objective=objective))

    def validator(self, model, step, dev):
        """A callable giving the dev CCCs of the current weights over whole recordings."""
        return lambda: feature_validation_metrics(dev.predict(model), dev.targets)


class DevFeatureRecordings:
    """Dev recordings' feature sets read once and kept; predicted whole by the current model."""

    def __init__(self, data, features, feature_norm: str, targets):
        self.data, self.features, self.feature_norm = data, tuple(features), feature_norm
        self.targets = tuple(targets)
        self._recordings = None
        self._predictor = None

    def recordings(self) -> list:
        """``[(recording_id, arrays)]`` of the dev partition (read on first use)."""
        from emorec.data import read_recordings

        if self._recordings is None:
            self._recordings = list(read_recordings(self.data, "dev", (), features=self.features,
                                                    feature_norm=self.feature_norm))
        return self._recordings

    def predict(self, model) -> dict:
        """``{recording_id: (gold (N, 2), pred (N, 2))}`` with each recording in one pass."""
        from emorec.inference import RecordingPredictor

        if self._predictor is None or self._predictor.model is not model:
            self._predictor = RecordingPredictor(model, "whole")
        return {rid: (arrays["labels"], self._predictor(arrays).astype(np.float64))
                for rid, arrays in self.recordings()}

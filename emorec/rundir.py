"""The one place that spells the file names of a run directory, an evaluation and an export.

A run directory (``emorec train --out RUN``)::

    config.yaml            the resolved config and a run: record
    history.json, .csv     one row per epoch
    best.keras             the best epoch's model (by the task's validation score)
    checkpoints/latest/    the resume checkpoint (weights, optimizer state, counters)
    tb/                    TensorBoard scalars
    postprocess.json       the post-processing chain tuned on dev (emorec evaluate --postprocess tune)
    eval/<partition>/      an evaluation (see EvalDir)
    export/                the demo flow's export (see ExportDir)
    learning_curves.png, reconstructions.png, demo_summary.json   (the demo flow)

A clip classification fusion run (``emorec train --model emotiw``) also holds::

    branches.json          the frame, C3D and audio runs it was trained on
    frame/, c3d/, audio/   those runs, when the fusion run trained them itself
    features/              the branch features per partition, computed once (.npz)
    confusion_matrix.png   (the demo flow) the dev confusion matrix
    folds.json             (--folds K) the k-fold summary; fold1/ ... foldK/ hold the runs
"""

from __future__ import annotations

import os
from pathlib import Path


class RunDir:
    """Paths inside one training run directory."""

    CONFIG = "config.yaml"
    HISTORY_JSON = "history.json"
    HISTORY_CSV = "history.csv"
    BEST_MODEL = "best.keras"
    CHECKPOINTS = "checkpoints"
    LATEST = "latest"
    TENSORBOARD = "tb"
    POSTPROCESS = "postprocess.json"
    EVAL = "eval"
    EXPORT = "export"
    LEARNING_CURVES = "learning_curves.png"
    RECONSTRUCTIONS = "reconstructions.png"
    DEMO_SUMMARY = "demo_summary.json"
    BRANCHES = "branches.json"
    FEATURES = "features"
    CONFUSION_PNG = "confusion_matrix.png"
    FOLDS = "folds.json"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config(self) -> Path:
        """``config.yaml``."""
        return self.path / self.CONFIG

    @property
    def history_json(self) -> Path:
        """``history.json``."""
        return self.path / self.HISTORY_JSON

    @property
    def history_csv(self) -> Path:
        """``history.csv``."""
        return self.path / self.HISTORY_CSV

    @property
    def best_model(self) -> Path:
        """``best.keras``."""
        return self.path / self.BEST_MODEL

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``."""
        return self.path / self.CHECKPOINTS

    @property
    def latest(self) -> Path:
        """``checkpoints/latest/``."""
        return self.checkpoints / self.LATEST

    @property
    def tensorboard(self) -> Path:
        """``tb/``."""
        return self.path / self.TENSORBOARD

    @property
    def postprocess(self) -> Path:
        """``postprocess.json``."""
        return self.path / self.POSTPROCESS

    def eval_dir(self, partition: str) -> Path:
        """``eval/<partition>/``."""
        return self.path / self.EVAL / partition

    @property
    def export(self) -> Path:
        """``export/``."""
        return self.path / self.EXPORT

    @property
    def learning_curves(self) -> Path:
        """``learning_curves.png``."""
        return self.path / self.LEARNING_CURVES

    @property
    def reconstructions(self) -> Path:
        """``reconstructions.png``."""
        return self.path / self.RECONSTRUCTIONS

    @property
    def demo_summary(self) -> Path:
        """``demo_summary.json``."""
        return self.path / self.DEMO_SUMMARY

    @property
    def branches(self) -> Path:
        """``branches.json`` (a fusion run's branch runs)."""
        return self.path / self.BRANCHES

    def branch_dir(self, branch: str) -> Path:
        """``<branch>/``: a branch run trained inside a fusion run."""
        return self.path / branch

    @property
    def features(self) -> Path:
        """``features/`` (cached branch features)."""
        return self.path / self.FEATURES

    @property
    def confusion_png(self) -> Path:
        """``confusion_matrix.png``."""
        return self.path / self.CONFUSION_PNG

    @property
    def folds(self) -> Path:
        """``folds.json``."""
        return self.path / self.FOLDS

    def fold_dir(self, index: int) -> Path:
        """``fold<index>/`` (1-based)."""
        return self.path / f"fold{index}"


class EvalDir:
    """Paths inside one evaluation's output directory."""

    METRICS = "metrics.json"
    PREDICTIONS = "predictions"
    POSTPROCESSED = "postprocessed"
    PLOTS = "plots"
    CONFUSION_CSV = "confusion_matrix.csv"
    CONFUSION_PNG = "confusion_matrix.png"
    CLIP_PREDICTIONS = "clip_predictions.csv"
    PREDICTED_LABELS = "predicted_labels.txt"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def metrics(self) -> Path:
        """``metrics.json``."""
        return self.path / self.METRICS

    def prediction_csv(self, recording_id: str, postprocessed: bool = False) -> Path:
        """``predictions/<id>.csv`` (or ``postprocessed/<id>.csv``)."""
        return self.path / (self.POSTPROCESSED if postprocessed else self.PREDICTIONS) / f"{recording_id}.csv"

    def plot(self, recording_id: str) -> Path:
        """``plots/<id>.png``."""
        return self.path / self.PLOTS / f"{recording_id}.png"

    def confusion_csv(self, prefix: str = "") -> Path:
        """``[<prefix>_]confusion_matrix.csv``."""
        return self.path / (f"{prefix}_{self.CONFUSION_CSV}" if prefix else self.CONFUSION_CSV)

    def confusion_png(self, prefix: str = "") -> Path:
        """``[<prefix>_]confusion_matrix.png``."""
        return self.path / (f"{prefix}_{self.CONFUSION_PNG}" if prefix else self.CONFUSION_PNG)

    @property
    def clip_predictions(self) -> Path:
        """``clip_predictions.csv`` (one row per clip: class, probabilities, gold)."""
        return self.path / self.CLIP_PREDICTIONS

    @property
    def predicted_labels(self) -> Path:
        """``predicted_labels.txt`` (one ``<video name> <class>`` line per clip)."""
        return self.path / self.PREDICTED_LABELS


class ExportDir:
    """Paths inside an export directory (``emorec export RUN OUT``)."""

    EXPORT_JSON = "export.json"
    KERAS_MODEL = "model.keras"
    POSTPROCESS = "postprocess.json"
    SAVED_MODEL = "saved_model"
    ONNX = "model.onnx"
    ONNX_STREAMING = "model_step.onnx"
    LITERT = "model.tflite"
    LITERT_STREAMING = "model_step.tflite"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def info(self) -> Path:
        """``export.json``."""
        return self.path / self.EXPORT_JSON

    @property
    def keras_model(self) -> Path:
        """``model.keras``."""
        return self.path / self.KERAS_MODEL

    @property
    def postprocess(self) -> Path:
        """``postprocess.json``."""
        return self.path / self.POSTPROCESS

    @property
    def saved_model(self) -> Path:
        """``saved_model/``."""
        return self.path / self.SAVED_MODEL


class FusionDir:
    """Names inside a late-fusion directory (``emorec fuse``): weights, metrics, predictions, predictor."""

    FUSION_JSON = "fusion.json"
    TABLE_MD = "fusion.md"
    PREDICTIONS = "predictions"
    FUSED_MODEL = "fused.keras"
    EXPORT = "export"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def info(self) -> Path:
        """``fusion.json``: the runs, the smoothing, the weights per dimension and the metrics."""
        return self.path / self.FUSION_JSON

    @property
    def table(self) -> Path:
        """``fusion.md``: the metrics as a Markdown table."""
        return self.path / self.TABLE_MD

    def prediction_csv(self, partition: str, recording_id: str) -> Path:
        """``predictions/<partition>/<recording>.csv`` of the fused predictions."""
        return self.path / self.PREDICTIONS / partition / f"{recording_id}.csv"

    @property
    def fused_model(self) -> Path:
        """``fused.keras``: the runs' models, their smoothing and the fusion weights as one Keras model."""
        return self.path / self.FUSED_MODEL

    @property
    def export(self) -> Path:
        """``export/``: the fused predictor as a SavedModel (``emorec.export`` layout)."""
        return self.path / self.EXPORT

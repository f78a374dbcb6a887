"""One class per video clip (Pini et al., EmotiW 2017): the clip classification task.

- Records: whole clips (:mod:`emorec.clips.schema`) in a clip dataset
  (:class:`~emorec.clips.dataset.ClipDatasetHandle`), read per branch by
  :mod:`emorec.clips.data`: single faces (``emotiw_frame``), 16-frame slices
  (``emotiw_c3d``), one second of sound (``emotiw_audio``); the fusion
  (``emotiw``) reads the per-clip branch features computed once and cached
  (:class:`emorec.clip_features.FusionData`). Each model's config says which
  (``BRANCH``).
- Objective: categorical cross-entropy, or eq. 4's class-weighted form with
  ``loss.class_weights: exponential`` (:mod:`emorec.classification`); the
  weight of each example's class travels in the batch (``example_weight``).
- Step: :class:`~emorec.training.steps.WindowedStep` (every row independent).
- Validation: accuracy on dev of the unit the model sees (``dev_accuracy``:
  faces, slices, 1 s of sound or clips; it picks ``best.keras``), plus the
  clip accuracy by averaging a clip's frame or slice probabilities
  (``dev_clip_accuracy``) and the clip UAR (``dev_clip_uar``).
- Evaluation protocol: :mod:`emorec.clip_evaluate` (``evaluate/emotiw2017.yaml``).
- Export: :mod:`emorec.clip_export` (a clip's faces and sound → class probabilities).

Training data of epoch ``e`` is built from the seed ``(training.seed, e)``
(shuffles, random slices and seconds, augmentation), so a resumed run skips
the batches already trained on and continues exactly.
"""

from __future__ import annotations

import math

import numpy as np

from emorec.errors import ConfigError, DatasetError
from emorec.tasks.base import Task

TASK_NAME = "clip_classification"
INPUT_OF_BRANCH = {"frame": "face", "c3d": "clip", "audio": "audio"}
FUSION_INPUTS = ("frame_features", "slice_features", "audio_features")


def branch_of(config) -> str:
    """``frame``, ``c3d``, ``audio`` or ``fusion``: what a clip model's config reads.

    Args:
        config: a run config.

    Returns:
        The ``BRANCH`` of the config's model class.

    Raises:
        ConfigError: the model is not a clip classification model.
    """
    branch = getattr(type(config.model), "BRANCH", "")
    if not branch:
        raise ConfigError(f"model {config.model_name} is not a clip classification model")
    return branch


def epoch_seed(seed: int, epoch: int) -> int:
    """The data seed of one epoch (a function of the run's seed and the epoch only).

    Args:
        seed: the run's seed.
        epoch: the epoch, 0-based.

    Returns:
        A seed in ``[0, 2**31 - 1)``.

    >>> epoch_seed(0, 0) != epoch_seed(0, 1) != epoch_seed(1, 0)
    True
    """
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 17) % (2**31 - 1)


def _model_classes(config) -> int:
    from emorec.models.emotiw import model_classes

    return model_classes(config.model)


def unit_counts(data, config, partition: str) -> int:
    """Examples one pass over ``partition`` gives in training (faces with a face, slices, clips).

    Args:
        data: the clip dataset.
        config: the run config (its branch; ``model.frames`` for C3D).
        partition: the partition.

    Returns:
        Frame branch: faces found; C3D: ``ceil(frames / slice frames)`` (at least 1) per clip;
        audio: clips with sound; fusion: clips.

    Raises:
        ConfigError: the model is not a clip classification model.
    """
    branch = branch_of(config)
    clips = data.clips(partition)
    if branch == "frame":
        return sum(c.faces_found for c in clips)
    if branch == "c3d":
        frames = config.model.frames
        return sum(max(1, math.ceil(c.frames / frames)) for c in clips)
    if branch == "audio":
        return sum(bool(c.has_audio) for c in clips)
    return len(clips)


class ClipClassificationTask(Task):
    """See the module docstring."""

    name = TASK_NAME
    score_name = "dev_accuracy"

    @property
    def loss_config_class(self):
        """:class:`emorec.classification.ClipLossConfig`."""
        from emorec.classification import ClipLossConfig

        return ClipLossConfig

    # -- data --------------------------------------------------------------------------------

    def check_data(self, data, spec, config) -> None:
        """A clip dataset (branch features for the fusion), labelled train, matching classes, a batch's worth."""
        from emorec.clips.dataset import is_clip_dataset

        branch = branch_of(config)
        if not is_clip_dataset(data):
            raise DatasetError(
                f"{data.path}: model {spec.name} classifies clips and needs a clip dataset "
                "(clips_manifest.json, from `emorec build afew` or `emorec build clips`); this is a "
                "windowed dataset")
        if branch == "fusion" and not hasattr(data, "features"):
            raise ConfigError(
                f"{data.path}: model {spec.name} trains on the features of trained branches: run "
                "`emorec train --model emotiw --data D` (all phases) or add --branches FRAME,C3D,AUDIO")
        if config.training.stateful:
            raise ConfigError(f"{config.source}: training.stateful does not apply to clip classification")
        data.check_labels("train", required=True)
        data.check_labels("dev")
        want = _model_classes(config)
        if want != data.num_classes:
            raise ConfigError(
                f"{data.path}: the dataset has {data.num_classes} classes ({', '.join(data.classes)}) but "
                f"model.num_classes is {want}; set model.num_classes to null (the dataset's) or "
                f"{data.num_classes}")
        units = unit_counts(data, config, "train")
        if not config.training.steps_per_epoch and units < config.data.batch_size:
            raise ConfigError(
                f"{data.path}: the training partition gives {units} examples for {spec.name}, fewer than "
                f"a batch of {config.data.batch_size}; pass --batch-size {max(1, units)} or fewer")

    def train_dataset(self, data, config, modalities, epoch: int, skip: int):
        """Epoch ``epoch``'s global training batches (seeded by the run's seed and the epoch), ``skip`` left out."""
        import tensorflow as tf

        from emorec.training.replica import numeric

        seed = epoch_seed(config.training.seed, epoch)
        steps = config.training.steps_per_epoch
        ds = self.read_batches(data, config, "train", training=True, seed=seed, repeat=bool(steps))
        weights = self.example_weights(data, config)
        table = tf.constant(weights, tf.float32)
        ds = ds.map(lambda batch: {**batch, "example_weight": tf.gather(table, batch["label"])})
        if steps:
            ds = ds.take(steps)
        ds = ds.skip(skip).map(numeric)
        options = tf.data.Options()
        # Every worker reads the same seeded stream and keeps its slice of each global batch.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options)

    def example_weights(self, data, config) -> np.ndarray:
        """The loss weight of each class (:func:`emorec.classification.class_weights` of the train counts)."""
        from emorec.classification import class_weights

        loss = config.loss
        return class_weights(data.class_counts("train"), loss.class_weights,
                             loss.class_weight_gamma).astype(np.float32)

    def batches_per_epoch(self, data, config) -> int | None:
        """``steps_per_epoch``, or one pass over the training examples."""
        if config.training.steps_per_epoch:
            return config.training.steps_per_epoch
        return unit_counts(data, config, "train") // config.data.batch_size

    def dev_dataset(self, data, config, modalities):
        """Dev read as evaluation reads it (every frame, consecutive slices, the middle second), or None."""
        if not config.training.validate or not data.has_partition("dev") or not data.has_labels("dev"):
            return None
        return ClipUnits(self, data, config, "dev")

    def read_batches(self, data, config, partition: str, *, training: bool, seed=None, repeat: bool = False):
        """Batches of one branch's inputs (named as the model's inputs) with ``label`` and ``clip_id``."""
        branch = branch_of(config)
        model, batch = config.model, config.data.batch_size
        drop = training
        if branch == "fusion":
            return fusion_batches(data, partition, batch, training=training, seed=seed, repeat=repeat)
        from emorec.clips import data as clip_data

        selection = data.selection(partition)
        common = dict(batch_size=batch, training=training, seed=seed, repeat=repeat, drop_remainder=drop)
        if branch == "frame":
            ds = clip_data.frame_dataset(data.path, selection, augment=training and config.data.augment,
                                         image_size=model.input_size, **common)
        elif branch == "c3d":
            ds = clip_data.slice_dataset(data.path, selection, slice_frames=model.frames,
                                         image_size=model.input_size,
                                         augment=training and config.data.augment, **common)
            ds = ds.map(lambda b: {**{k: v for k, v in b.items() if k != "slice"}, "clip": b["slice"]})
        else:
            seconds = model.samples / data.sample_rate
            ds = clip_data.audio_dataset(data.path, selection, seconds=seconds, scale="none",
                                         require_audio=training, **common)
        return ds

    # -- training ----------------------------------------------------------------------------

    def objective(self, spec, loss_config):
        """The (weighted) cross-entropy; the weights come in the batch."""
        from emorec.classification import classification_objective

        return classification_objective

    def make_step(self, config, context):
        """Every row of a batch is an independent example."""
        from emorec.training.steps import WindowedStep

        return WindowedStep(context)

    def validator(self, model, step, dev):
        """A callable giving the dev accuracies of the current weights."""
        forward = make_class_forward(model)
        return lambda: dev.metrics(forward)


def make_class_forward(model, jit_compile: bool = False):
    """A traced ``inputs -> class probabilities`` function of ``model`` (its ``emotion_class``).

    Args:
        model: a clip model with an ``emotion_class`` output.
        jit_compile: compile the function with XLA.

    Returns:
        The ``tf.function`` (inference mode: ``training=False``).
    """
    import tensorflow as tf

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def forward(inputs):
        return model(inputs, training=False)["emotion_class"]

    return forward


def fusion_batches(data, partition: str, batch_size: int, *, training: bool, seed=None, repeat: bool = False):
    """Batches of the cached branch features of a partition (shuffled per ``seed`` in training).

    Args:
        data: the fusion data (:class:`~emorec.clip_features.FusionData`).
        partition: the partition.
        batch_size: clips per batch.
        training: shuffle and drop the last partial batch.
        seed: the shuffle seed.
        repeat: repeat the partition without end.

    Returns:
        The ``tf.data.Dataset`` of :func:`fusion_inputs` batches.
    """
    import tensorflow as tf

    arrays = fusion_inputs(data.features(partition))
    ds = tf.data.Dataset.from_tensor_slices(arrays)
    if training:
        ds = ds.shuffle(len(arrays["label"]), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    from emorec.tfdata_options import without_autotune_thread

    return without_autotune_thread(ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE))


def fusion_inputs(features: dict) -> dict:
    """The fusion network's inputs from cached branch features, with ``label`` and ``clip_id``.

    A clip without any face gives zero frame and slice features, and one
    without sound zero audio features, so the fusion decides from what the
    clip has (the issue's "the fusion uses its audio").

    Args:
        features: :func:`emorec.clip_features.compute_clip_features` output.

    Returns:
        ``frame_features``, ``slice_features``, ``audio_features`` (zeroed as above),
        ``label`` int32 and ``clip_id``.

    >>> f = {"face_found": [[0, 0], [1, 0]], "audio_mask": [1, 0], "label": [2, 5], "clip_id": ["a", "b"],
    ...      "frame_features": np.ones((2, 2, 1)), "slice_features": np.ones((2, 1, 1)),
    ...      "audio_features": np.ones((2, 1))}
    >>> x = fusion_inputs(f)
    >>> x["frame_features"][:, 0, 0].tolist(), x["audio_features"][:, 0].tolist()
    ([0.0, 1.0], [1.0, 0.0])
    """
    has_face = (np.asarray(features["face_found"]).sum(axis=1) > 0).astype(np.float32)
    has_audio = np.asarray(features["audio_mask"], np.float32)
    return {
        "frame_features": features["frame_features"] * has_face[:, None, None],
        "slice_features": features["slice_features"] * has_face[:, None, None],
        "audio_features": features["audio_features"] * has_audio[:, None],
        "label": np.asarray(features["label"], np.int32),
        "clip_id": np.asarray(features["clip_id"]),
    }


class ClipUnits:
    """One partition of a run's data read as evaluation reads it; scores a forward function's predictions."""

    def __init__(self, task: ClipClassificationTask, data, config, partition: str = "dev"):
        self.task, self.data, self.config, self.partition = task, data, config, partition
        self.branch = branch_of(config)
        self.names = list(FUSION_INPUTS) if self.branch == "fusion" else [INPUT_OF_BRANCH[self.branch]]

    def predict(self, forward) -> dict:
        """``{probs (N, K), label (N,), clip_id [N], keep (N,)}`` over the partition's units.

        ``keep`` marks the units the unit accuracy is scored on: faces that were
        found (frame branch), slices with at least one found face (C3D branch),
        everything otherwise.
        """
        probs, labels, ids, keep = [], [], [], []
        for batch in self.task.read_batches(self.data, self.config, self.partition, training=False):
            probs.append(np.asarray(forward({k: batch[k] for k in self.names})))
            labels.append(batch["label"].numpy())
            ids += [c.decode() for c in batch["clip_id"].numpy()]
            if self.branch in ("frame", "c3d"):
                found = batch["face_found"].numpy()
                keep.append(found > 0 if found.ndim == 1 else found.max(axis=1) > 0)
            else:
                keep.append(np.ones(len(labels[-1]), bool))
        return {"probs": np.concatenate(probs).astype(np.float64), "label": np.concatenate(labels),
                "clip_id": ids, "keep": np.concatenate(keep)}

    def metrics(self, forward) -> dict:
        """``dev_accuracy`` (per unit), ``dev_clip_accuracy`` and ``dev_clip_uar`` (probabilities averaged per clip)."""
        from emorec.classification import average_by_clip, classification_metrics

        out = self.predict(forward)
        classes = self.data.classes
        keep = out["keep"]
        unit = classification_metrics(out["label"][keep], out["probs"][keep], classes)
        ids, clip_probs = average_by_clip(out["clip_id"], out["probs"], keep)
        first = dict(zip(out["clip_id"], out["label"]))
        clip = classification_metrics(np.array([first[c] for c in ids]), clip_probs, classes)
        return {"dev_accuracy": unit["accuracy"], "dev_clip_accuracy": clip["accuracy"],
                "dev_clip_uar": clip["uar"]}

"""Classification losses and metrics of the clip task (Pini et al., EmotiW 2017).

Objective (:func:`classification_objective`): the categorical cross-entropy
of eq. 3, or its weighted form eq. 4, ``L' = -Σ_i λ_{c_i} t_iᵀ log p_i``. The
weights ride in the batch as ``example_weight`` (``λ`` of each example's
class; the task puts them there), so the objective needs no dataset. The loss
is the weighted sum divided by the number of examples (the batch mean: eq. 3-4
are sums, which only rescales the learning rate). Under tf.distribute the
sums ``(Σ λ·ce, n)`` are made global like the CCC moments
(:func:`emorec.losses.global_moments`), so every replica holds the global
batch's loss and the strategy's SUM of gradients is the single-device one.

Class weights (:func:`class_weights`, ``loss.class_weights: exponential``).
The paper: "in order to increase the importance of the most frequent classes
and reduce the importance of the less frequent ones ... an exponential
function is sampled following the classes distribution on the training set".
With ``p_k = n_k / N`` the training share of class ``k`` and ``K`` classes::

    w_k = exp(γ (K p_k − 1))          λ_k = w_k / Σ_j p_j w_j

``K p_k − 1`` is 0 for a class at its uniform share, so a balanced set gets
λ = 1 everywhere; γ > 0 (``loss.class_weight_gamma``, default 1) weights
frequent classes up as the paper says; γ < 0 gives the usual balancing
reading (rare classes up). The normalisation makes the mean weight over the
training examples 1, so the loss stays on eq. 3's scale. For AFEW's Train
(Table 1) γ = 1 gives Angry 1.10, Disgust 0.64, Fear 0.68, Happy 1.28,
Neutral 1.21, Sad 0.95, Surprise 0.64. A class absent from training gets
``w = exp(-γ)`` before normalisation.

Metrics: :func:`confusion_matrix` (rows = true class, columns = predicted),
accuracy, per-class recall and the unweighted average recall (UAR, the mean
recall over the classes present in the gold labels).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from emorec.config.base import Section, choice, number, setting

CLASS_WEIGHTS = ("none", "exponential")
OUTPUT = "emotion_class"
_LOG_FLOOR = 1e-7


@dataclasses.dataclass(frozen=True)
class ClipLossConfig(Section):
    """The ``loss:`` section of the clip classification models."""

    SECTION = "loss"

    class_weights: str = setting("none", choice(*CLASS_WEIGHTS),
                                 doc="none = eq. 3; exponential = eq. 4 with the weights of emorec.classification")
    class_weight_gamma: float = setting(1.0, number,
                                        doc="> 0 weights frequent classes up (the paper), < 0 rare ones")


def class_weights(counts, mode: str = "exponential", gamma: float = 1.0) -> np.ndarray:
    """Per-class loss weights ``λ (K,)`` from the training class counts (module docstring).

    Args:
        counts: examples per class in the training set.
        mode: ``"none"`` (all 1) or ``"exponential"``.
        gamma: the exponent's slope γ.

    Returns:
        float64 weights whose mean over the training examples is 1.

    Raises:
        ValueError: an unknown mode, negative counts or no example at all.

    >>> class_weights([10, 10, 10]).tolist()
    [1.0, 1.0, 1.0]
    >>> [round(float(w), 3) for w in class_weights([30, 10])]  # e^0.5 and e^-0.5 over their mean 1.388
    [1.188, 0.437]
    """
    counts = np.asarray(counts, np.float64)
    if mode not in CLASS_WEIGHTS:
        raise ValueError(f"unknown class weighting {mode!r} (expected one of {', '.join(CLASS_WEIGHTS)})")
    if (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"class counts must be non-negative with at least one example, got {counts.tolist()}")
    if mode == "none":
        return np.ones_like(counts)
    share = counts / counts.sum()
    raw = np.exp(gamma * (len(counts) * share - 1.0))
    return raw / float((share * raw).sum())


def classification_objective(batch, outputs, reduce_fn=None):
    """``(loss, {"cross_entropy", "accuracy"})``: (weighted) cross-entropy of ``outputs["emotion_class"]``.

    Reads ``batch["label"]`` ``(B,)`` int and, when present, ``batch["example_weight"]`` ``(B,)``;
    ``reduce_fn`` makes ``(Σ weighted loss, Σ correct, n)`` global (identity when None).

    Args:
        batch: the batch dict: ``label`` ``(B,)`` class indices, optional ``example_weight``
            ``(B,)``.
        outputs: the model's outputs; ``emotion_class`` ``(B, K)`` class probabilities.
        reduce_fn: makes the four sums global under tf.distribute; None on one device.

    Returns:
        ``(loss, terms)``: the float32 scalar mean weighted cross-entropy (probabilities floored
        before the log), and ``{"cross_entropy": unweighted mean, "accuracy": share of argmax
        hits (no gradient)}``, all means over the (global) batch size.
    """
    import tensorflow as tf

    probs = tf.cast(outputs[OUTPUT], tf.float32)
    labels = tf.cast(batch["label"], tf.int32)
    picked = tf.gather(probs, labels, batch_dims=1)
    ce = -tf.math.log(tf.maximum(picked, _LOG_FLOOR))
    weights = tf.cast(batch["example_weight"], tf.float32) if "example_weight" in batch else tf.ones_like(ce)
    correct = tf.cast(tf.equal(tf.argmax(probs, axis=-1, output_type=tf.int32), labels), tf.float32)
    sums = tf.stack([tf.reduce_sum(weights * ce), tf.reduce_sum(ce), tf.reduce_sum(correct),
                     tf.cast(tf.shape(ce)[0], tf.float32)])
    if reduce_fn is not None:
        sums = reduce_fn(sums)
    n = tf.maximum(sums[3], 1.0)
    loss = sums[0] / n
    return loss, {"cross_entropy": sums[1] / n, "accuracy": tf.stop_gradient(sums[2] / n)}


# -- metrics ---------------------------------------------------------------------------------------


def confusion_matrix(gold, pred, num_classes: int) -> np.ndarray:
    """Counts ``(K, K)``: row = true class, column = predicted class (unlabelled gold < 0 left out).

    Args:
        gold: true class indices; negative = unlabelled.
        pred: predicted class indices, same length.
        num_classes: ``K``.

    Returns:
        int64 ``(K, K)`` counts.

    >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3).tolist()
    [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    """
    gold = np.asarray(gold, np.int64)
    pred = np.asarray(pred, np.int64)
    keep = gold >= 0
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (gold[keep], pred[keep]), 1)
    return matrix


def per_class_recall(matrix) -> np.ndarray:
    """Recall of each class (NaN where the gold labels have none of it).

    Args:
        matrix: ``(K, K)`` confusion counts (:func:`confusion_matrix`).

    Returns:
        float64 ``(K,)``: diagonal over row sums.

    >>> per_class_recall([[1, 0], [1, 3]]).tolist()
    [1.0, 0.75]
    """
    matrix = np.asarray(matrix, np.float64)
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


def accuracy_of(matrix) -> float:
    """Share of correct predictions (NaN for an empty matrix).

    Args:
        matrix: ``(K, K)`` confusion counts.

    Returns:
        Trace over total.

    >>> accuracy_of([[1, 0], [1, 3]])
    0.8
    """
    matrix = np.asarray(matrix, np.float64)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else float("nan")


def unweighted_average_recall(matrix) -> float:
    """Mean recall over the classes present in the gold labels (UAR).

    Args:
        matrix: ``(K, K)`` confusion counts.

    Returns:
        The mean of :func:`per_class_recall` over non-NaN classes; NaN if there are none.

    >>> unweighted_average_recall([[1, 0], [1, 3]])
    0.875
    """
    recall = per_class_recall(matrix)
    present = ~np.isnan(recall)
    return float(recall[present].mean()) if present.any() else float("nan")


def classification_metrics(gold, probs, classes) -> dict:
    """Accuracy, UAR, per-class recall and the confusion matrix of predictions ``argmax(probs)``.

    Args:
        gold: true class per example (``< 0`` = unlabelled, left out).
        probs: ``(N, K)`` class probabilities.
        classes: the class names.

    Returns:
        ``{"count", "accuracy", "uar", "recall": {class: value}, "confusion": [[...]]}``.
    """
    probs = np.asarray(probs, np.float64).reshape(len(gold), len(classes))
    matrix = confusion_matrix(gold, probs.argmax(axis=1), len(classes))
    recall = per_class_recall(matrix)
    return {
        "count": int(matrix.sum()),
        "accuracy": accuracy_of(matrix),
        "uar": unweighted_average_recall(matrix),
        "recall": {name: (None if np.isnan(r) else float(r)) for name, r in zip(classes, recall)},
        "confusion": matrix.tolist(),
    }


def average_by_clip(clip_ids, probs, keep=None) -> tuple[list[str], np.ndarray]:
    """Mean of the ``probs`` rows of each clip (the paper's "averaging the predictions of its frames").

    Args:
        clip_ids: the clip of each row.
        probs: ``(N, K)``.
        keep: rows to average (bool ``(N,)``); a clip none of whose rows is kept averages all its rows.

    Returns:
        ``(clip ids in first-seen order, (C, K) mean probabilities)``.

    >>> ids, p = average_by_clip(["a", "b", "a"], [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], [True, True, False])
    >>> ids, p.tolist()
    (['a', 'b'], [[1.0, 0.0], [0.0, 1.0]])
    """
    probs = np.asarray(probs, np.float64)
    keep = np.ones(len(probs), bool) if keep is None else np.asarray(keep, bool)
    order: dict[str, int] = {}
    index = np.array([order.setdefault(c, len(order)) for c in clip_ids], np.int64)
    sums = np.zeros((len(order), probs.shape[1]))
    counts = np.zeros(len(order))
    np.add.at(sums, index[keep], probs[keep])
    np.add.at(counts, index[keep], 1.0)
    empty = counts == 0
    if empty.any():
        fallback = np.isin(index, np.nonzero(empty)[0])
        np.add.at(sums, index[fallback], probs[fallback])
        np.add.at(counts, index[fallback], 1.0)
    return list(order), sums / counts[:, None]

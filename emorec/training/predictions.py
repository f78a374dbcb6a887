"""Per-frame predictions of a model over a window dataset, put back on each recording's frame grid.

Used by validation (the best epoch is chosen on them) and by tests: windows
are placed by ``start_frame``, a frame covered by several (overlapping)
windows gets the mean of their predictions, and padding (``mask`` 0) is
skipped. :func:`predict_stream` runs a stream-ordered dataset with the LSTM
state carried, which equals the offline model on each whole recording.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from emorec.models.twin import STATES, state_shape, state_twin


def stitch(per_recording: dict) -> dict:
    """Put window predictions back on each recording's frame grid, overlaps averaged.

    Args:
        per_recording: ``{recording_id: [(frames, pred, gold), ...]}``: per window, the
            ``(n,)`` frame indices of its real frames and their ``(n, 2)`` predictions and gold
            values.

    Returns:
        ``{recording_id: (gold (N, 2), pred (N, 2))}`` float64 over the frames seen, in frame
        order; a frame in several windows gets their mean.

    >>> window_1 = (np.array([0, 1]), np.array([[1.0, 1.0], [2.0, 2.0]]), np.zeros((2, 2)))
    >>> window_2 = (np.array([1, 2]), np.array([[4.0, 4.0], [5.0, 5.0]]), np.zeros((2, 2)))
    >>> gold, pred = stitch({"rec": [window_1, window_2]})["rec"]
    >>> pred[:, 0].tolist()  # frame 1 is in both windows
    [1.0, 3.0, 5.0]
    """
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


def _collect(parts: dict, batch, pred) -> None:
    mask = batch["mask"].numpy() > 0
    labels = batch["labels"].numpy()
    for row, (rid, start) in enumerate(zip(batch["recording_id"].numpy(), batch["start_frame"].numpy())):
        keep = mask[row]
        if keep.any():
            frames = start + np.nonzero(keep)[0]
            parts.setdefault(rid.decode(), []).append((frames, pred[row][keep], labels[row][keep]))


def input_names(model) -> list[str]:
    """The model's data inputs (its dict input keys), without ``states``.

    Args:
        model: a Keras model with named inputs.

    Returns:
        The input names in the model's order.
    """
    return [t.name for t in model.inputs if t.name != STATES]


def make_forward(model, jit_compile: bool = False):
    """A traced ``inputs -> emotion`` inference function (one per model; shapes may vary).

    Args:
        model: a model with an ``emotion`` output.
        jit_compile: compile the function with XLA.

    Returns:
        The ``tf.function`` mapping ``{name: tensor}`` to the ``(B, T, 2)`` emotion tensor
        (``training=False``, retracing reduced).
    """

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def forward(inputs):
        return model(inputs, training=False)["emotion"]

    return forward


def predict_windows(model, dataset, names=None, forward=None) -> dict:
    """Run ``model`` over a window dataset; gold and predictions per recording.

    Args:
        model: a model with an ``emotion`` output.
        dataset: iterable of dict batches (``tf.Tensor`` values) with ``mask`` ``(B, T)``,
            ``labels`` ``(B, T, 2)``, ``recording_id`` ``(B,)`` bytes, ``start_frame`` ``(B,)``
            and the model's inputs.
        names: the input keys (default: the model's).
        forward: a traced forward function to reuse (default: a new one).

    Returns:
        The stitched per-recording gold and predictions (see :func:`stitch`).
    """
    names = names or input_names(model)
    forward = forward or make_forward(model)
    parts: dict[str, list] = {}
    for batch in dataset:
        _collect(parts, batch, forward({k: batch[k] for k in names}).numpy())
    return stitch(parts)


def carry(states, reset):
    """States with the rows that start a recording (``reset`` True) set to zero.

    Args:
        states: ``(B, rows, units)`` packed states from the previous batch.
        reset: ``(B,)`` booleans, True where the row starts a new recording.

    Returns:
        The ``(B, rows, units)`` states to start this batch from.

    >>> np.asarray(carry(np.ones((2, 1, 1), np.float32), np.array([True, False]))).ravel().tolist()
    [0.0, 1.0]
    """
    keep = 1.0 - tf.cast(reset, states.dtype)
    return states * keep[:, None, None]


def predict_stream(model, dataset) -> dict:
    """Run ``model`` statefully over a stream-ordered dataset, one sequence per recording.

    Each recording is predicted as one sequence (state carried across its
    rows), which equals the offline model on the whole recording.

    Args:
        model: an offline model with recurrent heads and an ``emotion`` output.
        dataset: iterable of dict batches (``tf.Tensor`` values) with ``mask`` ``(B, T)``,
            ``labels`` ``(B, T, 2)``, ``recording_id`` ``(B,)`` bytes, ``start_frame`` ``(B,)``
            and the model's inputs, plus
            ``reset`` ``(B,)`` (True where a row starts a recording).

    Returns:
        ``{recording_id: (gold (N, 2), pred (N, 2))}`` (see :func:`stitch`).

    Raises:
        ConfigError: the model has no recurrent head.
    """
    twin = state_twin(model, outputs=("emotion",))
    names = input_names(model)

    @tf.function(reduce_retracing=True)
    def forward(inputs, states, reset):
        out = twin({**inputs, STATES: carry(states, reset)}, training=False)
        return out["emotion"], out[STATES]

    states = None
    parts: dict[str, list] = {}
    for batch in dataset:
        if states is None:
            states = tf.zeros((batch["reset"].shape[0], *state_shape(model)))
        pred, states = forward({k: batch[k] for k in names}, states, batch["reset"])
        _collect(parts, batch, pred.numpy())
    return stitch(parts)

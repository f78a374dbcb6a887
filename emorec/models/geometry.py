"""Procrustes alignment of the 5 facial landmarks (Table VI's geometric features).

Each frame's landmarks are aligned to a mean shape by removing translation
(centroid to the origin), scale (unit Frobenius norm) and rotation (the
proper 2-D rotation that best maps them onto the normalised mean shape, in
closed form: θ = atan2(Σ p×q, Σ p·q)). Reflections are not allowed, so a
mirrored face stays mirrored. The aligned 5 × 2 points, flattened ``[x0, y0,
x1, y1, …]``, are the 10 geometric features per frame.

The journal paper aligns 2-D landmarks of another tracker to an unstated
mean shape. The default here is a symmetric frontal template of the 5 MTCNN
points (left eye, right eye, nose tip, left and right mouth corner, as
fractions of the crop); :func:`mean_shape_from_landmarks` computes the
generalised-Procrustes mean of a training set instead, to be written into the
model config's ``mean_shape``.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from emorec.config.base import FieldError, Section, setting
from emorec.schema import NUM_LANDMARKS

GEOMETRIC_FEATURES = NUM_LANDMARKS * 2
_EPS = 1e-8

# Left eye, right eye, nose tip, left mouth corner, right mouth corner (x, y)
# as fractions of a square face crop; only the shape matters after alignment.
TEMPLATE_SHAPE = [
    [0.34, 0.46],
    [0.66, 0.46],
    [0.50, 0.64],
    [0.37, 0.82],
    [0.63, 0.82],
]



def _mean_shape(key: str, value):
    try:
        shape = _check_mean_shape(value)
    except (ValueError, TypeError) as exc:
        raise FieldError(key, str(exc).removeprefix("mean_shape ")) from None
    return tuple(tuple(float(v) for v in point) for point in shape)


@dataclasses.dataclass(frozen=True)
class GeometryOptions(Section):
    """The mean shape the landmarks are aligned to."""

    mean_shape: tuple = setting(default_factory=lambda: tuple(map(tuple, TEMPLATE_SHAPE)), rule=_mean_shape,
                                doc="5 [x, y] points (left eye, right eye, nose, mouth corners)")


def normalize_shape_np(points: np.ndarray) -> np.ndarray:
    """Centre ``(..., N, 2)`` shapes on their centroid and scale them to unit Frobenius norm.

    Args:
        points: ``(..., N, 2)`` point sets ``(x, y)`` in any unit (e.g. crop pixels).

    Returns:
        The float64 ``(..., N, 2)`` normalised shapes (a set with all points equal stays at
        zero instead of dividing by zero).

    >>> normalize_shape_np(np.array([[0.0, 0.0], [2.0, 0.0]]))
    array([[-0.70710678,  0.        ],
           [ 0.70710678,  0.        ]])
    """
    points = np.asarray(points, dtype=np.float64)
    centred = points - points.mean(axis=-2, keepdims=True)
    norm = np.sqrt((centred**2).sum(axis=(-2, -1), keepdims=True))
    return centred / np.maximum(norm, _EPS)


def _check_mean_shape(mean_shape) -> np.ndarray:
    shape = np.asarray(mean_shape, dtype=np.float64)
    if shape.shape != (NUM_LANDMARKS, 2) or not np.all(np.isfinite(shape)):
        raise ValueError(
            f"mean_shape must be {NUM_LANDMARKS} finite [x, y] pairs, got shape {shape.shape}"
        )
    if np.allclose(shape, shape.mean(axis=0)):
        raise ValueError("mean_shape has all its points at one place")
    return shape


def align_np(points: np.ndarray, mean_shape) -> np.ndarray:
    """NumPy version of :class:`ProcrustesAlign` (``(..., N, 2)`` → aligned ``(..., N, 2)``).

    Args:
        points: ``(..., 5, 2)`` landmark sets ``(x, y)``.
        mean_shape: the ``(5, 2)`` shape to align to (any position and scale).

    Returns:
        The float64 ``(..., 5, 2)`` landmarks with translation, scale and rotation removed
        (not flattened).

    Raises:
        ValueError: ``mean_shape`` is not 5 finite points, or all its points coincide.

    A rotated, scaled and shifted template aligns back onto the normalised template:

    >>> template = np.array(TEMPLATE_SHAPE)
    >>> turn = np.array([[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]])
    >>> moved = 3.0 * template @ turn.T + [5.0, -2.0]
    >>> bool(np.allclose(align_np(moved, TEMPLATE_SHAPE), normalize_shape_np(template)))
    True
    """
    p = normalize_shape_np(points)
    q = normalize_shape_np(_check_mean_shape(mean_shape))
    a = (p * q).sum(axis=(-2, -1))
    b = (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]).sum(axis=-1)
    theta = np.arctan2(b, a)[..., None]
    cos, sin = np.cos(theta), np.sin(theta)
    x, y = p[..., 0], p[..., 1]
    return np.stack([x * cos - y * sin, x * sin + y * cos], axis=-1)


def mean_shape_from_landmarks(landmarks: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Generalised Procrustes mean of ``(M, N, 2)`` landmark sets (normalised, ``(N, 2)``).

    Starts from the first usable set and alternates aligning every set to the mean and
    re-averaging, until the mean moves by under 1e-10 or ``iterations`` run out. Sets whose
    points all coincide are left out.

    Args:
        landmarks: landmark sets, any shape that reshapes to ``(M, 5, 2)``.
        iterations: the most align-and-average rounds.

    Returns:
        The ``(5, 2)`` float64 mean shape, centred with unit norm (for ``mean_shape``).

    Raises:
        ValueError: no set has distinct points.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, NUM_LANDMARKS, 2)
    spread = landmarks - landmarks.mean(axis=1, keepdims=True)
    usable = landmarks[np.sqrt((spread**2).sum(axis=(1, 2))) > _EPS]
    if len(usable) == 0:
        raise ValueError("no landmark set with distinct points to average")
    mean = normalize_shape_np(usable[0])
    for _ in range(iterations):
        new = normalize_shape_np(align_np(usable, mean).mean(axis=0))
        if np.allclose(new, mean, atol=1e-10):
            break
        mean = new
    return mean


@keras.saving.register_keras_serializable(package="emorec")
class ProcrustesAlign(keras.layers.Layer):
    """``(..., 5, 2)`` landmarks → ``(..., 10)`` Procrustes-aligned, flattened coordinates.

    The layer has no weights; the normalised mean shape is a constant.

    Args:
        mean_shape: the ``(5, 2)`` shape to align to (default :data:`TEMPLATE_SHAPE`).
        **kwargs: Keras ``Layer`` arguments (``name``, ``dtype``...).

    Raises:
        ValueError: ``mean_shape`` is not 5 finite points, or all its points coincide.
    """

    def __init__(self, mean_shape=TEMPLATE_SHAPE, **kwargs):
        super().__init__(**kwargs)
        self.mean_shape = _check_mean_shape(mean_shape).tolist()
        self._target = normalize_shape_np(np.asarray(self.mean_shape)).astype(np.float32)

    def call(self, inputs):
        """Align every frame's landmarks to the normalised mean shape.

        Args:
            inputs: ``(..., 5, 2)`` float landmarks ``(x, y)``.

        Returns:
            The ``(..., 10)`` aligned coordinates ``[x0, y0, x1, y1, ...]``.
        """
        centred = inputs - ops.mean(inputs, axis=-2, keepdims=True)
        norm = ops.sqrt(ops.sum(ops.square(centred), axis=(-2, -1), keepdims=True))
        p = centred / ops.maximum(norm, _EPS)
        q = ops.convert_to_tensor(self._target, dtype=inputs.dtype)
        px, py = p[..., 0], p[..., 1]
        a = ops.sum(px * q[:, 0] + py * q[:, 1], axis=-1, keepdims=True)
        b = ops.sum(px * q[:, 1] - py * q[:, 0], axis=-1, keepdims=True)
        # cos θ, sin θ of the best rotation; a degenerate (all-equal) shape is
        # already zero after centring, so any rotation will do for it.
        radius = ops.maximum(ops.sqrt(a * a + b * b), _EPS)
        cos, sin = a / radius, b / radius
        aligned = ops.stack([px * cos - py * sin, px * sin + py * cos], axis=-1)
        return ops.reshape(aligned, (*ops.shape(inputs)[:-2], GEOMETRIC_FEATURES))

    def compute_output_shape(self, input_shape):
        """``(..., 5, 2)`` → ``(..., 10)``.

        Args:
            input_shape: the input's shape tuple.

        Returns:
            The output's shape tuple.
        """
        return (*input_shape[:-2], GEOMETRIC_FEATURES)

    def get_config(self):
        """Serializable constructor arguments.

        Returns:
            The base layer config plus ``mean_shape`` (a list of 5 ``[x, y]`` pairs).
        """
        return {**super().get_config(), "mean_shape": self.mean_shape}

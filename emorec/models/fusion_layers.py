"""Layers of a late-fused predictor (``emorec fuse``): exponential smoothing and the linear fusion of runs.

Both hold constants fitted on dev (no trainable weights), so the fused
predictor is a plain Keras model that exports like any other.
"""

from __future__ import annotations

import keras
from keras import ops

SMOOTHING_DIRECTIONS = ("forward", "backward")


@keras.saving.register_keras_serializable(package="emorec")
class ExponentialSmoothing(keras.layers.Layer):
    """``s_t = α x_t + (1 - α) s_{t-1}``, ``s_1 = x_1``, along time, one α per column (Chen & Jin eq. 7).

    ``backward`` runs from the last frame to the first (the paper's choice
    after a forward LSTM). α = 1 leaves a column unchanged. Equal to
    :func:`emorec.postprocess.exponential_smoothing` per recording.

    Args:
        alphas: one α in (0, 1] per column of the ``(B, T, D)`` input.
        direction: ``forward`` or ``backward``.
    """

    def __init__(self, alphas, direction: str = "backward", **kwargs):
        super().__init__(**kwargs)
        self.alphas = tuple(float(a) for a in alphas)
        if not self.alphas or not all(0.0 < a <= 1.0 for a in self.alphas):
            raise ValueError(f"alphas must be numbers in (0, 1], got {alphas}")
        if direction not in SMOOTHING_DIRECTIONS:
            raise ValueError(f"direction must be one of {SMOOTHING_DIRECTIONS}, got {direction!r}")
        self.direction = direction

    def call(self, inputs):
        """``(B, T, D)`` -> smoothed ``(B, T, D)``."""
        alpha = ops.cast(ops.convert_to_tensor(self.alphas), inputs.dtype)
        steps = ops.transpose(inputs, (1, 0, 2))
        if self.direction == "backward":
            steps = ops.flip(steps, axis=0)

        def step(state, x):
            new = alpha * x + (1.0 - alpha) * state
            return new, new

        _, smoothed = ops.scan(step, steps[0], steps)
        if self.direction == "backward":
            smoothed = ops.flip(smoothed, axis=0)
        return ops.transpose(smoothed, (1, 0, 2))

    def compute_output_shape(self, input_shape):
        """Unchanged."""
        return input_shape

    def get_config(self):
        """Constructor arguments."""
        return {**super().get_config(), "alphas": list(self.alphas), "direction": self.direction}


@keras.saving.register_keras_serializable(package="emorec")
class LinearFusion(keras.layers.Layer):
    """``Σ_k w_kd x_kd + b_d``: per output column, a fixed linear combination of K runs' predictions.

    Args:
        weights: ``K`` rows of ``D`` weights (0 for a run that does not predict a column).
        bias: ``D`` intercepts.
    """

    def __init__(self, weights, bias, **kwargs):
        super().__init__(**kwargs)
        self.fusion_weights = [[float(w) for w in row] for row in weights]
        self.fusion_bias = [float(b) for b in bias]
        if not self.fusion_weights or any(len(row) != len(self.fusion_bias) for row in self.fusion_weights):
            raise ValueError(f"weights must be K rows of {len(self.fusion_bias)} values, got {weights}")

    def call(self, inputs):
        """A list of K ``(B, T, D)`` tensors -> ``(B, T, D)``."""
        if len(inputs) != len(self.fusion_weights):
            raise ValueError(f"expected {len(self.fusion_weights)} inputs, got {len(inputs)}")
        total = ops.cast(ops.convert_to_tensor(self.fusion_bias), inputs[0].dtype)
        for row, x in zip(self.fusion_weights, inputs):
            total = total + x * ops.cast(ops.convert_to_tensor(row), x.dtype)
        return total

    def compute_output_shape(self, input_shape):
        """The shape of one input."""
        return input_shape[0]

    def get_config(self):
        """Constructor arguments."""
        return {**super().get_config(), "weights": self.fusion_weights, "bias": self.fusion_bias}

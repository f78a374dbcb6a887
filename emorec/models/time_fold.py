"""Folding the time axis into the batch so per-frame networks see every frame at once.

Folding (rather than ``TimeDistributed``) lets batch norm see all B·T frames
of a batch, and keeps the time axis dynamic for streaming.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="emorec")
class FoldTime(keras.layers.Layer):
    """``(B, T, ...)`` → ``(B · T, ...)`` so a per-frame network sees every frame."""

    def call(self, inputs):
        """Merge the batch and time axes."""
        return ops.reshape(inputs, (-1, *inputs.shape[2:]))

    def compute_output_shape(self, input_shape):
        """``(B · T, ...)``; unknown when either axis is."""
        b, t = input_shape[0], input_shape[1]
        return (None if b is None or t is None else b * t, *input_shape[2:])


@keras.saving.register_keras_serializable(package="emorec")
class UnfoldTime(keras.layers.Layer):
    """``[(B · T, ...), reference (B, T, ...)]`` → ``(B, T, ...)``."""

    def call(self, inputs):
        """Split the folded axis back into the reference's batch and time axes."""
        folded, reference = inputs
        batch_time = ops.shape(reference)[:2]
        return ops.reshape(folded, (batch_time[0], batch_time[1], *folded.shape[1:]))

    def compute_output_shape(self, input_shape):
        """Batch and time from the reference, the rest from the folded tensor."""
        folded, reference = input_shape
        return (reference[0], reference[1], *folded[1:])

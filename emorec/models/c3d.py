"""C3D (Tran et al., the Sports-1M network) and the EmotiW clip branch of Pini et al.

Backbone (:func:`build_c3d`), 16 × 112 × 112 × 3 clips → pool5, with the
layer names of the common Keras port of the Sports-1M Caffe model (the
``sports1M_weights_tf.h5`` of the C3D-for-Keras conversions): every conv is
3 × 3 × 3, stride 1, "same" padding, bias, ReLU.

    conv1 64   pool1 1×2×2   16×56×56
    conv2 128  pool2 2×2×2    8×28×28
    conv3a/b 256  pool3       4×14×14
    conv4a/b 512  pool4       2×7×7
    conv5a/b 512  zeropad5, pool5 2×2×2 valid → 1×4×4×512

pool5: 7 is odd, and Caffe's pooling rounds its output size up (7 → 4). The
Keras port gets there with ``ZeroPadding3D((0, 1, 1))`` then a valid 2 × 2 × 2
pool (``pool5_padding="keras"``, default: 9 → 4 windows starting at -1, 1, 3,
5). ``pool5_padding="caffe"`` pads one row and column at the end only, so the
windows start at 0, 2, 4, 6 as in Caffe's ceil-mode pooling (zeros never win
a max after ReLU, so padding equals Caffe's ignoring of the missing cells).
Both give 1 × 4 × 4 × 512; the paper's "4 × 4 × 512" drops the unit time axis.
The trunk has 27,655,936 parameters.

Input preprocessing (:class:`C3DInputNorm`): C3D was trained on BGR frames in
0..255 minus the Sports-1M mean clip (``train01_16_128_171_mean.npy``, shape
3 × 16 × 128 × 171 in Caffe's layout, cropped like the frames). Faces arrive
as RGB in [0, 1]; the layer multiplies by ``input_scale`` (255), flips to BGR
and subtracts the mean. By default that mean is one value per channel, the
mean clip's channel averages B, G, R = 90.25, 97.66, 101.41 (as reported by a
public C3D feature-extraction project; not re-derived here, as the mean file
is not shipped). ``mean_mode="clip"`` holds a full 16 × 112 × 112 × 3 mean,
filled from the mean file with :func:`load_c3d_mean_clip` (centre crop rows
8:120, columns 30:142, as the Keras port's test script crops frames).

``width`` multiplies every filter count (weights load only at 1) and
``head_padding: same`` lets the head run on the smaller pool5 of frames under
112 pixels (the demo); trunk convolutions start from He initialisation, the
paper's rule for layers without pretrained weights.

The clip branch (:func:`build_emotiw_clip_branch`, the paper's "C3D branch"):
frozen pool5 4 × 4 × 512 → max-pool 2 × 2 stride 2 → conv 256 2 × 2 ("valid":
2 × 2 → 1 × 1) → batch norm → ReLU → dropout → FC 256 → batch norm → ReLU
(``features``) → dropout → softmax ``num_classes``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import ops

from emorec.errors import ConfigError
from emorec.models.emotiw_common import (
    HE_INIT,
    NUM_CLASSES,
    OUTPUT_CLASS,
    OUTPUT_FEATURES,
    check_keep_prob,
    check_num_classes,
    conv_bn_relu,
    dense_bn_relu,
    dropout,
    softmax_classifier,
)
from emorec.models.h5_weights import load_h5_weights_by_name

C3D_FRAMES = 16
C3D_INPUT_SIZE = 112
C3D_POOL5_SHAPE = (1, 4, 4, 512)
BACKBONE_NAME = "c3d"
# (layer name, filters) of the convolutions, in order; a pool follows the last of each group.
C3D_CONVS = (
    ("conv1", 64),
    ("conv2", 128),
    ("conv3a", 256),
    ("conv3b", 256),
    ("conv4a", 512),
    ("conv4b", 512),
    ("conv5a", 512),
    ("conv5b", 512),
)
C3D_POOLS = {
    "conv1": ("pool1", (1, 2, 2)),
    "conv2": ("pool2", (2, 2, 2)),
    "conv3b": ("pool3", (2, 2, 2)),
    "conv4b": ("pool4", (2, 2, 2)),
    "conv5b": ("pool5", (2, 2, 2)),
}
POOL5_PADDINGS = {"keras": ((0, 0), (1, 1), (1, 1)), "caffe": ((0, 0), (0, 1), (0, 1))}
SPORTS1M_MEAN_BGR = (90.25164677347574, 97.65700354418385, 101.4083346052324)
MEAN_MODES = ("channel", "clip")
HEAD_PADDINGS = ("valid", "same")
# Where the Keras port's test script crops a 112 x 112 clip out of 128 x 171 frames.
MEAN_CLIP_CROP = (slice(8, 120), slice(30, 142))


@keras.saving.register_keras_serializable(package="emorec")
class C3DInputNorm(keras.layers.Layer):
    """RGB clips in [0, 1] → C3D's input: ``x · input_scale``, RGB → BGR, minus the mean.

    The mean is a non-trainable weight (so a loaded mean clip travels in
    ``.keras`` files): shape ``(3,)`` for ``mean_mode="channel"``, ``(T, H, W, 3)``
    for ``"clip"``; both start at ``channel_mean`` (BGR).
    """

    def __init__(
        self,
        mean_mode: str = "channel",
        channel_mean=SPORTS1M_MEAN_BGR,
        input_scale: float = 255.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mean_mode not in MEAN_MODES:
            raise ConfigError(
                f"c3d mean_mode must be one of {', '.join(MEAN_MODES)}, got {mean_mode!r}"
            )
        channel_mean = tuple(float(v) for v in channel_mean)
        if len(channel_mean) != 3:
            raise ConfigError(f"c3d channel_mean needs 3 values (B, G, R), got {channel_mean}")
        self.mean_mode = mean_mode
        self.channel_mean = channel_mean
        self.input_scale = float(input_scale)

    def build(self, input_shape):
        """Create the mean weight (shape from ``mean_mode`` and the clip shape)."""
        shape = (3,) if self.mean_mode == "channel" else tuple(int(d) for d in input_shape[1:])
        start = np.broadcast_to(np.asarray(self.channel_mean, "float32"), shape).copy()
        self.mean = self.add_weight(
            name="mean",
            shape=shape,
            initializer=keras.initializers.Constant(start),
            trainable=False,
        )

    def call(self, inputs):
        """Scale, flip the channel axis to BGR and subtract the mean."""
        bgr = ops.flip(ops.cast(inputs, "float32"), axis=-1) * self.input_scale
        return bgr - self.mean

    def compute_output_shape(self, input_shape):
        """Shape is unchanged."""
        return input_shape

    def get_config(self):
        """Serializable constructor arguments."""
        return {
            **super().get_config(),
            "mean_mode": self.mean_mode,
            "channel_mean": list(self.channel_mean),
            "input_scale": self.input_scale,
        }


def build_c3d(
    *,
    frames: int = C3D_FRAMES,
    input_size: int = C3D_INPUT_SIZE,
    pool5_padding: str = "keras",
    width: float = 1.0,
    name: str = BACKBONE_NAME,
) -> keras.Model:
    """Build the C3D trunk up to pool5 (Keras-port layer names).

    Args:
        frames: clip length (16).
        input_size: frame side (112).
        pool5_padding: ``"keras"`` (the Keras port's symmetric zero padding,
            default) or ``"caffe"`` (ceil-mode windows), see the module docstring.
        width: multiplier of every convolution's filter count (1 = C3D; the Sports-1M
            weights fit only 1); smaller trunks are for training from scratch (the demo).
        name: the model's name.

    Returns:
        A functional model ``(B, T, S, S, 3)`` (BGR, mean subtracted) → pool5
        ``(B, 1, 4, 4, 512)`` for 16 × 112 × 112 clips.

    Raises:
        ConfigError: an unknown ``pool5_padding``, a width outside (0, 1] or a clip too
            small for the four time poolings.
    """
    width = float(width)
    if not 0.0 < width <= 1.0:
        raise ConfigError(f"c3d width must be in (0, 1], got {width}")
    if pool5_padding not in POOL5_PADDINGS:
        raise ConfigError(
            f"c3d pool5_padding must be one of {', '.join(POOL5_PADDINGS)}, got {pool5_padding!r}"
        )
    frames, input_size = int(frames), int(input_size)
    if frames < 16 or input_size < 16:
        raise ConfigError(
            f"C3D needs clips of at least 16 frames of 16 pixels, got {frames} × {input_size}"
        )
    inputs = keras.Input((frames, input_size, input_size, 3), name="clip_normalized")
    x = inputs
    for layer_name, filters in C3D_CONVS:
        filters = max(1, int(round(filters * width)))
        # He initialisation, as the paper initialises every layer without pretrained weights.
        x = keras.layers.Conv3D(filters, 3, padding="same", activation="relu",
                                kernel_initializer=HE_INIT, name=layer_name)(x)
        if layer_name in C3D_POOLS:
            pool_name, size = C3D_POOLS[layer_name]
            if pool_name == "pool5":
                x = keras.layers.ZeroPadding3D(POOL5_PADDINGS[pool5_padding], name="zeropad5")(x)
            x = keras.layers.MaxPooling3D(size, strides=size, padding="valid", name=pool_name)(x)
    return keras.Model(inputs, x, name=name)


def _backbone_of(model: keras.Model) -> keras.Model:
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name == BACKBONE_NAME:
            return layer
    return model


def load_c3d_weights(model: keras.Model, path: str | Path) -> keras.Model:
    """Load Sports-1M C3D weights from a Keras ``.h5`` by layer name and freeze the trunk.

    Args:
        model: a trunk from :func:`build_c3d`, or a model holding one as a layer
            named ``c3d`` (the clip branch).
        path: a Keras 1/2 file (whole-model ``model_weights/<layer>/...`` or
            weights-only ``/<layer>/...``) with layers ``conv1``, ``conv2``,
            ``conv3a``, ``conv3b``, ``conv4a``, ``conv4b``, ``conv5a``,
            ``conv5b``, each holding ``kernel`` (3, 3, 3, in, out) in the
            TensorFlow ("tf" dim-ordering) layout and ``bias`` (out,); Keras 1's
            ``<layer>_W`` / ``<layer>_b`` names are accepted. ``fc6``-``fc8`` are
            ignored. Theano-ordered files (kernels (out, in, 3, 3, 3)) fail the
            shape check: convert them first.

    Returns:
        The trunk, holding the file's weights and frozen.

    Raises:
        ConfigError: the file is unreadable or of another architecture (names the
            first mismatching layer and both shapes).
    """
    backbone = _backbone_of(model)
    load_h5_weights_by_name(backbone, path)
    backbone.trainable = False
    return backbone


def load_c3d_mean_clip(model: keras.Model, path: str | Path) -> np.ndarray:
    """Fill a ``mean_mode="clip"`` :class:`C3DInputNorm` of ``model`` from a mean-clip ``.npy``.

    Args:
        model: a model with a :class:`C3DInputNorm` layer built with ``mean_mode="clip"``.
        path: Sports-1M's ``train01_16_128_171_mean.npy``: BGR, shape
            ``(1, 3, 16, 128, 171)``, ``(3, 16, 128, 171)`` (Caffe) or
            ``(16, 128, 171, 3)``; frames larger than the model's are centre-cropped
            at rows 8:120, columns 30:142 (the Keras port's crop of 128 × 171
            frames), or a clip of exactly the model's shape is used as is.

    Returns:
        The mean clip now held by the layer, ``(T, S, S, 3)`` BGR.

    Raises:
        ConfigError: no such layer, or a file of another shape.
    """
    path = Path(path).expanduser()
    norms = [layer for layer in model.layers if isinstance(layer, C3DInputNorm)]
    if not norms or norms[0].mean_mode != "clip":
        raise ConfigError(f"{path}: the model has no C3DInputNorm layer with mean_mode 'clip'")
    layer = norms[0]
    if not path.is_file():
        raise ConfigError(f"{path}: mean clip file does not exist")
    try:
        cube = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a numeric .npy array ({exc})") from exc
    cube = np.asarray(cube, "float32")
    if cube.ndim == 5 and cube.shape[0] == 1:
        cube = cube[0]
    if cube.ndim == 4 and cube.shape[0] == 3 and cube.shape[-1] != 3:
        cube = np.transpose(cube, (1, 2, 3, 0))
    want = tuple(int(d) for d in layer.mean.shape)
    if cube.ndim == 4 and cube.shape[1:] == (128, 171, 3) and want[1:3] == (112, 112):
        rows, cols = MEAN_CLIP_CROP
        cube = cube[:, rows, cols, :]
    if cube.shape != want:
        raise ConfigError(f"{path}: mean clip of shape {cube.shape}; the model needs {want}")
    layer.mean.assign(cube)
    return cube


def build_emotiw_clip_branch(
    *,
    c3d_weights: str | None = None,
    num_classes: int = NUM_CLASSES,
    frames: int = C3D_FRAMES,
    input_size: int = C3D_INPUT_SIZE,
    pool5_padding: str = "keras",
    width: float = 1.0,
    mean_mode: str = "channel",
    channel_mean=SPORTS1M_MEAN_BGR,
    input_scale: float = 255.0,
    conv_filters: int = 256,
    head_padding: str = "valid",
    fc_units: int = 256,
    bn_momentum: float | None = None,
    conv_keep_prob: float = 0.5,
    fc_keep_prob: float = 0.5,
    freeze_backbone: bool = True,
    name: str = "emotiw_clip",
) -> keras.Model:
    """Build Pini et al.'s C3D (clip) branch.

    Args:
        c3d_weights: path of a Keras Sports-1M C3D ``.h5`` (never downloaded);
            ``None`` leaves the trunk randomly initialised.
        num_classes: softmax size (7).
        frames: clip length (16).
        input_size: face side (112).
        pool5_padding: ``"keras"`` (default) or ``"caffe"``.
        width: the trunk's filter multiplier (1 = C3D, see :func:`build_c3d`).
        mean_mode: ``"channel"`` (default) or ``"clip"`` (fill with :func:`load_c3d_mean_clip`).
        channel_mean: B, G, R means subtracted (or the clip's starting value).
        input_scale: factor taking faces to 0..255 (255 for [0, 1] faces).
        conv_filters: filters of the trained 2 × 2 conv (256).
        head_padding: ``"valid"`` (default: pool5's 4 × 4 → 2 × 2 → 1 × 1) or ``"same"`` for the
            head's max-pool and conv, which also works on the smaller pool5 of frames under 112 pixels.
        fc_units: units of the trained FC layer (256), the branch's features.
        bn_momentum: momentum of the head's batch norms (None: 0.99; C3D's trunk has none).
        conv_keep_prob: dropout keep probability between the conv and the FC layer.
        fc_keep_prob: dropout keep probability between the FC layer and the softmax.
        freeze_backbone: keep the trunk fixed (the paper trains only the head).
        name: the model's name.

    Returns:
        A model ``{"clip": (B, T, S, S, 3) RGB in [0, 1]}`` → ``{"emotion_class":
        (B, C), "features": (B, fc_units)}``.

    Raises:
        ConfigError: invalid arguments or an unusable weight file.
    """
    num_classes = check_num_classes(num_classes)
    conv_keep_prob = check_keep_prob("conv_keep_prob", conv_keep_prob)
    fc_keep_prob = check_keep_prob("fc_keep_prob", fc_keep_prob)
    if head_padding not in HEAD_PADDINGS:
        raise ConfigError(f"head_padding must be one of {', '.join(HEAD_PADDINGS)}, got {head_padding!r}")
    backbone = build_c3d(frames=frames, input_size=input_size, pool5_padding=pool5_padding, width=width)
    side = int(backbone.output.shape[2])
    if head_padding == "valid" and side < 4:
        raise ConfigError(
            f"frames of {input_size} pixels give a {side} x {side} pool5, smaller than the 4 x 4 the "
            "head's 2 x 2 pool and 2 x 2 conv need: use 112-pixel frames or head_padding same"
        )
    if c3d_weights is not None:
        load_c3d_weights(backbone, c3d_weights)
    backbone.trainable = not freeze_backbone

    clip = keras.Input((int(frames), int(input_size), int(input_size), 3), name="clip")
    x = C3DInputNorm(mean_mode, channel_mean, input_scale, name="c3d_input_norm")(clip)
    pool5 = backbone(x)
    # pool5 is (T', s, s, 512); fold the (unit) time axis into the channels.
    t, s, _, c = (int(d) for d in pool5.shape[1:])
    x = keras.layers.Permute((2, 3, 1, 4), name="clip_time_last")(pool5)
    x = keras.layers.Reshape((s, s, t * c), name="clip_pool5_map")(x)
    x = keras.layers.MaxPooling2D(2, strides=2, padding=head_padding, name="clip_pool")(x)
    conv = keras.layers.Conv2D(
        int(conv_filters),
        2,
        padding=head_padding,
        use_bias=False,
        kernel_initializer=HE_INIT,
        name="clip_conv",
    )
    x = conv_bn_relu(x, conv, "clip_conv", bn_momentum)
    x = keras.layers.Flatten(name="clip_flatten")(x)
    x = dropout(x, conv_keep_prob, "clip_conv_dropout")
    features = dense_bn_relu(x, int(fc_units), "clip_fc", bn_momentum)
    x = dropout(features, fc_keep_prob, "clip_fc_dropout")
    probs = softmax_classifier(x, num_classes, "clip_softmax")
    return keras.Model({"clip": clip}, {OUTPUT_CLASS: probs, OUTPUT_FEATURES: features}, name=name)

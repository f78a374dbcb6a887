"""FaceNet's Inception-ResNet-v1 (Sandberg's variant) and the EmotiW frame branch of Pini et al.

Backbone (:func:`build_inception_resnet_v1`), 160 × 160 × 3 → 3 × 3 × 1792, as in
David Sandberg's ``facenet`` (``src/models/inception_resnet_v1.py``, which
differs from the Inception-ResNet-v1 of Szegedy et al. in filter counts):

    stem    Conv2d_1a_3x3 32/2 valid → 2a 32 valid → 2b 64 → MaxPool_3a 3/2
            → 3b 1×1 80 valid → 4a 3×3 192 valid → 4b 3×3 256/2 valid   17×17×256
    5 × Block35 (scale 0.17): 1×1 32 | 1×1 32 → 3×3 32 | 1×1 32 → 3×3 32 → 3×3 32
    Mixed_6a: 3×3 384/2 | 1×1 192 → 3×3 192 → 3×3 256/2 | max-pool 3/2     8×8×896
    10 × Block17 (scale 0.10): 1×1 128 | 1×1 128 → 1×7 128 → 7×1 128
    Mixed_7a: 1×1 256 → 3×3 384/2 | 1×1 256 → 3×3 256/2 | 1×1 256 → 3×3 256
              → 3×3 256/2 | max-pool 3/2                                   3×3×1792
    5 × Block8 (scale 0.20): 1×1 192 | 1×1 192 → 1×3 192 → 3×1 192
    Block8_6: the same block with scale 1 and no ReLU

Every convolution but a block's closing ``<block>_Conv2d_1x1`` (bias, no batch
norm, no activation) is conv (no bias) → batch norm (no scale, momentum 0.995,
epsilon 0.001, as slim's defaults in facenet) → ReLU; a block adds ``scale ·
up`` to its input. Layer names are those of the widely circulated Keras
conversion ``facenet_keras.h5`` (``Conv2d_1a_3x3``, ``Conv2d_1a_3x3_BatchNorm``,
``Block35_1_Branch_2_Conv2d_0c_3x3``, ``Mixed_6a_Branch_1_Conv2d_1a_3x3``,
``Block8_6_Conv2d_1x1`` ...), so :func:`load_facenet_weights` can read that
file by layer name. Its ``AvgPool``/``Bottleneck`` (128-d embedding) layers
are not built.

Which block feeds the head (``output_block``): the paper takes "the output of
the fifth Inception-resnet-C block (of size 3 × 3 × 1792)". Sandberg's code
repeats Block8 five times (end point ``Mixed_8a``) and then adds a sixth
Block8 without activation (``Mixed_8b``), so the paper's fifth block is
``Block8_5`` (default). ``output_block="Block8_6"`` takes the last Block8 of the
network instead (the full trunk: 22,578,384 parameters, i.e. the Keras
conversion's 22,808,144 less the bottleneck's 229,376 + 384).

Input preprocessing (:class:`FaceNetStandardize`): faces arrive as RGB in
[0, 1] (emorec's convention) and are multiplied by ``input_scale`` = 255 to
facenet's pixel values. ``prewhiten`` (default) is facenet's per-image
standardisation used when the 20170512-110547 model (the one converted to
``facenet_keras.h5``) was trained: ``(x - mean) / max(std, 1 / sqrt(n))``
over all ``n = H·W·3`` values of one image (population std). ``fixed`` is
facenet's later ``(x - 127.5) / 128`` for models trained with fixed image
standardisation.

Options beyond the paper, for training without the pretrained weights (the
demo): ``width`` multiplies every filter count, ``repeats`` sets the number of
Block35/Block17/Block8 blocks and ``bn_momentum`` the batch norms' momentum;
the layer names stay those of the Keras conversion (weights load only at width
1 and the full repeats). Trunk convolutions start from He initialisation (the
paper's rule for layers without pretrained weights) and the batch norms are
synchronised across replicas under tf.distribute.

The frame branch (:func:`build_emotiw_frame_branch`, the paper's "CNN
branch"): frozen backbone map 3 × 3 × 1792 → conv 256 3 × 3 → batch norm → ReLU → dropout → FC 256 →
batch norm → ReLU (``features``) → dropout → softmax ``num_classes``. The
paper gives neither the conv's padding nor its stride; "valid" with stride 1
turns the 3 × 3 map into one 256-vector, so the FC layer sees 256 inputs.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import keras
from keras import ops

from emorec.errors import ConfigError
from emorec.models.emotiw_common import (
    HE_INIT,
    NUM_CLASSES,
    OUTPUT_CLASS,
    OUTPUT_FEATURES,
    batch_norm,
    check_keep_prob,
    check_num_classes,
    conv_bn_relu,
    dense_bn_relu,
    dropout,
    softmax_classifier,
)
from emorec.models.h5_weights import load_h5_weights_by_name

FACENET_INPUT_SIZE = 160
FACENET_MAP_SHAPE = (3, 3, 1792)
FACENET_BN_MOMENTUM = 0.995
BLOCK_REPEATS = (5, 10, 5)  # Block35 (Inception-ResNet-A), Block17 (-B), Block8 (-C)
FACENET_BN_EPSILON = 0.001
BACKBONE_NAME = "inception_resnet_v1"
OUTPUT_BLOCKS = ("Block8_5", "Block8_6")
STANDARDIZATIONS = ("prewhiten", "fixed")
HEAD_PADDINGS = ("valid", "same")
# Residual scales of the Inception-ResNet-A, -B and -C blocks (Sandberg's values).
BLOCK35_SCALE, BLOCK17_SCALE, BLOCK8_SCALE = 0.17, 0.10, 0.20


@keras.saving.register_keras_serializable(package="emorec")
class ScaledResidual(keras.layers.Layer):
    """``[x, up]`` → ``x + scale · up``: the residual sum closing an Inception-ResNet block."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        """Add the scaled branch output to the block input."""
        x, up = inputs
        return x + self.scale * up

    def compute_output_shape(self, input_shape):
        """The shape of the block input."""
        return input_shape[0]

    def get_config(self):
        """Serializable constructor arguments."""
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="emorec")
class FaceNetStandardize(keras.layers.Layer):
    """FaceNet's input standardisation of RGB faces (see the module docstring).

    ``prewhiten``: per image ``(x - mean) / max(std, 1 / sqrt(n))`` over all
    ``n`` values; ``fixed``: ``(x - 127.5) / 128``; both after ``x *= input_scale``.
    """

    def __init__(self, mode: str = "prewhiten", input_scale: float = 255.0, **kwargs):
        super().__init__(**kwargs)
        if mode not in STANDARDIZATIONS:
            raise ConfigError(
                f"facenet standardization must be one of {', '.join(STANDARDIZATIONS)}, "
                f"got {mode!r}"
            )
        if not float(input_scale) > 0:
            raise ConfigError(f"input_scale must be positive, got {input_scale}")
        self.mode = mode
        self.input_scale = float(input_scale)

    def call(self, inputs):
        """Standardise each image of ``(B, H, W, C)``."""
        x = ops.cast(inputs, "float32") * self.input_scale
        if self.mode == "fixed":
            return (x - 127.5) / 128.0
        axes = tuple(range(1, len(x.shape)))
        mean = ops.mean(x, axis=axes, keepdims=True)
        std = ops.sqrt(ops.mean(ops.square(x - mean), axis=axes, keepdims=True))
        count = math.prod(int(d) for d in x.shape[1:])
        return (x - mean) / ops.maximum(std, 1.0 / math.sqrt(count))

    def compute_output_shape(self, input_shape):
        """Shape is unchanged."""
        return input_shape

    def get_config(self):
        """Serializable constructor arguments."""
        return {**super().get_config(), "mode": self.mode, "input_scale": self.input_scale}


def scaled_filters(filters: int, width: float) -> int:
    """``filters`` times the trunk's ``width`` multiplier, rounded, at least 1.

    Args:
        filters: the filter count at full width.
        width: the width multiplier.

    Returns:
        ``max(1, round(filters * width))``.

    >>> scaled_filters(192, 0.125), scaled_filters(80, 1.0), scaled_filters(32, 0.01)
    (24, 80, 1)
    """
    return max(1, int(round(filters * width)))


def _scaled_conv_bn(x, filters, kernel_size, name, *, strides=1, padding="same", activation=True,
                    width=1.0, bn_momentum=FACENET_BN_MOMENTUM):
    """facenet's slim conv: conv (no bias) → batch norm (no scale) → ReLU, Keras-port names."""
    # He initialisation, as the paper initialises every layer without pretrained weights.
    x = keras.layers.Conv2D(
        scaled_filters(filters, width), kernel_size, strides=strides, padding=padding, use_bias=False,
        kernel_initializer=HE_INIT, name=name,
    )(x)
    x = batch_norm(f"{name}_BatchNorm", bn_momentum, epsilon=FACENET_BN_EPSILON, scale=False)(x)
    if activation:
        x = keras.layers.Activation("relu", name=f"{name}_Activation")(x)
    return x


def _residual_block(x, block_type: str, index: int, scale: float, activation: bool = True, width=1.0,
                    bn_momentum=FACENET_BN_MOMENTUM):
    """One Inception-ResNet block (``Block35``, ``Block17`` or ``Block8``) named ``<type>_<index>``."""
    prefix = f"{block_type}_{index}"
    _conv_bn = functools.partial(_scaled_conv_bn, width=width, bn_momentum=bn_momentum)

    def branch(number, conv_name):
        return f"{prefix}_Branch_{number}_{conv_name}"

    if block_type == "Block35":
        b0 = _conv_bn(x, 32, 1, branch(0, "Conv2d_1x1"))
        b1 = _conv_bn(x, 32, 1, branch(1, "Conv2d_0a_1x1"))
        b1 = _conv_bn(b1, 32, 3, branch(1, "Conv2d_0b_3x3"))
        b2 = _conv_bn(x, 32, 1, branch(2, "Conv2d_0a_1x1"))
        b2 = _conv_bn(b2, 32, 3, branch(2, "Conv2d_0b_3x3"))
        b2 = _conv_bn(b2, 32, 3, branch(2, "Conv2d_0c_3x3"))
        branches = [b0, b1, b2]
    elif block_type == "Block17":
        b0 = _conv_bn(x, 128, 1, branch(0, "Conv2d_1x1"))
        b1 = _conv_bn(x, 128, 1, branch(1, "Conv2d_0a_1x1"))
        b1 = _conv_bn(b1, 128, (1, 7), branch(1, "Conv2d_0b_1x7"))
        b1 = _conv_bn(b1, 128, (7, 1), branch(1, "Conv2d_0c_7x1"))
        branches = [b0, b1]
    elif block_type == "Block8":
        b0 = _conv_bn(x, 192, 1, branch(0, "Conv2d_1x1"))
        b1 = _conv_bn(x, 192, 1, branch(1, "Conv2d_0a_1x1"))
        b1 = _conv_bn(b1, 192, (1, 3), branch(1, "Conv2d_0b_1x3"))
        b1 = _conv_bn(b1, 192, (3, 1), branch(1, "Conv2d_0c_3x1"))
        branches = [b0, b1]
    else:
        raise ValueError(f"unknown Inception-ResNet block type {block_type!r}")
    mixed = keras.layers.Concatenate(name=f"{prefix}_Concatenate")(branches)
    up = keras.layers.Conv2D(x.shape[-1], 1, use_bias=True, name=f"{prefix}_Conv2d_1x1")(mixed)
    x = ScaledResidual(scale, name=f"{prefix}_ScaleSum")([x, up])
    if activation:
        x = keras.layers.Activation("relu", name=f"{prefix}_Activation")(x)
    return x


def build_inception_resnet_v1(
    *,
    input_size: int = FACENET_INPUT_SIZE,
    output_block: str = "Block8_5",
    width: float = 1.0,
    repeats: tuple[int, int, int] = BLOCK_REPEATS,
    bn_momentum: float = FACENET_BN_MOMENTUM,
    name: str = BACKBONE_NAME,
) -> keras.Model:
    """Build Sandberg's Inception-ResNet-v1 trunk, standardised faces → last Block8 map.

    Args:
        input_size: side of the square input (160 → a 3 × 3 × 1792 map).
        output_block: ``"Block8_5"`` (the paper's fifth Inception-ResNet-C block,
            default) or ``"Block8_6"`` (the trunk's last block, no ReLU).
        width: multiplier of every convolution's filter count (1 = FaceNet; the
            pretrained weights fit only 1). Smaller trunks, with the same layers
            and names, are for training from scratch on small data (the demo).
        repeats: how many Block35, Block17 and Block8 blocks (FaceNet: 5, 10, 5);
            ``output_block="Block8_6"`` adds the final Block8 after them, named
            ``Block8_<repeats[2] + 1>``.
        bn_momentum: the trunk's batch norm momentum (facenet's 0.995; a trunk
            trained from scratch for a few epochs needs faster moving averages, e.g. 0.9).
        name: the model's name.

    Returns:
        A functional model ``(B, S, S, 3)`` → ``(B, s, s, C)``, ``C`` = 1792 at width 1.

    Raises:
        ConfigError: an unknown ``output_block``, a width outside (0, 1], repeats that are
            not three positive counts, or an input too small for the stem.
    """
    if output_block not in OUTPUT_BLOCKS:
        raise ConfigError(
            f"facenet output_block must be one of {', '.join(OUTPUT_BLOCKS)}, got {output_block!r}"
        )
    width = float(width)
    if not 0.0 < width <= 1.0:
        raise ConfigError(f"facenet width must be in (0, 1], got {width}")
    repeats = tuple(int(r) for r in repeats)
    if len(repeats) != 3 or min(repeats) < 1:
        raise ConfigError(f"facenet repeats must be three positive block counts, got {repeats}")
    _conv_bn = functools.partial(_scaled_conv_bn, width=width, bn_momentum=bn_momentum)
    block = functools.partial(_residual_block, width=width, bn_momentum=bn_momentum)
    input_size = int(input_size)
    if input_size < 75:
        raise ConfigError(
            f"Inception-ResNet-v1 needs faces of at least 75 pixels, got {input_size}"
        )
    inputs = keras.Input((input_size, input_size, 3), name="face_standardized")
    x = _conv_bn(inputs, 32, 3, "Conv2d_1a_3x3", strides=2, padding="valid")
    x = _conv_bn(x, 32, 3, "Conv2d_2a_3x3", padding="valid")
    x = _conv_bn(x, 64, 3, "Conv2d_2b_3x3")
    x = keras.layers.MaxPooling2D(3, strides=2, name="MaxPool_3a_3x3")(x)
    x = _conv_bn(x, 80, 1, "Conv2d_3b_1x1", padding="valid")
    x = _conv_bn(x, 192, 3, "Conv2d_4a_3x3", padding="valid")
    x = _conv_bn(x, 256, 3, "Conv2d_4b_3x3", strides=2, padding="valid")
    for index in range(1, repeats[0] + 1):
        x = block(x, "Block35", index, BLOCK35_SCALE)

    # Reduction-A.
    b0 = _conv_bn(x, 384, 3, "Mixed_6a_Branch_0_Conv2d_1a_3x3", strides=2, padding="valid")
    b1 = _conv_bn(x, 192, 1, "Mixed_6a_Branch_1_Conv2d_0a_1x1")
    b1 = _conv_bn(b1, 192, 3, "Mixed_6a_Branch_1_Conv2d_0b_3x3")
    b1 = _conv_bn(b1, 256, 3, "Mixed_6a_Branch_1_Conv2d_1a_3x3", strides=2, padding="valid")
    b2 = keras.layers.MaxPooling2D(3, strides=2, name="Mixed_6a_Branch_2_MaxPool_1a_3x3")(x)
    x = keras.layers.Concatenate(name="Mixed_6a")([b0, b1, b2])
    for index in range(1, repeats[1] + 1):
        x = block(x, "Block17", index, BLOCK17_SCALE)

    # Reduction-B.
    b0 = _conv_bn(x, 256, 1, "Mixed_7a_Branch_0_Conv2d_0a_1x1")
    b0 = _conv_bn(b0, 384, 3, "Mixed_7a_Branch_0_Conv2d_1a_3x3", strides=2, padding="valid")
    b1 = _conv_bn(x, 256, 1, "Mixed_7a_Branch_1_Conv2d_0a_1x1")
    b1 = _conv_bn(b1, 256, 3, "Mixed_7a_Branch_1_Conv2d_1a_3x3", strides=2, padding="valid")
    b2 = _conv_bn(x, 256, 1, "Mixed_7a_Branch_2_Conv2d_0a_1x1")
    b2 = _conv_bn(b2, 256, 3, "Mixed_7a_Branch_2_Conv2d_0b_3x3")
    b2 = _conv_bn(b2, 256, 3, "Mixed_7a_Branch_2_Conv2d_1a_3x3", strides=2, padding="valid")
    b3 = keras.layers.MaxPooling2D(3, strides=2, name="Mixed_7a_Branch_3_MaxPool_1a_3x3")(x)
    x = keras.layers.Concatenate(name="Mixed_7a")([b0, b1, b2, b3])
    for index in range(1, repeats[2] + 1):
        x = block(x, "Block8", index, BLOCK8_SCALE)
    if output_block == "Block8_6":
        x = block(x, "Block8", repeats[2] + 1, 1.0, activation=False)
    return keras.Model(inputs, x, name=name)


def _backbone_of(model: keras.Model) -> keras.Model:
    """The nested Inception-ResNet-v1 of a branch model, or ``model`` itself."""
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name == BACKBONE_NAME:
            return layer
    return model


def load_facenet_weights(model: keras.Model, path: str | Path) -> keras.Model:
    """Load ``facenet_keras.h5`` (or a Keras-2 weights file of its layout) and freeze the trunk.

    Args:
        model: a trunk from :func:`build_inception_resnet_v1`, or a model holding
            one as a layer named ``inception_resnet_v1`` (the frame branch).
        path: a Keras 2 whole-model file (``model_weights/<layer>/<layer>/kernel:0``)
            or a weights-only file (``/<layer>/<layer>/kernel:0``); each conv
            stores ``kernel`` (kh, kw, in, out), each batch norm ``beta``,
            ``moving_mean``, ``moving_variance`` (no ``gamma``: scale off), each
            block's closing ``<block>_Conv2d_1x1`` ``kernel`` and ``bias``.
            Layers of the file the trunk lacks (``Bottleneck``, ``Block8_6`` when
            the trunk stops at ``Block8_5``) are ignored.

    Returns:
        The trunk, now holding the file's weights and frozen (``trainable = False``;
        its batch norms then run on their moving statistics).

    Raises:
        ConfigError: the file is unreadable or of another architecture (names the
            first mismatching layer and both shapes).
    """
    backbone = _backbone_of(model)
    load_h5_weights_by_name(backbone, path)
    backbone.trainable = False
    return backbone


def build_emotiw_frame_branch(
    *,
    facenet_weights: str | None = None,
    num_classes: int = NUM_CLASSES,
    input_size: int = FACENET_INPUT_SIZE,
    output_block: str = "Block8_5",
    width: float = 1.0,
    repeats: tuple[int, int, int] = BLOCK_REPEATS,
    bn_momentum: float | None = None,
    standardization: str = "prewhiten",
    input_scale: float = 255.0,
    conv_filters: int = 256,
    conv_kernel: int = 3,
    conv_padding: str = "valid",
    fc_units: int = 256,
    conv_keep_prob: float = 0.5,
    fc_keep_prob: float = 0.5,
    freeze_backbone: bool = True,
    name: str = "emotiw_frame",
) -> keras.Model:
    """Build Pini et al.'s CNN (frame) branch on Inception-ResNet-v1.

    Args:
        facenet_weights: path of ``facenet_keras.h5`` (never downloaded); ``None``
            leaves the trunk randomly initialised (tests, shape checks).
        num_classes: softmax size (7 for AFEW).
        input_size: face side (160 in the paper).
        output_block: ``"Block8_5"`` (paper, default) or ``"Block8_6"``.
        width: the trunk's filter multiplier (1 = FaceNet, see :func:`build_inception_resnet_v1`).
        repeats: the trunk's block counts (5, 10, 5).
        bn_momentum: momentum of every batch norm (None: facenet's 0.995 in the trunk, 0.99 in the head).
        standardization: ``"prewhiten"`` (default) or ``"fixed"``, see the module docstring.
        input_scale: factor taking the input faces to 0..255 (255 for [0, 1] faces).
        conv_filters: filters of the trained conv (256).
        conv_kernel: its kernel side (3; "valid", so the 3 × 3 map becomes 1 × 1).
        conv_padding: ``"valid"`` (default) or ``"same"``, which keeps the map's size and
            so also works on the 1 × 1 map of faces smaller than 139 pixels.
        fc_units: units of the trained FC layer (256), the branch's features.
        conv_keep_prob: dropout keep probability between the conv and the FC layer.
        fc_keep_prob: dropout keep probability between the FC layer and the softmax.
        freeze_backbone: keep the trunk fixed (the paper trains only the head).
        name: the model's name.

    Returns:
        A model ``{"face": (B, S, S, 3) RGB in [0, 1]}`` → ``{"emotion_class": (B, C),
        "features": (B, fc_units)}``.

    Raises:
        ConfigError: invalid arguments or an unusable weight file.
    """
    num_classes = check_num_classes(num_classes)
    conv_keep_prob = check_keep_prob("conv_keep_prob", conv_keep_prob)
    fc_keep_prob = check_keep_prob("fc_keep_prob", fc_keep_prob)
    if conv_padding not in HEAD_PADDINGS:
        raise ConfigError(f"conv_padding must be one of {', '.join(HEAD_PADDINGS)}, got {conv_padding!r}")
    backbone = build_inception_resnet_v1(input_size=input_size, output_block=output_block, width=width,
                                         repeats=repeats,
                                         bn_momentum=FACENET_BN_MOMENTUM if bn_momentum is None else bn_momentum)
    side = int(backbone.output.shape[1])
    if conv_padding == "valid" and side < int(conv_kernel):
        raise ConfigError(
            f"faces of {input_size} pixels give a {side} x {side} trunk map, smaller than the "
            f"{conv_kernel} x {conv_kernel} head conv: use faces of at least 139 pixels or conv_padding same"
        )
    if facenet_weights is not None:
        load_facenet_weights(backbone, facenet_weights)
    backbone.trainable = not freeze_backbone

    face = keras.Input((int(input_size), int(input_size), 3), name="face")
    x = FaceNetStandardize(standardization, input_scale, name="facenet_standardize")(face)
    feature_map = backbone(x)
    conv = keras.layers.Conv2D(
        int(conv_filters),
        int(conv_kernel),
        padding=conv_padding,
        use_bias=False,
        kernel_initializer=HE_INIT,
        name="frame_conv",
    )
    x = conv_bn_relu(feature_map, conv, "frame_conv", bn_momentum)
    x = keras.layers.Flatten(name="frame_flatten")(x)
    x = dropout(x, conv_keep_prob, "frame_conv_dropout")
    features = dense_bn_relu(x, int(fc_units), "frame_fc", bn_momentum)
    x = dropout(features, fc_keep_prob, "frame_fc_dropout")
    probs = softmax_classifier(x, num_classes, "frame_softmax")
    return keras.Model({"face": face}, {OUTPUT_CLASS: probs, OUTPUT_FEATURES: features}, name=name)

"""Pieces shared by the trained layers of Pini et al.'s (EmotiW 2017) networks.

The paper (Sec. 4.2): batch norm before every activation of the trained
layers, dropout between fully connected layers with keep probabilities
between 0.1 and 0.8, and He initialisation [16] for every layer without
pretrained weights. A layer followed by batch norm has no bias (batch norm's
beta takes its place). The batch norms of trained layers keep Keras' defaults
(momentum 0.99, epsilon 1e-3): the paper gives none. Each builder's
``bn_momentum`` overrides the momentum of every batch norm it trains (the
demo's few hundred steps need faster moving averages than 0.99, whose
statistics would still be mostly their initial values at evaluation).

Every network here returns a dict of outputs: ``emotion_class`` (softmax over
the classes) and ``features`` (what the fusion network consumes).
"""

from __future__ import annotations

import keras

from emorec.errors import ConfigError

NUM_CLASSES = 7
EMOTIW_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
HE_INIT = "he_normal"
BN_MOMENTUM = 0.99  # Keras' default, for the batch norms of trained layers
OUTPUT_CLASS = "emotion_class"
OUTPUT_FEATURES = "features"


def check_keep_prob(name: str, keep: float) -> float:
    """Validate a dropout keep probability (the paper's convention; Keras takes ``1 - keep``).

    Args:
        name: the argument's name, for the message.
        keep: probability of keeping a unit, in (0, 1]; 1 means no dropout.

    Returns:
        ``keep`` as a float.

    Raises:
        ConfigError: ``keep`` is outside (0, 1].

    >>> check_keep_prob("fc_keep", 0.5)
    0.5
    """
    keep = float(keep)
    if not 0.0 < keep <= 1.0:
        raise ConfigError(f"{name} must be a keep probability in (0, 1], got {keep}")
    return keep


def check_num_classes(num_classes: int) -> int:
    """Validate the number of classes of a softmax head.

    Args:
        num_classes: at least 2.

    Returns:
        ``num_classes`` as an int.

    Raises:
        ConfigError: fewer than 2 classes.
    """
    num_classes = int(num_classes)
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    return num_classes


def dropout(x, keep: float, name: str):
    """Dropout keeping a fraction ``keep`` of the units (identity when ``keep == 1``).

    Args:
        x: the input tensor.
        keep: the keep probability (TensorFlow 1's ``keep_prob``); 1 or more adds no layer.
        name: the layer's name.

    Returns:
        The output tensor.
    """
    if keep >= 1.0:
        return x
    return keras.layers.Dropout(1.0 - keep, name=name)(x)


def batch_norm(name: str, momentum: float | None = None, **kwargs) -> keras.layers.BatchNormalization:
    """A batch norm whose statistics are those of the global batch under tf.distribute (``synchronized``).

    Each replica would otherwise normalise with its own share of the batch, and
    a run on several replicas would not train the weights one device does.

    Args:
        name: the layer's name.
        momentum: moving statistics' momentum (None: :data:`BN_MOMENTUM`).
        **kwargs: further :class:`keras.layers.BatchNormalization` arguments.

    Returns:
        The layer (not yet called).
    """
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM if momentum is None else momentum,
                                           synchronized=True, name=name, **kwargs)


def conv_bn_relu(x, conv_layer: keras.layers.Layer, name: str, momentum: float | None = None):
    """``conv_layer`` (built without bias) → batch norm (``momentum``, default 0.99) → ReLU; layers named ``name_*``.

    Args:
        x: the input tensor.
        conv_layer: the convolution (or dense) layer to apply.
        name: the block's name: batch norm ``<name>_bn``, ReLU ``<name>_relu``.
        momentum: the batch norm's momentum (None: :data:`BN_MOMENTUM`).

    Returns:
        The output tensor.
    """
    x = conv_layer(x)
    x = batch_norm(f"{name}_bn", momentum)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def dense_bn_relu(x, units: int, name: str, momentum: float | None = None):
    """Fully connected ``units`` (He init, no bias) → batch norm → ReLU.

    Args:
        x: the input tensor.
        units: the layer's width.
        name: the dense layer's name (batch norm ``<name>_bn``, ReLU ``<name>_relu``).
        momentum: the batch norm's momentum (None: :data:`BN_MOMENTUM`).

    Returns:
        The output tensor ``(..., units)``.

    >>> x = keras.Input((5,))
    >>> keras.Model(x, dense_bn_relu(x, 3, "fc")).count_params()  # 5 x 3 kernel, 4 x 3 batch norm
    27
    """
    layer = keras.layers.Dense(units, use_bias=False, kernel_initializer=HE_INIT, name=name)
    return conv_bn_relu(x, layer, name, momentum)


def softmax_classifier(x, num_classes: int, name: str):
    """The softmax layer of a branch or of the fusion network (with bias, He init).

    Args:
        x: the input tensor ``(..., D)``.
        num_classes: the number of classes.
        name: the layer's name.

    Returns:
        Class probabilities ``(..., num_classes)``.
    """
    return keras.layers.Dense(
        num_classes, activation="softmax", kernel_initializer=HE_INIT, name=name
    )(x)

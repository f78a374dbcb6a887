"""The Tzirakis et al. visual network: ResNet-50 v1 on a face crop → 2048 features.

The trunk is ``keras.applications.ResNet50(include_top=False,
pooling="avg")`` (23,587,712 parameters for 3 input channels). The release
built slim's ``resnet_v1_50`` inside the ResNet arg scope, so by default the
trunk is rebuilt from its config with that scope's settings: batch norm
momentum 0.997 and epsilon 1e-5 (Keras: 0.99 / 1.001e-5) and L2 weight decay
1e-4 on every conv kernel (TF 1 convention ``wd · Σw² / 2``). Remaining
differences from slim, kept because the architecture is Keras': conv biases,
and the stride of a down-sampling block sits on its first 1 × 1 conv.

Inputs are float32 faces in [0, 1] as in the release (``input_norm: none``).
``input_norm: imagenet`` applies the ImageNet mean/std per channel, ``caffe``
the preprocessing Keras' own ImageNet ResNet-50 weights were trained with
(×255, RGB → BGR, minus the BGR mean); use ``caffe`` with
``visual_weights: imagenet``.

``visual_weights``: ``none`` (random He init), ``imagenet`` (Keras' ImageNet
file, read only from the local Keras cache: nothing is downloaded), or a path
to a ``.weights.h5`` file saved from a ``visual_cnn`` sub-model (or a legacy
``.h5`` ResNet-50 no-top file, loaded into the trunk).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import random
from pathlib import Path

import keras
from keras import ops

from emorec.config.base import (
    FieldError,
    Section,
    choice,
    fraction,
    non_negative_number,
    positive_int,
    positive_number,
    setting,
    text,
)
from emorec.errors import ConfigError
from emorec.schema import DEFAULT_FACE_SIZE

VISUAL_FEATURES = 2048
INPUT_NORMS = ("none", "imagenet", "caffe")
IMAGENET_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)



def _face_size(key: str, value):
    value = positive_int(key, value)
    if value < 32:
        raise FieldError(key, f"must be at least 32 for ResNet-50, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class VisualOptions(Section):
    """Settings of the ResNet-50 visual CNN."""

    face_size: int = setting(DEFAULT_FACE_SIZE, _face_size)
    visual_weights: str = setting("none", text, doc="none | imagenet | path to a .weights.h5 file")
    input_norm: str = setting("none", choice(*INPUT_NORMS), doc="none | imagenet | caffe")
    visual_weight_decay: float = setting(1.0e-4, non_negative_number, doc="TF 1 convention wd * sum(w^2) / 2")
    visual_bn_momentum: float = setting(0.997, fraction())
    visual_bn_epsilon: float = setting(1.0e-5, positive_number)

    def check(self) -> None:
        """ImageNet weights come with their own input preprocessing.

        Raises:
            FieldError: ``visual_weights: imagenet`` with an ``input_norm`` other than ``caffe``.
        """
        super().check()
        if self.visual_weights == "imagenet" and self.input_norm != "caffe":
            raise FieldError("input_norm", f"must be caffe with visual_weights: imagenet (the preprocessing "
                                           f"Keras' ImageNet ResNet-50 weights were trained with), got "
                                           f"{self.input_norm!r}")


@keras.saving.register_keras_serializable(package="emorec")
class InputNorm(keras.layers.Layer):
    """Fixed per-channel input normalisation of [0, 1] RGB faces (no weights).

    Args:
        mode: ``"none"`` (unchanged), ``"imagenet"`` (``(x − mean) / std`` with the ImageNet
            RGB statistics) or ``"caffe"`` (RGB → BGR, × 255, minus the ImageNet BGR means:
            the input of Keras' ImageNet ResNet-50 weights).
        **kwargs: Keras ``Layer`` arguments (``name``, ``dtype``...).

    Raises:
        ValueError: an unknown ``mode``.

    >>> import numpy as np
    >>> face = np.array([[[[1.0, 0.5, 0.0]]]])
    >>> [round(v, 2) for v in np.asarray(InputNorm("caffe")(face)).ravel().tolist()]
    [-103.94, 10.72, 131.32]
    """

    def __init__(self, mode: str = "none", **kwargs):
        super().__init__(**kwargs)
        if mode not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        """Apply the normalisation chosen by ``mode``.

        Args:
            inputs: ``(..., 3)`` RGB values in ``[0, 1]``.

        Returns:
            The normalised tensor, same shape and dtype.
        """
        if self.mode == "imagenet":
            mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB, dtype=inputs.dtype)
            std = ops.convert_to_tensor(IMAGENET_STD_RGB, dtype=inputs.dtype)
            return (inputs - mean) / std
        if self.mode == "caffe":
            bgr = ops.flip(inputs, axis=-1) * 255.0
            return bgr - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=inputs.dtype)
        return inputs

    def compute_output_shape(self, input_shape):
        """Shape is unchanged.

        Args:
            input_shape: the input's shape tuple.

        Returns:
            ``input_shape``.
        """
        return input_shape

    def get_config(self):
        """Serializable constructor arguments.

        Returns:
            The base layer config plus ``mode``.
        """
        return {**super().get_config(), "mode": self.mode}


def imagenet_weights_path() -> Path:
    """Where Keras caches the ImageNet no-top ResNet-50 file ($KERAS_HOME or ~/.keras).

    Returns:
        ``<KERAS_HOME or ~/.keras>/models/`` + :data:`IMAGENET_NOTOP_FILE` (not checked for
        existence; emorec never downloads it).
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models" / IMAGENET_NOTOP_FILE


@functools.cache
def _resnet50_config(face_size: int) -> dict:
    # Instantiating keras.applications.ResNet50 creates and initialises its
    # weights; keeping its config lets later builds pay for one set only. Keras
    # draws each unseeded initialiser's seed from Python's `random`, whose state
    # is put back afterwards: otherwise the first model built in a process would
    # get other weights than every later one built from the same seed.
    saved = random.getstate()
    try:
        trunk = keras.applications.ResNet50(
            include_top=False, weights=None, input_shape=(face_size, face_size, 3), pooling="avg"
        )
    finally:
        random.setstate(saved)
    return trunk.get_config()


def _resnet50_trunk(face_size: int, weight_decay, bn_momentum, bn_epsilon) -> keras.Model:
    """Keras' ResNet-50 (no top, average pool) rebuilt with slim's arg-scope settings."""
    config = copy.deepcopy(_resnet50_config(face_size))
    regularizer = (
        keras.regularizers.serialize(keras.regularizers.L2(weight_decay / 2))
        if weight_decay
        else None
    )
    # The release's arg scope initialises every conv by variance scaling on fan-in (He et al.;
    # TF 1's variance_scaling_initializer, factor 2, truncated normal); Keras' ResNet50 uses Glorot.
    he = keras.initializers.serialize(keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal"))
    for layer in config["layers"]:
        if layer["class_name"] == "Conv2D":
            layer["config"]["kernel_regularizer"] = regularizer
            layer["config"]["kernel_initializer"] = he
        elif layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = bn_momentum
            layer["config"]["epsilon"] = bn_epsilon
    return keras.Model.from_config(config)


def _check_weights_file(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"visual_weights: {path} does not exist")
    if not path.name.endswith(".h5"):
        raise ConfigError(
            f"visual_weights: {path} is not a .weights.h5 (or legacy .h5) weights file"
        )
    return path


def build_visual_cnn(
    *,
    face_size: int,
    weights: str,
    input_norm: str,
    weight_decay: float,
    bn_momentum: float,
    bn_epsilon: float,
    name: str = "visual_cnn",
) -> keras.Model:
    """Build the per-frame visual CNN ``(S, S, 3)`` in [0, 1] → ``(2048,)``.

    Keras' ResNet-50 without top, average-pooled, with the release's arg scope (He fan-in
    initialisation, L2 weight decay, batch-norm settings), after :class:`InputNorm`.

    Args:
        face_size: side ``S`` of the face crops in pixels.
        weights: ``"none"`` (random initialisation), ``"imagenet"`` (Keras' cached no-top
            file, see :func:`imagenet_weights_path`), or the path of a ``.weights.h5`` file of
            this visual CNN (or a legacy ``.h5`` file of the ResNet-50 trunk).
        input_norm: ``"none"``, ``"imagenet"`` or ``"caffe"`` (see :class:`InputNorm`).
        weight_decay: L2 weight decay in TF 1's convention ``wd · Σw² / 2`` (0 = none).
        bn_momentum: batch-norm moving-average momentum.
        bn_epsilon: batch-norm variance epsilon.
        name: the Keras model's name (the e2e models look it up as ``visual_cnn``).

    Returns:
        The CNN, input ``(B, S, S, 3)``, output ``(B, 2048)``.

    Raises:
        ConfigError: an unknown ``input_norm``; ImageNet weights not in Keras' cache; a weights
            file that is missing, has another suffix, or cannot be loaded.
    """
    weights = str(weights)
    if input_norm not in INPUT_NORMS:
        raise ConfigError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {input_norm!r}")
    legacy_file = None
    if weights == "imagenet":
        legacy_file = imagenet_weights_path()
        if not legacy_file.is_file():
            raise ConfigError(
                f"visual_weights: imagenet needs {legacy_file}, which is missing; emorec never "
                f"downloads at run time. Copy Keras' {IMAGENET_NOTOP_FILE} there (from a machine "
                "with network: keras.applications.ResNet50(weights='imagenet', "
                "include_top=False) caches it in ~/.keras/models), or pass "
                "visual_weights: none or a path to a .weights.h5 file"
            )
    elif weights != "none":
        path = _check_weights_file(Path(weights).expanduser())
        if not path.name.endswith(".weights.h5"):
            legacy_file = path
    trunk = _resnet50_trunk(face_size, weight_decay, bn_momentum, bn_epsilon)
    if legacy_file is not None:
        try:
            trunk.load_weights(str(legacy_file))
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
            raise ConfigError(
                f"visual_weights: cannot load {legacy_file} into ResNet-50: {exc}"
            ) from exc
    inputs = keras.Input((face_size, face_size, 3), name="face")
    outputs = trunk(InputNorm(input_norm, name="input_norm")(inputs))
    model = keras.Model(inputs, outputs, name=name)
    if weights not in ("none", "imagenet") and legacy_file is None:
        try:
            model.load_weights(str(Path(weights).expanduser()))
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(
                f"visual_weights: cannot load {weights} into the visual CNN "
                f"(save it with model.get_layer('visual_cnn').save_weights(...)): {exc}"
            ) from exc
    return model


def visual_cnn_from_config(config: VisualOptions) -> keras.Model:
    """Build the visual CNN from a model config (:class:`VisualOptions`).

    Args:
        config: the model config (``face_size``, ``visual_weights``, ``input_norm``,
            ``visual_weight_decay``, ``visual_bn_momentum``, ``visual_bn_epsilon``).

    Returns:
        The visual CNN (see :func:`build_visual_cnn`).

    Raises:
        ConfigError: see :func:`build_visual_cnn`.
    """
    return build_visual_cnn(
        face_size=config.face_size,
        weights=config.visual_weights,
        input_norm=config.input_norm,
        weight_decay=config.visual_weight_decay,
        bn_momentum=config.visual_bn_momentum,
        bn_epsilon=config.visual_bn_epsilon,
    )

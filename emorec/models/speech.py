"""The Tzirakis et al. speech CNN: raw 16 kHz waveform → 1280 features per 40 ms frame.

``audio_variant: code`` (default) is what the released scripts compute: each
640-sample frame is convolved on its own (zero "same" padding at the frame
edges):

    dropout 0.5 → conv 40 × 20 taps → max-pool time 2 → conv 40 × 40 taps
    → max-pool over groups of 10 adjacent channels → (320, 4) → flatten (time-major)

Both convolutions sit in the ResNet arg scope of the release: no bias, batch
norm (momentum 0.997, eps 1e-5, scale on), ReLU, He fan-in initialisation and
L2 weight decay 1e-4 in TF 1's convention ``wd · Σw² / 2`` (so the Keras
regulariser gets ``wd / 2``).

``audio_variant: paper`` is the journal text's reading: the frames of a
sequence are concatenated back into one signal (96 000 samples for 6 s) and
convolved as a whole with 5 ms (80 taps at 16 kHz) and 500 ms (4000 taps at
the pooled 8 kHz) kernels, then pooled the same way. Where the text is silent
we chose: "same" padding over the whole sequence (so a frame sees its
neighbours, and the features of a chunk depend on the chunk's edges); the
ReLU ("half-wave rectifier") after both convolutions, as a slim conv applies
it; batch norm and weight decay stay governed by ``audio_batch_norm`` and
``audio_weight_decay`` (set them to ``false`` / ``0`` for the bare text,
which mentions neither; a conv gets a bias exactly when it has no batch
norm). The output is cut back into 320 × 4 = 1280 features per frame.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from emorec.config.base import (
    Section,
    boolean,
    choice,
    fraction,
    non_negative_number,
    positive_number,
    setting,
)
from emorec.schema import FRAME_SAMPLES

AUDIO_VARIANTS = ("code", "paper")
SPEECH_FILTERS = 40
TIME_POOL = 2
CHANNEL_POOL = 10
# (first conv taps, second conv taps) per variant.
KERNEL_SIZES = {"code": (20, 40), "paper": (80, 4000)}
SPEECH_FEATURES = (FRAME_SAMPLES // TIME_POOL) * (SPEECH_FILTERS // CHANNEL_POOL)  # 1280



@dataclasses.dataclass(frozen=True)
class SpeechLayerOptions(Section):
    """Settings of the speech CNN's layers (the release's ResNet arg scope)."""

    audio_dropout: float = setting(0.5, fraction(), doc="dropout on the raw waveform, training only")
    audio_batch_norm: bool = setting(True, boolean, doc="the release's arg scope; the paper text has none")
    audio_weight_decay: float = setting(1.0e-4, non_negative_number, doc="TF 1 convention wd * sum(w^2) / 2")
    audio_bn_momentum: float = setting(0.997, fraction())
    audio_bn_epsilon: float = setting(1.0e-5, positive_number)


@dataclasses.dataclass(frozen=True)
class SpeechOptions(SpeechLayerOptions):
    """Speech CNN settings of the e2e models: the layers and the code/paper reading."""

    audio_variant: str = setting("code", choice(*AUDIO_VARIANTS),
                                 doc="code = per-frame 20/40-tap convs (release); paper = 80/4000 taps")


@keras.saving.register_keras_serializable(package="emorec")
class ChannelMaxPool(keras.layers.Layer):
    """Max over groups of ``pool_size`` adjacent channels (last axis) at each position.

    The layer has no weights.

    Args:
        pool_size: channels per group (10 in the speech CNN: 40 channels → 4).
        **kwargs: Keras ``Layer`` arguments (``name``, ``dtype``...).

    >>> import numpy as np
    >>> np.asarray(ChannelMaxPool(2)(np.array([[1.0, 3.0, 2.0, 0.0]]))).tolist()
    [[3.0, 2.0]]
    """

    def __init__(self, pool_size: int, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)

    def call(self, inputs):
        """``(..., C)`` → ``(..., C // pool_size)``; group ``g`` = channels ``[p g, p (g + 1))``.

        Args:
            inputs: a tensor whose last axis ``C`` is known and a multiple of ``pool_size``.

        Returns:
            The ``(..., C // pool_size)`` group maxima.

        Raises:
            ValueError: ``C`` is not a multiple of ``pool_size``.
        """
        channels = inputs.shape[-1]
        if channels % self.pool_size:
            raise ValueError(f"{channels} channels cannot be pooled in groups of {self.pool_size}")
        dynamic = ops.shape(inputs)
        grouped = ops.reshape(
            inputs, (*dynamic[:-1], channels // self.pool_size, self.pool_size)
        )
        return ops.max(grouped, axis=-1)

    def compute_output_shape(self, input_shape):
        """Same shape with the last axis divided by ``pool_size``.

        Args:
            input_shape: the input's shape tuple.

        Returns:
            The output's shape tuple.

        >>> ChannelMaxPool(10).compute_output_shape((None, 320, 40))
        (None, 320, 4)
        """
        return (*input_shape[:-1], input_shape[-1] // self.pool_size)

    def get_config(self):
        """Serializable constructor arguments.

        Returns:
            The base layer config plus ``pool_size``.
        """
        return {**super().get_config(), "pool_size": self.pool_size}


def _conv_block(x, filters, taps, *, batch_norm, weight_decay, bn_momentum, bn_epsilon, name):
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    x = keras.layers.Conv1D(
        filters,
        taps,
        padding="same",
        use_bias=not batch_norm,
        kernel_initializer="he_normal",
        kernel_regularizer=regularizer,
        name=f"{name}_conv",
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(
            momentum=bn_momentum, epsilon=bn_epsilon, scale=True, name=f"{name}_bn"
        )(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def build_speech_cnn(
    *,
    variant: str,
    dropout: float,
    batch_norm: bool,
    weight_decay: float,
    bn_momentum: float,
    bn_epsilon: float,
    name: str = "speech_cnn",
) -> keras.Model:
    """Build the speech CNN: 1280 features per 40 ms frame of raw 16 kHz audio.

    Args:
        variant: ``"code"`` (each 640-sample frame alone, 20/40-tap convolutions, the
            release) or ``"paper"`` (the frames of a sequence as one signal, 80/4000 taps).
        dropout: dropout rate on the raw waveform (training only).
        batch_norm: batch norm after each convolution (then the convolutions have no bias).
        weight_decay: L2 weight decay in TF 1's convention ``wd · Σw² / 2`` (0 = none).
        bn_momentum: batch-norm moving-average momentum.
        bn_epsilon: batch-norm variance epsilon.
        name: the Keras model's name (the e2e models look it up as ``speech_cnn``).

    Returns:
        The CNN: ``code`` maps ``(B, 640)`` to ``(B, 1280)``; ``paper`` maps ``(B, T, 640)``
        to ``(B, T, 1280)``.

    Raises:
        ValueError: an unknown ``variant``.
    """
    if variant not in AUDIO_VARIANTS:
        raise ValueError(f"audio_variant must be one of {AUDIO_VARIANTS}, got {variant!r}")
    block = dict(
        batch_norm=batch_norm,
        weight_decay=weight_decay,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
    )
    taps1, taps2 = KERNEL_SIZES[variant]
    if variant == "code":
        inputs = keras.Input((FRAME_SAMPLES,), name="frame")
        x = keras.layers.Reshape((FRAME_SAMPLES, 1), name="to_signal")(inputs)
    else:
        inputs = keras.Input((None, FRAME_SAMPLES), name="audio")
        # The frames of a sequence, back to back, are its continuous waveform.
        x = keras.layers.Reshape((-1, 1), name="to_signal")(inputs)
    x = keras.layers.Dropout(dropout, name="input_dropout")(x)
    x = _conv_block(x, SPEECH_FILTERS, taps1, name="conv1", **block)
    x = keras.layers.MaxPooling1D(TIME_POOL, name="time_pool")(x)
    x = _conv_block(x, SPEECH_FILTERS, taps2, name="conv2", **block)
    x = ChannelMaxPool(CHANNEL_POOL, name="channel_pool")(x)
    if variant == "code":
        outputs = keras.layers.Flatten(name="flatten")(x)
    else:
        # 320 pooled steps × 4 channels of each frame, time-major as in `code`.
        outputs = keras.layers.Reshape((-1, SPEECH_FEATURES), name="to_frames")(x)
    return keras.Model(inputs, outputs, name=name)


def speech_cnn_from_config(config: SpeechLayerOptions, variant: str | None = None) -> keras.Model:
    """Build the speech CNN from a model config (:class:`SpeechOptions`).

    Args:
        config: the model config (``audio_dropout``, ``audio_batch_norm``,
            ``audio_weight_decay``, ``audio_bn_momentum``, ``audio_bn_epsilon`` and, unless
            ``variant`` is given, ``audio_variant``).
        variant: ``"code"`` or ``"paper"`` to override the config's reading (the audio
            auto-encoder always uses ``"code"``); None keeps it.

    Returns:
        The speech CNN (see :func:`build_speech_cnn`).

    Raises:
        ValueError: an unknown variant.
    """
    return build_speech_cnn(
        variant=variant or config.audio_variant,
        dropout=config.audio_dropout,
        batch_norm=config.audio_batch_norm,
        weight_decay=config.audio_weight_decay,
        bn_momentum=config.audio_bn_momentum,
        bn_epsilon=config.audio_bn_epsilon,
    )

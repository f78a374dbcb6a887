"""Nguyen et al.'s 2D convolutional auto-encoder of one face crop (paper Table I).

Encoder, per frame (``S`` = face size, 96 in the paper)::

    S×S×3  → bottleneck block [1×1, 8; 3×3 stride 2, 8; 1×1, 16]  → S/2×S/2×16
           → bottleneck block [1×1, 16; 3×3 stride 2, 16; 1×1, 32] → S/4×S/4×32
           → flatten (18432 for S = 96) → FC 2048 (the latent)

Decoder, the mirror (Table I's two DeConv2D rows; the FC back to 18432 is
implied by the reshape)::

    2048 → FC 18432 → reshape S/4×S/4×32
         → transposed block [1×1, 16; 3×3 stride 2, 16; 1×1, 16] → S/2×S/2×16
         → transposed block [1×1, 8; 3×3 stride 2, 8; 1×1, 3]    → S×S×3

A block is ResNet's bottleneck (He et al., v1 ordering): three convolutions
with a LeakyReLU after the first two, the sum with the shortcut, then a
LeakyReLU ("LReLU after each convolutional and de-convolutional layer"). The
shortcut is a 1×1 projection because every block changes both resolution and
depth: on every other pixel in the encoder (= a 1×1 stride-2 conv), after a
nearest-neighbour ×2 upsampling in the decoder (the paper does not describe the
decoder's shortcut). The paper
gives neither the LReLU slope nor an activation for the FC layers: we use
TensorFlow 1's ``leaky_relu`` default slope 0.2 (the paper's implementation
was TensorFlow) everywhere, the FC layers included, and no batch norm (the
paper mentions none).

Output activation: the last block ends in a **sigmoid** instead of the
LeakyReLU. emorec feeds faces scaled to [0, 1] (as the Tzirakis code does;
the paper normalised them to [−1, 1]), and the reconstruction target is the
input itself, so the sigmoid's range is exactly the target's range and the
decoder cannot waste capacity on values no pixel can take.
"""

from __future__ import annotations

import dataclasses

import keras

from emorec.config.base import FieldError, Section, fraction, positive_int, setting
from emorec.models.wide_dense import WideDense
from emorec.schema import DEFAULT_FACE_SIZE

FACE_CHANNELS = 3
# (bottleneck width, output depth) of the two encoder blocks, Table I.
ENCODER_BLOCKS = ((8, 16), (16, 32))
# (bottleneck width, output depth) of the two decoder blocks, Table I.
DECODER_BLOCKS = ((16, 16), (8, FACE_CHANNELS))
DOWNSAMPLING = 4  # two stride-2 blocks



def _face_size(key: str, value):
    value = positive_int(key, value)
    if value % DOWNSAMPLING:
        raise FieldError(key, f"must be a multiple of {DOWNSAMPLING}, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class LeakyOptions(Section):
    """The LeakyReLU slope of the auto-encoders (TF 1's leaky_relu default; the paper gives none)."""

    leaky_slope: float = setting(0.2, fraction())


@dataclasses.dataclass(frozen=True)
class FaceAEOptions(Section):
    """Settings of the face auto-encoder."""

    face_size: int = setting(DEFAULT_FACE_SIZE, _face_size)
    face_latent: int = setting(2048, positive_int, doc="FC 18432 -> 2048 (Table I)")


def face_feature_shape(face_size: int) -> tuple[int, int, int]:
    """Shape of the last encoder block's output: ``(S/4, S/4, 32)``.

    Args:
        face_size: side ``S`` of the square face crops in pixels (a multiple of 4).

    Returns:
        ``(S/4, S/4, 32)``, the map the decoder's FC layer reshapes to.

    Raises:
        ValueError: ``face_size`` is not a multiple of 4.

    >>> face_feature_shape(96), face_feature_shape(48)
    ((24, 24, 32), (12, 12, 32))
    """
    if face_size % DOWNSAMPLING:
        raise ValueError(f"face_size must be a multiple of {DOWNSAMPLING}, got {face_size}")
    side = face_size // DOWNSAMPLING
    return (side, side, ENCODER_BLOCKS[-1][1])


def _bottleneck(x, width, depth, *, transpose, slope, name, last_activation=None):
    conv = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    y = conv(width, 1, padding="same", name=f"{name}_a")(x)
    y = keras.layers.LeakyReLU(slope, name=f"{name}_a_lrelu")(y)
    y = conv(width, 3, strides=2, padding="same", name=f"{name}_b")(y)
    y = keras.layers.LeakyReLU(slope, name=f"{name}_b_lrelu")(y)
    y = conv(depth, 1, padding="same", name=f"{name}_c")(y)
    # The projection shortcut as resampling + a 1×1 conv. In the encoder this IS a 1×1
    # stride-2 conv (which samples every other pixel); written out because TF 2.21's
    # oneDNN kernels crash (SIGSEGV) on the gradient of 1×1 stride-2 (transposed) convs
    # at 96×96. In the decoder, nearest-neighbour upsampling feeds the 1×1 conv every
    # output pixel, where a 1×1 stride-2 transposed conv would leave 3 in 4 at the bias.
    if transpose:
        resampled = keras.layers.UpSampling2D(2, name=f"{name}_shortcut_upsample")(x)
    else:
        resampled = keras.layers.MaxPooling2D(1, strides=2, name=f"{name}_shortcut_subsample")(x)
    shortcut = conv(depth, 1, padding="same", name=f"{name}_shortcut")(resampled)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    if last_activation is not None:
        return keras.layers.Activation(last_activation, name=f"{name}_{last_activation}")(y)
    return keras.layers.LeakyReLU(slope, name=f"{name}_lrelu")(y)


def build_face_encoder(*, face_size: int, latent: int, slope: float, name: str = "face_encoder") -> keras.Model:
    """``(S, S, 3)`` face in [0, 1] → ``(latent,)`` code.

    Args:
        face_size: side ``S`` of the face crops in pixels (a multiple of 4).
        latent: width of the code (the FC layer after the flattened blocks; 2048 in Table I).
        slope: negative slope of every LeakyReLU.
        name: the Keras model's name (the offline models look it up as ``face_encoder``).

    Returns:
        The encoder model, input ``(B, S, S, 3)``, output ``(B, latent)``.

    Raises:
        ValueError: ``face_size`` is not a multiple of 4.
    """
    face_feature_shape(face_size)
    inputs = keras.Input((face_size, face_size, FACE_CHANNELS), name="face")
    x = inputs
    for k, (width, depth) in enumerate(ENCODER_BLOCKS, start=1):
        x = _bottleneck(x, width, depth, transpose=False, slope=slope, name=f"enc_block{k}")
    x = keras.layers.Flatten(name="flatten")(x)
    x = WideDense(latent, name="fc_latent")(x)
    outputs = keras.layers.LeakyReLU(slope, name="fc_latent_lrelu")(x)
    return keras.Model(inputs, outputs, name=name)


def build_face_decoder(*, face_size: int, latent: int, slope: float, name: str = "face_decoder") -> keras.Model:
    """``(latent,)`` code → ``(S, S, 3)`` reconstruction in (0, 1).

    Args:
        face_size: side ``S`` of the reconstructed faces in pixels (a multiple of 4).
        latent: width of the code the decoder reads.
        slope: negative slope of every hidden LeakyReLU (the output is a sigmoid).
        name: the Keras model's name.

    Returns:
        The decoder model, input ``(B, latent)``, output ``(B, S, S, 3)``.

    Raises:
        ValueError: ``face_size`` is not a multiple of 4.
    """
    shape = face_feature_shape(face_size)
    inputs = keras.Input((latent,), name="code")
    x = WideDense(shape[0] * shape[1] * shape[2], name="fc_expand")(inputs)
    x = keras.layers.LeakyReLU(slope, name="fc_expand_lrelu")(x)
    x = keras.layers.Reshape(shape, name="to_map")(x)
    last = len(DECODER_BLOCKS)
    for k, (width, depth) in enumerate(DECODER_BLOCKS, start=1):
        x = _bottleneck(
            x, width, depth, transpose=True, slope=slope, name=f"dec_block{k}",
            last_activation="sigmoid" if k == last else None,
        )
    return keras.Model(inputs, x, name=name)


def face_ae_from_config(config) -> tuple[keras.Model, keras.Model]:
    """The face auto-encoder's encoder and decoder, built from a model config.

    Args:
        config: a model config with :class:`FaceAEOptions` and :class:`LeakyOptions`
            (``face_size``, ``face_latent``, ``leaky_slope``).

    Returns:
        ``(encoder, decoder)`` Keras models (see :func:`build_face_encoder`,
        :func:`build_face_decoder`), not sharing weights.
    """
    kwargs = dict(face_size=config.face_size, latent=config.face_latent, slope=config.leaky_slope)
    return build_face_encoder(**kwargs), build_face_decoder(**kwargs)

"""Nguyen et al.'s 1D convolutional auto-encoder of one 40 ms audio frame (paper Table II).

The encoder is the Tzirakis et al. speech CNN of :mod:`emorec.models.speech`
(release settings: dropout 0.5 on the waveform, conv 40 × 20 taps, max-pool
time 2, conv 40 × 40 taps, batch norm, ReLU, He init, L2), applied to each
640-sample frame. The paper, its Table II and the Tzirakis code disagree in
two places; each reading is an option and the default is the one that the
rest of the paper (and the code) is consistent with:

``audio_pool`` — where the second pooling acts:

- ``channels`` (default): max over groups of 10 adjacent channels at each of
  the 320 time steps → 320 × 4, as the Tzirakis code does. Table II's decoder
  starts from "1 × 320 × 4", which only this reading produces.
- ``time``: Table II's encoder row "Maxpooling [1, 10, 1] → 1 × 32 × 40", a
  pooling over time by 10. The decoder then mirrors it (reshape 32 × 40,
  upsample time × 10 → 320 × 40) before Table II's layers.

Both flatten to 1280 features.

``audio_latent`` — the size of the code fed to the fusion:

- ``null`` (default): the 1280 pooled conv features themselves. Section IV-B
  extracts "1,280 auditory features via ϕ1D(S_t)" and fuses them with the
  2048 visual ones into "a 3,328 dimensional multimodal representation".
- an integer, e.g. ``640`` = Table II: an encoder FC 1280 → 640 and a decoder
  FC 640 → 1280 (the "two fully-connected layers" of Section III-B2).

Decoder (Table II): [FC →] 1280 → reshape 320 × 4 → DeConv1D 20 taps, 40
channels → 320 × 40 → upsample × 2 → 640 × 40 → DeConv1D 40 taps, 1 channel
→ 640. The paper names no decoder activation; like the face decoder we put a
LeakyReLU after every hidden layer (FC included) and keep the output linear,
because the waveform (raw or normalised per recording) is not bounded.
"""

from __future__ import annotations

import dataclasses

import keras

from emorec.config.base import choice, optional, positive_int, setting
from emorec.models.speech import (
    CHANNEL_POOL,
    SPEECH_FEATURES,
    SPEECH_FILTERS,
    TIME_POOL,
    SpeechLayerOptions,
    speech_cnn_from_config,
)
from emorec.schema import FRAME_SAMPLES

AUDIO_POOLS = ("channels", "time")
DECONV1_TAPS = 20
DECONV2_TAPS = 40



@dataclasses.dataclass(frozen=True)
class AudioAEOptions(SpeechLayerOptions):
    """Settings of the audio auto-encoder: the speech CNN's layers, its pooling and its code."""

    audio_pool: str = setting("channels", choice(*AUDIO_POOLS), doc="channels (Tzirakis code) | time (Table II)")
    audio_latent: int | None = setting(None, optional(positive_int),
                                       doc="null = the 1280 pooled features (the text) | 640 (Table II)")


def pooled_shape(pool: str) -> tuple[int, int]:
    """(time, channels) of the encoder's pooled conv output: (320, 4) or (32, 40).

    Args:
        pool: ``"channels"`` (max over groups of 10 channels, the Tzirakis code) or
            ``"time"`` (max over 10 time steps, Table II).

    Returns:
        ``(time steps, channels)``; both flatten to 1280 features.

    Raises:
        ValueError: an unknown ``pool``.

    >>> pooled_shape("channels"), pooled_shape("time")
    ((320, 4), (32, 40))
    """
    steps = FRAME_SAMPLES // TIME_POOL
    if pool == "channels":
        return (steps, SPEECH_FILTERS // CHANNEL_POOL)
    if pool == "time":
        return (steps // CHANNEL_POOL, SPEECH_FILTERS)
    raise ValueError(f"audio_pool must be one of {AUDIO_POOLS}, got {pool!r}")


def audio_latent_size(config: AudioAEOptions) -> int:
    """Width of the audio code: ``audio_latent`` or the 1280 pooled conv features.

    Args:
        config: the audio auto-encoder settings.

    Returns:
        The number of features the encoder outputs per frame.

    >>> audio_latent_size(AudioAEOptions()), audio_latent_size(AudioAEOptions(audio_latent=640))
    (1280, 640)
    """
    return int(config.audio_latent or SPEECH_FEATURES)


def build_audio_encoder(config: AudioAEOptions, *, slope: float, name: str = "audio_encoder") -> keras.Model:
    """``(640,)`` frame → ``(audio_latent,)`` code, on the speech CNN.

    Args:
        config: the audio auto-encoder settings (the layers of :mod:`emorec.models.speech`,
            ``audio_pool``, ``audio_latent``).
        slope: negative slope of the LeakyReLU after the optional latent FC layer.
        name: the Keras model's name (the offline models look it up as ``audio_encoder``).

    Returns:
        The encoder model, input ``(B, 640)``, output ``(B, audio_latent_size(config))``.

    Raises:
        ValueError: an unknown ``audio_pool``.
    """
    pooled_shape(config.audio_pool)
    cnn = speech_cnn_from_config(config, variant="code")
    if config.audio_pool == "channels":
        features = cnn.output
    else:
        # Same convolutions (same layers), Table II's time pooling in place of the channel pooling.
        conv = cnn.get_layer("conv2_relu").output
        pooled = keras.layers.MaxPooling1D(CHANNEL_POOL, name="time_pool_10")(conv)
        features = keras.layers.Flatten(name="flatten_time_pool")(pooled)
    if config.audio_latent:
        features = keras.layers.Dense(config.audio_latent, name="fc_latent")(features)
        features = keras.layers.LeakyReLU(slope, name="fc_latent_lrelu")(features)
    return keras.Model(cnn.input, features, name=name)


def build_audio_decoder(config: AudioAEOptions, *, slope: float, name: str = "audio_decoder") -> keras.Model:
    """``(audio_latent,)`` code → ``(640,)`` reconstructed frame (linear output).

    Args:
        config: the audio auto-encoder settings (``audio_pool`` and ``audio_latent`` shape
            the decoder).
        slope: negative slope of the LeakyReLU after every hidden layer.
        name: the Keras model's name.

    Returns:
        The decoder model, input ``(B, audio_latent_size(config))``, output ``(B, 640)``.

    Raises:
        ValueError: an unknown ``audio_pool``.
    """
    steps, channels = pooled_shape(config.audio_pool)
    inputs = keras.Input((audio_latent_size(config),), name="code")
    x = inputs
    if config.audio_latent:
        x = keras.layers.Dense(SPEECH_FEATURES, name="fc_expand")(x)
        x = keras.layers.LeakyReLU(slope, name="fc_expand_lrelu")(x)
    x = keras.layers.Reshape((steps, channels), name="to_signal")(x)
    if config.audio_pool == "time":
        x = keras.layers.UpSampling1D(CHANNEL_POOL, name="upsample_time_10")(x)
    x = keras.layers.Conv1DTranspose(SPEECH_FILTERS, DECONV1_TAPS, padding="same", name="deconv1")(x)
    x = keras.layers.LeakyReLU(slope, name="deconv1_lrelu")(x)
    x = keras.layers.UpSampling1D(TIME_POOL, name="upsample")(x)
    x = keras.layers.Conv1DTranspose(1, DECONV2_TAPS, padding="same", name="deconv2")(x)
    outputs = keras.layers.Reshape((FRAME_SAMPLES,), name="to_frame")(x)
    return keras.Model(inputs, outputs, name=name)

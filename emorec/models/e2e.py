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

Streaming: :func:`build_streaming_model` returns a model sharing every weight
with the offline one that maps ``(inputs chunk, states)`` to ``{"emotion",
"states"}``; :func:`build_streaming_head` does the same from features. The
state layout is documented in :mod:`emorec.models.recurrent`.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from emorec.errors import ConfigError
from emorec.models.geometry import GEOMETRY_DEFAULTS, ProcrustesAlign
from emorec.models.recurrent import (
    RECURRENT_CHOICES,
    RECURRENT_DEFAULTS,
    recurrent_head_from_config,
)
from emorec.models.registry import build_model, register_model
from emorec.models.speech import AUDIO_VARIANTS, SPEECH_DEFAULTS, speech_cnn_from_config
from emorec.models.time_fold import FoldTime, UnfoldTime
from emorec.models.visual import INPUT_NORMS, VISUAL_DEFAULTS, visual_cnn_from_config
from emorec.schema import FRAME_SAMPLES, NUM_LANDMARKS

FEATURES_LAYER = "features"
HEAD_LAYER = "recurrent"
SPEECH_CNN = "speech_cnn"
VISUAL_CNN = "visual_cnn"

_AV_INIT_DEFAULTS = {
    "init_audio": None,  # trained e2e_audio (.keras, or .weights.h5 built from this config)
    "init_video": None,  # trained e2e_video
}

DEFAULTS = {
    "e2e_audio": {**SPEECH_DEFAULTS, **RECURRENT_DEFAULTS},
    "e2e_video": {**VISUAL_DEFAULTS, **RECURRENT_DEFAULTS},
    "e2e_av": {**SPEECH_DEFAULTS, **VISUAL_DEFAULTS, **RECURRENT_DEFAULTS, **_AV_INIT_DEFAULTS},
    "e2e_av_geometric": {
        **SPEECH_DEFAULTS,
        **VISUAL_DEFAULTS,
        **RECURRENT_DEFAULTS,
        **GEOMETRY_DEFAULTS,
        "freeze_cnns": True,
        **_AV_INIT_DEFAULTS,
        "init_av": None,  # trained e2e_av: both CNNs from it (applied after init_audio/video)
    },
}


# -- configuration ----------------------------------------------------------------------------


def _choice(cfg, key, choices, model_name):
    if cfg[key] not in choices:
        raise ConfigError(
            f"model {model_name}: {key} must be one of {', '.join(map(str, choices))}, "
            f"got {cfg[key]!r}"
        )


def resolve_config(model_name: str, config: dict | None) -> dict:
    """Fill the documented defaults into a ``model:`` config section and validate it."""
    defaults = DEFAULTS[model_name]
    config = dict(config or {})
    name = config.pop("name", model_name)
    if name != model_name:
        raise ConfigError(f"model config names {name!r} but is used to build {model_name!r}")
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ConfigError(
            f"model {model_name}: unknown config key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(defaults))}"
        )
    cfg = {**defaults, **config}
    if "audio_variant" in cfg:
        _choice(cfg, "audio_variant", AUDIO_VARIANTS, model_name)
        if not 0.0 <= float(cfg["audio_dropout"]) < 1.0:
            raise ConfigError(f"model {model_name}: audio_dropout must be in [0, 1)")
    if "input_norm" in cfg:
        _choice(cfg, "input_norm", INPUT_NORMS, model_name)
        if int(cfg["face_size"]) < 32:
            raise ConfigError(f"model {model_name}: face_size must be at least 32 for ResNet-50")
    _choice(cfg, "recurrent", RECURRENT_CHOICES, model_name)
    for key in ("lstm_units", "lstm_layers"):
        if int(cfg[key]) < 1:
            raise ConfigError(f"model {model_name}: {key} must be a positive integer")
    if cfg["recurrent"] == "keras" and float(cfg["forget_bias"]) not in (0.0, 1.0):
        raise ConfigError(
            f"model {model_name}: recurrent: keras supports forget_bias 0 or 1 only"
        )
    if "mean_shape" in cfg:
        shape = np.asarray(cfg["mean_shape"], dtype=float)
        if shape.shape != (NUM_LANDMARKS, 2):
            raise ConfigError(
                f"model {model_name}: mean_shape must be {NUM_LANDMARKS} [x, y] pairs, "
                f"got shape {shape.shape}"
            )
    return cfg


# -- building blocks --------------------------------------------------------------------------


def _audio_branch(cfg, frozen: bool):
    audio = keras.Input((None, FRAME_SAMPLES), name="audio")
    if frozen:
        # A functional model passes its own `training` flag to every layer, so
        # a frozen extractor drops its (weightless) input dropout instead; its
        # batch norm follows `trainable = False` into inference mode.
        cfg = {**cfg, "audio_dropout": 0.0}
    cnn = speech_cnn_from_config(cfg)
    cnn.trainable = not frozen
    if cfg["audio_variant"] == "code":
        folded = cnn(FoldTime(name="fold_audio")(audio))
        features = UnfoldTime(name="unfold_audio")([folded, audio])
    else:
        features = cnn(audio)
    return audio, features


def _video_branch(cfg, frozen: bool):
    size = int(cfg["face_size"])
    video = keras.Input((None, size, size, 3), name="video")
    cnn = visual_cnn_from_config(cfg)
    cnn.trainable = not frozen  # frozen batch norm runs on its moving statistics
    folded = cnn(FoldTime(name="fold_video")(video))
    return video, UnfoldTime(name="unfold_video")([folded, video])


def _assemble(model_name: str, cfg: dict, inputs: dict, parts: list) -> keras.Model:
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
    description="Tzirakis et al. speech CNN (1280 per 40 ms frame) + 2x256 peephole LSTM",
)
def build_e2e_audio(config: dict) -> keras.Model:
    """Speech network: raw audio ``(B, T, 640)`` → emotion ``(B, T, 2)``."""
    cfg = resolve_config("e2e_audio", config)
    audio, features = _audio_branch(cfg, frozen=False)
    return _assemble("e2e_audio", cfg, {"audio": audio}, [features])


@register_model(
    "e2e_video",
    modalities=("video",),
    description="Tzirakis et al. ResNet-50 on 96x96 faces (2048 per frame) + 2x256 peephole LSTM",
)
def build_e2e_video(config: dict) -> keras.Model:
    """Visual network: faces ``(B, T, S, S, 3)`` in [0, 1] → emotion ``(B, T, 2)``."""
    cfg = resolve_config("e2e_video", config)
    video, features = _video_branch(cfg, frozen=False)
    return _assemble("e2e_video", cfg, {"video": video}, [features])


@register_model(
    "e2e_av",
    modalities=("audio", "video"),
    description="Tzirakis et al. multimodal: speech CNN + ResNet-50 (3328 per frame) + 2x256 LSTM",
)
def build_e2e_av(config: dict) -> keras.Model:
    """Multimodal network; CNNs optionally initialised from ``init_audio`` / ``init_video``."""
    cfg = resolve_config("e2e_av", config)
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
    description="e2e_av + 10 Procrustes-aligned landmark coordinates; CNNs frozen (Table VI)",
)
def build_e2e_av_geometric(config: dict) -> keras.Model:
    """Table VI variant: ``e2e_av`` features + aligned landmarks, only the LSTMs train by default."""
    cfg = resolve_config("e2e_av_geometric", config)
    frozen = bool(cfg["freeze_cnns"])
    audio, audio_features = _audio_branch(cfg, frozen=frozen)
    video, video_features = _video_branch(cfg, frozen=frozen)
    landmarks = keras.Input((None, NUM_LANDMARKS, 2), name="landmarks")
    geometric = ProcrustesAlign(cfg["mean_shape"], name="procrustes")(landmarks)
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
    """Copy the weights of the named sub-models (e.g. ``speech_cnn``) from ``source`` into ``target``."""
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


def load_trained_model(source, model_name: str, config: dict | None = None) -> keras.Model:
    """Return a trained model given as a model object, a ``.keras`` file or a ``.weights.h5`` file.

    A ``.weights.h5`` file is loaded into ``build_model(model_name, config)``
    with ``config`` restricted to that model's keys (its architecture
    settings must match the ones the file was saved with).
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
            keys = DEFAULTS[model_name]
            sub_config = {k: v for k, v in (config or {}).items() if k in keys}
            sub_config.pop("visual_weights", None)
            model = build_model(model_name, sub_config)
            model.load_weights(str(path))
            return model
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable here
        raise ConfigError(f"{path}: cannot load it as a trained {model_name}: {exc}") from exc
    raise ConfigError(f"{path}: expected a .keras model or a .weights.h5 file")


def init_from_unimodal(
    av_model: keras.Model, audio_model=None, video_model=None, *, config: dict | None = None
) -> keras.Model:
    """Copy the CNNs of trained unimodal models into ``av_model``, leaving its LSTMs as they are.

    ``speech_cnn`` comes from a trained ``e2e_audio`` and ``visual_cnn`` from
    a trained ``e2e_video``, each a model or a file (see
    :func:`load_trained_model`); either may be ``None``. Returns ``av_model``.
    """
    init_from_trained(av_model, audio_model, "e2e_audio", [SPEECH_CNN], config=config)
    init_from_trained(av_model, video_model, "e2e_video", [VISUAL_CNN], config=config)
    return av_model


def init_from_trained(
    target: keras.Model, source, source_name: str, names, *, config: dict | None = None
) -> None:
    """Copy the sub-models ``names`` from a trained ``source_name`` model (object or file); no-op for ``None``."""
    if source is None:
        return
    model = load_trained_model(source, source_name, config)
    try:
        copy_submodel_weights(target, model, names)
    except ConfigError as exc:
        if isinstance(source, keras.Model):
            raise
        raise ConfigError(f"{source}: {exc}") from None


def _apply_init_keys(model: keras.Model, cfg: dict) -> None:
    init_from_unimodal(model, cfg["init_audio"], cfg["init_video"], config=cfg)
    init_from_trained(model, cfg.get("init_av"), "e2e_av", [SPEECH_CNN, VISUAL_CNN], config=cfg)


# -- streaming --------------------------------------------------------------------------------


def feature_model(model: keras.Model) -> keras.Model:
    """The part of an e2e model up to its ``features`` layer (shares weights)."""
    return keras.Model(model.input, model.get_layer(FEATURES_LAYER).output, name="features_of")


def zero_states(model: keras.Model, batch_size: int) -> np.ndarray:
    """All-zero packed states ``(batch, 2 · layers, units)`` for the start of a recording."""
    head = model.get_layer(HEAD_LAYER)
    return np.zeros((batch_size, *head.state_shape), dtype=np.float32)


def build_streaming_head(model: keras.Model) -> keras.Model:
    """``{"features": (B, T, D), "states"}`` → ``{"emotion", "states"}``, sharing the head."""
    head = model.get_layer(HEAD_LAYER)
    dim = model.get_layer(FEATURES_LAYER).output.shape[-1]
    features = keras.Input((None, dim), name="features")
    states = keras.Input(head.state_shape, name="states")
    emotion, new_states = head(features, initial_states=states)
    return keras.Model(
        {"features": features, "states": states},
        {"emotion": emotion, "states": new_states},
        name=f"{model.name}_streaming_head",
    )


def build_streaming_model(model: keras.Model) -> keras.Model:
    """``{model inputs chunk (B, T, ...), "states"}`` → ``{"emotion", "states"}``, sharing weights.

    Feeding consecutive chunks of a recording with the returned states gives
    the offline model's output on the whole recording (exact for the per-frame
    CNNs; ``audio_variant: paper`` convolves across frames, so it differs near
    chunk edges).
    """
    head = model.get_layer(HEAD_LAYER)
    extractor = feature_model(model)
    inputs = {
        key: keras.Input(tensor.shape[1:], dtype=tensor.dtype, name=key)
        for key, tensor in model.input.items()
    }
    states = keras.Input(head.state_shape, name="states")
    emotion, new_states = head(extractor(inputs), initial_states=states)
    return keras.Model(
        {**inputs, "states": states},
        {"emotion": emotion, "states": new_states},
        name=f"{model.name}_streaming",
    )

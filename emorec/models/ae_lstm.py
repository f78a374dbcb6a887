"""Nguyen et al.'s 2D1DConv-AE-LSTM (``ae_lstm``) and the ablations of its Tables III–V.

Per 40 ms frame the face goes through the 2D conv auto-encoder
(:mod:`emorec.models.face_ae`) and the audio frame through the 1D conv
auto-encoder (:mod:`emorec.models.audio_ae`); the two codes are concatenated
(eq. 5, visual first: 2048 + 1280 = 3328 by default) and a 2-layer LSTM of 512
units with a linear Dense(2) shared over time predicts [arousal, valence]. The
per-frame networks run on the batch × time axes folded into one, so the time
dimension stays dynamic. The LSTM is ``keras.layers.LSTM`` (the paper cites
no peepholes or cell clipping, unlike Tzirakis et al.), forget-gate bias
initialised to 1 (Keras' and TF 1's default), zero initial state per window.

Outputs: ``emotion`` ``(B, T, 2)`` and, for models with decoders,
``recon_video`` ``(B, T, S, S, 3)`` and ``recon_audio`` ``(B, T, 640)``; the
objective is :func:`emorec.objectives.joint_objective` (α·L2D + β·L1D + γ·L_ccc).

Registered names:

- ``ae_lstm``: the paper's model (2D1DConv-AE-LSTM).
- ``ae_lstm_video`` / ``ae_lstm_audio``: 2DConv-AE-LSTM / 1DConv-AE-LSTM of
  Table III, the other branch taken off.
- ``conv_lstm``: the same encoders with the decoders disabled (Section IV-D2,
  "disabling the decoders"; Table IV's 2D1DConv-LSTM). Without reconstructions
  the joint objective reduces to γ·L_ccc; since Adam is insensitive to a
  constant scale of the loss, ``train/conv_lstm.yaml`` keeps the paper's γ.
- ``ae_2slstm``: 2D1DConv-AE-2SLSTM of Table V, Kollias & Zafeiriou's two-stream
  layout: one 2 × 512 LSTM per modality and a linear output on the
  concatenated LSTM outputs. A Dense on ``[h_v, h_a]`` equals the sum of one
  Dense per stream, which is how it is built (each stream is a
  :class:`~emorec.models.recurrent.RecurrentHead`); the sum carries one
  redundant pair of biases (2 parameters) and nothing else differs.

Streaming: the recurrent part is a
:class:`~emorec.models.recurrent.RecurrentHead` named ``recurrent`` (LSTM
layers ``lstm_0``, ``lstm_1`` inside it; ``recurrent_video`` and
``recurrent_audio`` in ``ae_2slstm``). :func:`build_streaming_ae_lstm` wires
the same encoder and head layers (same weights) into a model with a
``states`` input and output, packed as in :mod:`emorec.models.recurrent`
(``(B, 2 · layers, units)``: h then c of each layer; ``ae_2slstm`` stacks the
video head's states before the audio head's). Feeding a recording chunk by
chunk with the states carried over gives the offline outputs.
"""

from __future__ import annotations

import dataclasses

import keras

from emorec.config.base import FieldError, Section, number, positive_int, setting
from emorec.config.sections import ModelConfig
from emorec.models.audio_ae import AudioAEOptions, build_audio_decoder, build_audio_encoder
from emorec.models.face_ae import FACE_CHANNELS, FaceAEOptions, LeakyOptions, face_ae_from_config
from emorec.models.recurrent import RecurrentHead
from emorec.models.registry import register_model
from emorec.models.time_fold import FoldTime, UnfoldTime
from emorec.objectives import JointLossConfig, joint_objective
from emorec.schema import FRAME_SAMPLES


@dataclasses.dataclass(frozen=True)
class AELSTMHeadOptions(Section):
    """The 2 x 512 LSTM of Nguyen et al. (``keras.layers.LSTM``)."""

    lstm_units: int = setting(512, positive_int)
    lstm_layers: int = setting(2, positive_int)
    forget_bias: float = setting(1.0, number, doc="0 or 1 (keras.layers.LSTM)")

    def check(self) -> None:
        """Keras' LSTM takes a forget bias of 0 or 1 only.

        Raises:
            FieldError: ``forget_bias`` is neither 0 nor 1.
        """
        super().check()
        if self.forget_bias not in (0.0, 1.0):
            raise FieldError("forget_bias", f"must be 0 or 1 for keras.layers.LSTM, got {self.forget_bias}")


# The one place the model defaults live; train/NAME.yaml's `model:` mirrors them (tested).
@dataclasses.dataclass(frozen=True)
class AELSTMConfig(ModelConfig, FaceAEOptions, AudioAEOptions, LeakyOptions, AELSTMHeadOptions):
    """``ae_lstm``, ``conv_lstm`` and ``ae_2slstm``: both auto-encoders and the LSTM head."""

    NAMES = ("ae_lstm", "conv_lstm", "ae_2slstm")


@dataclasses.dataclass(frozen=True)
class AELSTMVideoConfig(ModelConfig, FaceAEOptions, LeakyOptions, AELSTMHeadOptions):
    """``ae_lstm_video``: the face auto-encoder and the LSTM head."""

    NAMES = ("ae_lstm_video",)


@dataclasses.dataclass(frozen=True)
class AELSTMAudioConfig(ModelConfig, AudioAEOptions, LeakyOptions, AELSTMHeadOptions):
    """``ae_lstm_audio``: the audio auto-encoder and the LSTM head."""

    NAMES = ("ae_lstm_audio",)


CONFIG_CLASSES = {
    "ae_lstm": AELSTMConfig,
    "ae_lstm_video": AELSTMVideoConfig,
    "ae_lstm_audio": AELSTMAudioConfig,
    "conv_lstm": AELSTMConfig,
    "ae_2slstm": AELSTMConfig,
}
# (modalities, decoders, two-stream) per name.
VARIANTS = {
    "ae_lstm": (("audio", "video"), True, False),
    "ae_lstm_video": (("video",), True, False),
    "ae_lstm_audio": (("audio",), True, False),
    "conv_lstm": (("audio", "video"), False, False),
    "ae_2slstm": (("audio", "video"), True, True),
}
STATES = "states"


def _head(config: AELSTMHeadOptions, name: str) -> RecurrentHead:
    return RecurrentHead(
        config.lstm_units, config.lstm_layers, cell="keras",
        cell_clip=None, forget_bias=config.forget_bias, name=name,
    )


def _inputs(modalities, face_size) -> dict:
    inputs = {}
    if "audio" in modalities:
        inputs["audio"] = keras.Input((None, FRAME_SAMPLES), name="audio")
    if "video" in modalities:
        inputs["video"] = keras.Input((None, face_size, face_size, FACE_CHANNELS), name="video")
    return inputs


def _per_frame(network, x, name):
    """Apply a per-frame network over time: fold, run, unfold (returns the folded result too)."""
    folded = FoldTime(name=f"{name}_fold")(x)
    code = network(folded)
    return code, UnfoldTime(name=f"{name}_unfold")([code, x])


def build(name: str, config) -> keras.Model:
    """Build the registered variant ``name`` from its ``model`` config.

    Args:
        name: one of the keys of :data:`VARIANTS` (``ae_lstm``, ``ae_lstm_video``,
            ``ae_lstm_audio``, ``conv_lstm``, ``ae_2slstm``).
        config: the ``model`` settings: a mapping (missing keys take the defaults) or an
            instance of the variant's config class.

    Returns:
        The offline Keras model: inputs ``audio`` ``(B, T, 640)`` and/or ``video``
        ``(B, T, S, S, 3)``; outputs ``emotion`` ``(B, T, 2)`` and, with decoders,
        ``recon_video`` / ``recon_audio`` of the inputs' shapes.

    Raises:
        ConfigError: unknown keys or bad values in ``config``, or a mapping naming another model.
    """
    config = CONFIG_CLASSES[name].for_model(name, config)
    modalities, decoders, two_stream = VARIANTS[name]
    inputs = _inputs(modalities, getattr(config, "face_size", None))
    slope = config.leaky_slope
    codes, outputs = {}, {}
    if "video" in inputs:
        encoder, decoder = face_ae_from_config(config)
        folded, codes["video"] = _per_frame(encoder, inputs["video"], "video")
        if decoders:
            outputs["recon_video"] = UnfoldTime(name="recon_video")([decoder(folded), inputs["video"]])
    if "audio" in inputs:
        encoder = build_audio_encoder(config, slope=slope)
        folded, codes["audio"] = _per_frame(encoder, inputs["audio"], "audio")
        if decoders:
            decoder = build_audio_decoder(config, slope=slope)
            outputs["recon_audio"] = UnfoldTime(name="recon_audio")([decoder(folded), inputs["audio"]])
    if two_stream:
        per_stream = [_head(config, f"recurrent_{m}")(codes[m])[0] for m in ("video", "audio")]
        emotion = keras.layers.Add(name="emotion")(per_stream)
    else:
        fused = _fuse([codes[m] for m in ("video", "audio") if m in codes])
        emotion = _head(config, "recurrent")(fused)[0]
    return keras.Model(inputs, {"emotion": emotion, **outputs}, name=name)


def _fuse(codes):
    # Eq. 5: visual code ⊕ audio code.
    return codes[0] if len(codes) == 1 else keras.layers.Concatenate(name="fusion")(codes)


def _heads(model: keras.Model) -> list[RecurrentHead]:
    names = [layer.name for layer in model.layers]
    if "recurrent" in names:
        return [model.get_layer("recurrent")]
    return [model.get_layer("recurrent_video"), model.get_layer("recurrent_audio")]


def build_streaming_ae_lstm(offline: keras.Model) -> keras.Model:
    """Streaming twin of an offline ``ae_lstm``-family model, sharing its layers (and weights).

    Inputs: the offline model's ``audio``/``video`` chunk ``(B, T, ...)`` and
    ``states`` ``(B, H · 2 · layers, units)`` (``H`` = 1, or 2 for
    ``ae_2slstm``: video head first); zeros start a recording. Outputs:
    ``emotion`` ``(B, T, 2)`` and the ``states`` to pass with the next chunk.
    No reconstruction outputs: decoders play no part in prediction.

    Args:
        offline: a model made by :func:`build` (any of its variants), trained or not.

    Returns:
        The streaming Keras model, named ``<offline name>_streaming``.
    """
    heads = _heads(offline)
    rows, units = heads[0].state_shape
    given = {tensor.name: tensor for tensor in offline.inputs}
    modalities = tuple(m for m in ("audio", "video") if m in given)
    face_size = given["video"].shape[2] if "video" in given else None
    inputs = _inputs(modalities, face_size)
    inputs[STATES] = keras.Input((rows * len(heads), units), name=STATES)
    codes = {}
    for m, encoder_name in (("video", "face_encoder"), ("audio", "audio_encoder")):
        if m in inputs:
            codes[m] = _per_frame(offline.get_layer(encoder_name), inputs[m], m)[1]
    states = inputs[STATES]
    if len(heads) == 2:
        emotions, finals = [], []
        for k, (head, m) in enumerate(zip(heads, ("video", "audio"))):
            emotion, final = head(codes[m], initial_states=states[:, k * rows:(k + 1) * rows])
            emotions.append(emotion)
            finals.append(final)
        emotion = keras.layers.Add(name="emotion")(emotions)
        final = keras.layers.Concatenate(axis=1, name="next_states")(finals)
    else:
        fused = _fuse([codes[m] for m in ("video", "audio") if m in codes])
        emotion, final = heads[0](fused, initial_states=states)
    return keras.Model(inputs, {"emotion": emotion, STATES: final}, name=f"{offline.name}_streaming")


def _register(name: str, description: str) -> None:
    modalities = VARIANTS[name][0]

    def builder(config) -> keras.Model:
        return build(name, config)

    builder.__doc__ = f"Build ``{name}``: {description}"
    # xla="update": Adam's update of the 85M weights compiled (0.07 s against 0.22 s op by op on
    # 2 cores), the gradient plain (faster than compiled here); exact (tests/test_xla.py) and the
    # fastest of the three modes in benchmarks/xla.py and in the main job (README).
    register_model(name, modalities=modalities, config_class=CONFIG_CLASSES[name], objective=joint_objective,
                   loss_config_class=JointLossConfig, description=description, xla="update")(builder)


_register("ae_lstm", "Nguyen et al. 2D1DConv-AE-LSTM: face and audio auto-encoders, fused codes, 2 x 512 LSTM")
_register("ae_lstm_video", "Nguyen et al. 2DConv-AE-LSTM (Table III): face auto-encoder and LSTM")
_register("ae_lstm_audio", "Nguyen et al. 1DConv-AE-LSTM (Table III): audio auto-encoder and LSTM")
_register("conv_lstm", "Nguyen et al. ablation (Table IV): the ae_lstm encoders without decoders, CCC loss")
_register("ae_2slstm", "Nguyen et al. 2D1DConv-AE-2SLSTM (Table V): one LSTM per modality, fused output")

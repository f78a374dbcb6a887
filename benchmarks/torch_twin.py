"""emorec against a plain-PyTorch twin of the same network: training step and inference, in one run.

    pip install torch==2.13.0        # a CPU build (on the project's machine the wheel is local)
    pip install "emorec[bench]"      # elsewhere: the `bench` extra is torch
    python benchmarks/torch_twin.py [--quick] [--cases e2e_audio,ae_lstm] [--threads N]
                                    [--repeats 3] [--no-compile]

PyTorch is the framework a user would otherwise pick (End2You is built on
it). For two networks this script builds the emorec model (seeded), builds
the same network in plain PyTorch, copies every weight across (so shapes
and initialisation are the same), checks that the two forward passes agree
(inference mode: dropout off, batch norm on its moving statistics; the
script stops if they differ by more than 1e-4 + 1e-4·|value|), and times,
side by side, interleaved round by round:

- the training step: emorec's as the engine runs it (the task's step, a
  ``WindowedStep`` with a ``StepContext`` on the default strategy, Keras Adam
  from the YAML's optimizer section), plain, with only Adam's update under XLA
  (``jit_compile: update``) and wholly under XLA (``jit_compile: true``);
  PyTorch's forward + the same objective + ``backward`` + ``torch.optim.Adam``
  (fused), eager and under ``torch.compile`` (model and objective compiled;
  ``--no-compile`` leaves it out);
- inference: the model's forward in a ``tf.function`` (plain and XLA) against
  the twin's forward under ``torch.inference_mode()`` (eager and compiled);
  every output is computed (``ae_lstm``'s reconstructions included).

Cases, at the YAMLs' shapes:

- ``e2e_audio`` (train/e2e_audio.yaml, ``--set model.recurrent=keras``: PyTorch's
  LSTM has no peepholes): batch 25 × 150 frames of 640 samples; the per-frame
  speech CNN as coded (dropout 0.5 on the waveform, conv 40 × 20 taps + batch
  norm + ReLU, max-pool 2, conv 40 × 40 taps + batch norm + ReLU, max over 10
  adjacent channels), a 2 × 256 LSTM and Dense(2); objective 1 − mean CCC
  (biased moments over batch × time, in float64) + the convolutions' weight
  decay wd·Σw²/2.
- ``ae_lstm`` (train/ae_lstm.yaml): batch 32 × 5 frames of 96 × 96 faces and
  640-sample audio; the face and audio auto-encoders, a 2 × 512 LSTM and
  Dense(2); objective α·L2D + β·L1D + γ·(1 − mean CCC) with mean
  reconstruction errors and the YAML's weights, scored on each window's last
  frame (``data.target: last``), + the audio convolutions' weight decay.

Both frameworks get the same number of threads (``--threads``, default: the
usable cores): TensorFlow's intra- and inter-op pools, torch's intra- and
inter-op threads. The table gives seconds per call (best of ``--repeats``
rounds), the first call (tracing/compilation included) separately, emorec ÷
PyTorch (best emorec variant ÷ best PyTorch variant; target for the training
step ≤ 1.0) and windows/s. A float32 matmul in each framework is measured
at the start and the end, so that the two BLAS speeds can be compared too.

Where the twins are not the same function (none of it changes the cost):
the dropout masks come from different generators; Keras' Adam adds ε to
√v before the bias correction (TF 1's ε̂), torch after it; torch's batch norm
keeps an unbiased running variance (n/(n−1) with n = B·T·positions), Keras a
biased one; torch's LSTM has a second bias vector (``bias_hh``), held at
zero and not trained here so that the parameters are Keras' own.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from emorec.config import config_path_for, resolve_config  # noqa: E402
from emorec.losses import DEFAULT_EPS, local_moments  # noqa: E402
from emorec.models import get_model_spec  # noqa: E402
from emorec.models.audio_ae import DECONV1_TAPS, DECONV2_TAPS, audio_latent_size, pooled_shape  # noqa: E402
from emorec.models.face_ae import DECODER_BLOCKS, ENCODER_BLOCKS, FACE_CHANNELS, face_feature_shape  # noqa: E402
from emorec.models.recurrent import NUM_OUTPUTS  # noqa: E402
from emorec.models.speech import (  # noqa: E402
    CHANNEL_POOL,
    KERNEL_SIZES,
    SPEECH_FEATURES,
    SPEECH_FILTERS,
    TIME_POOL,
)
from emorec.schema import FRAME_SAMPLES  # noqa: E402
from emorec.tasks import get_task  # noqa: E402
from emorec.training.engine import make_optimizer  # noqa: E402
from emorec.training.steps import StepContext  # noqa: E402

CASES = ("e2e_audio", "ae_lstm")
# The emorec settings each twin reproduces (added to the YAML's model section).
OVERRIDES = {"e2e_audio": ["model.recurrent=keras"], "ae_lstm": []}
TOLERANCE = 1e-4  # forward check: |emorec − torch| ≤ TOLERANCE · (1 + |emorec|)
TARGET = 1.0  # training step: emorec s/step ÷ torch s/step
# Columns of the table, in the order the calls are named ("train emorec [xla]", ...).
EMOREC_VARIANTS = ("emorec", "emorec [xla update]", "emorec [xla]")
VARIANTS = (*EMOREC_VARIANTS, "torch", "torch [compiled]")


# -- the twins -----------------------------------------------------------------------------------


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(f"the PyTorch twin is built for {what} only")


def _same(x, conv):
    # TF's 'same' with an even kernel pads (taps − 1) // 2 before and the rest after (what torch's
    # padding="same" does too, with a warning about the copy it makes; the copy is made here).
    taps = conv.kernel_size[0]
    return F.pad(x, ((taps - 1) // 2, taps // 2))


class SpeechCNNTwin(nn.Module):
    """emorec's speech CNN (``audio_variant: code``) on ``(N, 640)`` frames → ``(N, 1280)`` features.

    The features are channel-major (index ``g · 320 + t``, PyTorch's natural
    flatten of ``(N, 4, 320)``); emorec's are time-major (``t · 4 + g``).
    :func:`copy_weights` permutes the weights that read them to match.
    """

    def __init__(self, config):
        super().__init__()
        _require(config.audio_batch_norm, "audio_batch_norm: true")
        taps1, taps2 = KERNEL_SIZES["code"]
        self.dropout = nn.Dropout(config.audio_dropout)
        self.conv1 = nn.Conv1d(1, SPEECH_FILTERS, taps1, bias=False)
        self.conv2 = nn.Conv1d(SPEECH_FILTERS, SPEECH_FILTERS, taps2, bias=False)
        # Keras keeps moving = m · moving + (1 − m) · batch; torch's momentum is the (1 − m).
        norm = dict(eps=config.audio_bn_epsilon, momentum=1.0 - config.audio_bn_momentum)
        self.bn1 = nn.BatchNorm1d(SPEECH_FILTERS, **norm)
        self.bn2 = nn.BatchNorm1d(SPEECH_FILTERS, **norm)
        self.weight_decay = float(config.audio_weight_decay)

    def forward(self, frames):
        """``(N, 640)`` → ``(N, 1280)``."""
        x = self.dropout(frames).unsqueeze(1)
        x = F.relu(self.bn1(self.conv1(_same(x, self.conv1))))
        x = F.max_pool1d(x, TIME_POOL)
        x = F.relu(self.bn2(self.conv2(_same(x, self.conv2))))
        n, channels, steps = x.shape
        x = x.view(n, channels // CHANNEL_POOL, CHANNEL_POOL, steps).amax(dim=2)
        return x.flatten(1)

    def regularization(self):
        """TF 1's ``wd · Σw² / 2`` over both convolution kernels (emorec's ``model.losses``)."""
        return self.weight_decay / 2 * (self.conv1.weight.square().sum() + self.conv2.weight.square().sum())


class RecurrentTwin(nn.Module):
    """``nn.LSTM`` (batch first, zero initial state) and a ``Linear`` to arousal and valence."""

    def __init__(self, features: int, units: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(features, units, layers, batch_first=True)
        self.output = nn.Linear(units, NUM_OUTPUTS)
        # Keras' LSTM has one bias per layer; torch's second one stays at zero, untrained.
        for k in range(layers):
            bias = getattr(self.lstm, f"bias_hh_l{k}")
            with torch.no_grad():
                bias.zero_()
            bias.requires_grad_(False)

    def forward(self, x):
        """``(B, T, D)`` → ``(B, T, 2)``."""
        return self.output(self.lstm(x)[0])


class E2EAudioTwin(nn.Module):
    """``e2e_audio`` with ``recurrent: keras``: speech CNN per frame, LSTM stack, Dense(2)."""

    def __init__(self, config):
        super().__init__()
        _require(config.audio_variant == "code", "audio_variant: code")
        _require(config.recurrent == "keras", "recurrent: keras (torch's LSTM has no peepholes)")
        _require(config.forget_bias in (0.0, 1.0), "forget_bias 0 or 1")
        self.speech = SpeechCNNTwin(config)
        self.head = RecurrentTwin(SPEECH_FEATURES, config.lstm_units, config.lstm_layers)

    def forward(self, audio):
        """``audio (B, T, 640)`` → ``{"emotion": (B, T, 2)}``."""
        b, t = audio.shape[:2]
        features = self.speech(audio.reshape(b * t, FRAME_SAMPLES)).view(b, t, SPEECH_FEATURES)
        return {"emotion": self.head(features)}

    def regularization(self):
        """emorec's ``model.losses`` summed."""
        return self.speech.regularization()


class BottleneckTwin(nn.Module):
    """One block of emorec's face auto-encoder (``face_ae._bottleneck``), NCHW."""

    def __init__(self, channels: int, width: int, depth: int, *, transpose: bool, slope: float,
                 sigmoid: bool = False):
        super().__init__()
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        self.transpose, self.slope, self.sigmoid = transpose, slope, sigmoid
        self.a = conv(channels, width, 1)
        self.b = conv(width, width, 3, stride=2)
        self.c = conv(width, depth, 1)
        self.shortcut = conv(channels, depth, 1)

    def forward(self, x):
        """Halve (encoder) or double (decoder) the resolution."""
        y = F.leaky_relu(self.a(x), self.slope)
        if self.transpose:
            # TF's 'same' transposed conv keeps the first 2n of the 2n + 1 full outputs.
            y = self.b(y)[:, :, :-1, :-1]
            resampled = F.interpolate(x, scale_factor=2, mode="nearest")
        else:
            # TF's 'same' at stride 2 on an even size pads one row and column after, none before.
            y = self.b(F.pad(y, (0, 1, 0, 1)))
            resampled = x[:, :, ::2, ::2]
        y = self.c(F.leaky_relu(y, self.slope)) + self.shortcut(resampled)
        return torch.sigmoid(y) if self.sigmoid else F.leaky_relu(y, self.slope)


class FaceEncoderTwin(nn.Module):
    """``(N, 3, S, S)`` → ``(N, latent)``; the flatten is channel-major (emorec's is channels-last)."""

    def __init__(self, face_size: int, latent: int, slope: float):
        super().__init__()
        blocks, channels = [], FACE_CHANNELS
        for width, depth in ENCODER_BLOCKS:
            blocks.append(BottleneckTwin(channels, width, depth, transpose=False, slope=slope))
            channels = depth
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(int(np.prod(face_feature_shape(face_size))), latent)
        self.slope = slope

    def forward(self, faces):
        """Encode a batch of faces."""
        return F.leaky_relu(self.fc(self.blocks(faces).flatten(1)), self.slope)


class FaceDecoderTwin(nn.Module):
    """``(N, latent)`` → ``(N, 3, S, S)`` in (0, 1)."""

    def __init__(self, face_size: int, latent: int, slope: float):
        super().__init__()
        side, _, channels = face_feature_shape(face_size)
        self.map_shape = (channels, side, side)
        self.fc = nn.Linear(latent, side * side * channels)
        blocks = []
        for k, (width, depth) in enumerate(DECODER_BLOCKS, start=1):
            blocks.append(BottleneckTwin(channels, width, depth, transpose=True, slope=slope,
                                         sigmoid=k == len(DECODER_BLOCKS)))
            channels = depth
        self.blocks = nn.Sequential(*blocks)
        self.slope = slope

    def forward(self, code):
        """Decode a batch of codes."""
        x = F.leaky_relu(self.fc(code), self.slope).view(-1, *self.map_shape)
        return self.blocks(x)


class AudioDecoderTwin(nn.Module):
    """``(N, 1280)`` channel-major code → ``(N, 640)`` frame (emorec's ``audio_decoder``)."""

    def __init__(self, slope: float):
        super().__init__()
        self.steps, self.channels = pooled_shape("channels")
        # padding (taps − 1) // 2 crops what TF's 'same' crops before; one extra sample is cut after.
        self.deconv1 = nn.ConvTranspose1d(self.channels, SPEECH_FILTERS, DECONV1_TAPS,
                                          padding=(DECONV1_TAPS - 1) // 2)
        self.deconv2 = nn.ConvTranspose1d(SPEECH_FILTERS, 1, DECONV2_TAPS, padding=(DECONV2_TAPS - 1) // 2)
        self.slope = slope

    def forward(self, code):
        """Decode a batch of codes."""
        x = code.view(-1, self.channels, self.steps)
        x = F.leaky_relu(self.deconv1(x)[..., :self.steps], self.slope)
        x = x.repeat_interleave(TIME_POOL, dim=-1)
        return self.deconv2(x)[..., :FRAME_SAMPLES].flatten(1)


class AELSTMTwin(nn.Module):
    """``ae_lstm``: face and audio auto-encoders per frame, fused codes, LSTM stack, Dense(2).

    Faces are NCHW: ``video`` is ``(B, T, 3, S, S)`` and so is ``recon_video``.
    """

    def __init__(self, config):
        super().__init__()
        _require(config.audio_pool == "channels", "audio_pool: channels")
        _require(audio_latent_size(config) == SPEECH_FEATURES, "audio_latent: null")
        slope = config.leaky_slope
        self.face_encoder = FaceEncoderTwin(config.face_size, config.face_latent, slope)
        self.face_decoder = FaceDecoderTwin(config.face_size, config.face_latent, slope)
        self.audio_encoder = SpeechCNNTwin(config)
        self.audio_decoder = AudioDecoderTwin(slope)
        self.head = RecurrentTwin(config.face_latent + SPEECH_FEATURES, config.lstm_units, config.lstm_layers)

    def forward(self, audio, video):
        """``audio (B, T, 640)``, ``video (B, T, 3, S, S)`` → emotion and both reconstructions."""
        b, t = audio.shape[:2]
        face_code = self.face_encoder(video.flatten(0, 1))
        audio_code = self.audio_encoder(audio.reshape(b * t, FRAME_SAMPLES))
        fused = torch.cat([face_code, audio_code], dim=-1).view(b, t, -1)
        return {
            "emotion": self.head(fused),
            "recon_video": self.face_decoder(face_code).view(video.shape),
            "recon_audio": self.audio_decoder(audio_code).view(b, t, FRAME_SAMPLES),
        }

    def regularization(self):
        """emorec's ``model.losses`` summed."""
        return self.audio_encoder.regularization()


TWINS = {"e2e_audio": E2EAudioTwin, "ae_lstm": AELSTMTwin}


# -- objectives ----------------------------------------------------------------------------------


def ccc_loss(labels, emotion, scored):
    """``mean(1 − ρ)`` over arousal and valence, biased float64 moments over the scored frames (emorec.losses)."""
    depth = emotion.shape[-1]
    valid = scored.reshape(-1, 1).double() > 0
    x = torch.where(valid, emotion.reshape(-1, depth).double(), 0.0)
    y = torch.where(valid, labels.reshape(-1, depth).double(), 0.0)
    n = valid.double().sum().clamp(min=1.0)
    mu_x, mu_y = x.sum(0) / n, y.sum(0) / n
    var_x = ((x * x).sum(0) / n - mu_x * mu_x).clamp(min=0.0)
    var_y = ((y * y).sum(0) / n - mu_y * mu_y).clamp(min=0.0)
    cov = (x * y).sum(0) / n - mu_x * mu_y
    rho = 2.0 * cov / (var_x + var_y + (mu_x - mu_y) ** 2 + DEFAULT_EPS)
    return (1.0 - rho).mean().float()


def mean_squared_error(target, reconstruction, mask):
    """Mean squared error per value over the valid frames: per-frame sums in float32, the rest in float64."""
    per_frame = (reconstruction - target).square().flatten(2).sum(-1).double()
    valid = mask > 0
    error = torch.where(valid, per_frame, 0.0).sum()
    count = valid.double().sum() * target[0, 0].numel()
    return (error / count.clamp(min=1.0)).float()


def make_objective(name: str, loss_config) -> Callable:
    """``objective(twin, batch, outputs) -> loss`` with emorec's loss settings, weight decay included."""
    if name == "e2e_audio":
        def objective(twin, batch, outputs):
            return ccc_loss(batch["labels"], outputs["emotion"], batch["target"]) + twin.regularization()
        return objective
    weights = loss_config.to_dict()
    _require(weights.get("reconstruction", "mean") == "mean", "loss.reconstruction: mean")

    def joint(twin, batch, outputs):
        faces = weights["alpha"] * mean_squared_error(batch["video"], outputs["recon_video"], batch["mask"])
        sound = weights["beta"] * mean_squared_error(batch["audio"], outputs["recon_audio"], batch["mask"])
        ccc = weights["gamma"] * ccc_loss(batch["labels"], outputs["emotion"], batch["target"])
        return faces + sound + ccc + twin.regularization()
    return joint


class TwinLoss(nn.Module):
    """The twin and its objective as one module: what ``torch.compile`` compiles for the step."""

    def __init__(self, twin: nn.Module, objective: Callable, input_names):
        super().__init__()
        self.twin, self.objective, self.input_names = twin, objective, tuple(input_names)

    def forward(self, batch):
        """The training loss of a batch."""
        outputs = self.twin(**{k: batch[k] for k in self.input_names})
        return self.objective(self.twin, batch, outputs)


# -- weights: emorec → torch ---------------------------------------------------------------------


def _set(parameter, value) -> None:
    value = np.asarray(value, dtype=np.float32)
    # copy_ would broadcast a wrong shape silently.
    if tuple(parameter.shape) != value.shape:
        raise ValueError(f"shape {value.shape} does not fit torch's {tuple(parameter.shape)}")
    with torch.no_grad():
        parameter.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _conv(layer, module) -> None:
    # Conv: Keras (taps..., in, out) → torch (out, in, taps...). Transposed conv: Keras
    # (taps..., out, in) → torch (in, out, taps...). Both reverse the axes' roles the same way.
    kernel = np.asarray(layer.kernel)
    rank = kernel.ndim
    _set(module.weight, kernel.transpose(rank - 1, rank - 2, *range(rank - 2)))
    if layer.use_bias:
        _set(module.bias, layer.bias)


def _batch_norm(layer, module) -> None:
    _set(module.weight, layer.gamma)
    _set(module.bias, layer.beta)
    _set(module.running_mean, layer.moving_mean)
    _set(module.running_var, layer.moving_variance)


def _dense(layer, module, rows=None, columns=None) -> None:
    """Keras (in, out) → torch (out, in); ``rows``/``columns`` reorder the inputs/outputs to torch's layout."""
    kernel, bias = np.asarray(layer.kernel), np.asarray(layer.bias)
    if rows is not None:
        kernel = kernel[rows]
    if columns is not None:
        kernel, bias = kernel[:, columns], bias[columns]
    _set(module.weight, kernel.T)
    _set(module.bias, bias)


def _recurrent(head, twin: RecurrentTwin, feature_order) -> None:
    for k, rnn in enumerate(head.rnns):
        # Keras' gates i, f, c, o are torch's i, f, g, o: same order, same meaning.
        cell = rnn.cell
        kernel = np.asarray(cell.kernel)
        _set(getattr(twin.lstm, f"weight_ih_l{k}"), (kernel[feature_order] if k == 0 else kernel).T)
        _set(getattr(twin.lstm, f"weight_hh_l{k}"), np.asarray(cell.recurrent_kernel).T)
        _set(getattr(twin.lstm, f"bias_ih_l{k}"), cell.bias)
        _set(getattr(twin.lstm, f"bias_hh_l{k}"), np.zeros(cell.bias.shape))
    _dense(head.output_layer, twin.output)


def speech_feature_order() -> np.ndarray:
    """emorec's index of torch's speech feature ``k``: torch ``g · 320 + t`` is emorec's ``t · 4 + g``."""
    steps, groups = pooled_shape("channels")
    return np.arange(steps * groups).reshape(steps, groups).T.ravel()


def face_feature_order(face_size: int) -> np.ndarray:
    """emorec's (channels-last) index of torch's (channel-major) flattened face map entry ``k``."""
    shape = face_feature_shape(face_size)
    return np.arange(int(np.prod(shape))).reshape(shape).transpose(2, 0, 1).ravel()


def _speech(cnn, twin: SpeechCNNTwin) -> None:
    _conv(cnn.get_layer("conv1_conv"), twin.conv1)
    _batch_norm(cnn.get_layer("conv1_bn"), twin.bn1)
    _conv(cnn.get_layer("conv2_conv"), twin.conv2)
    _batch_norm(cnn.get_layer("conv2_bn"), twin.bn2)


def _blocks(network, blocks, prefix: str) -> None:
    for k, block in enumerate(blocks, start=1):
        for part in ("a", "b", "c", "shortcut"):
            _conv(network.get_layer(f"{prefix}{k}_{part}"), getattr(block, part))


def copy_weights(model: keras.Model, twin: nn.Module) -> None:
    """Set every parameter and batch-norm statistic of ``twin`` from the emorec ``model`` it mirrors."""
    if isinstance(twin, E2EAudioTwin):
        _speech(model.get_layer("speech_cnn"), twin.speech)
        _recurrent(model.get_layer("recurrent"), twin.head, speech_feature_order())
        return
    face_size = twin.face_decoder.map_shape[1] * 4
    encoder, decoder = model.get_layer("face_encoder"), model.get_layer("face_decoder")
    _blocks(encoder, twin.face_encoder.blocks, "enc_block")
    _dense(encoder.get_layer("fc_latent"), twin.face_encoder.fc, rows=face_feature_order(face_size))
    _blocks(decoder, twin.face_decoder.blocks, "dec_block")
    _dense(decoder.get_layer("fc_expand"), twin.face_decoder.fc, columns=face_feature_order(face_size))
    _speech(model.get_layer("audio_encoder"), twin.audio_encoder)
    audio_decoder = model.get_layer("audio_decoder")
    _conv(audio_decoder.get_layer("deconv1"), twin.audio_decoder.deconv1)
    _conv(audio_decoder.get_layer("deconv2"), twin.audio_decoder.deconv2)
    latent = twin.face_encoder.fc.out_features
    order = np.concatenate([np.arange(latent), latent + speech_feature_order()])
    _recurrent(model.get_layer("recurrent"), twin.head, order)


def build_twin(name: str, model_config, model: keras.Model) -> nn.Module:
    """The torch twin of the emorec ``model`` built from ``model_config``, with its weights."""
    twin = TWINS[name](model_config)
    copy_weights(model, twin)
    return twin


# -- batches -------------------------------------------------------------------------------------


def make_batch(modalities, batch: int, frames: int, face_size: int, target: str, seed: int = 0) -> dict:
    """NumPy arrays shaped like emorec.data's batch (faces channels-last), every frame real."""
    rng = np.random.default_rng(seed)
    arrays = {"labels": rng.uniform(-1, 1, (batch, frames, NUM_OUTPUTS)).astype(np.float32),
              "mask": np.ones((batch, frames), np.float32)}
    arrays["target"] = arrays["mask"].copy()
    if target == "last":
        arrays["target"][:, :-1] = 0.0
    if "audio" in modalities:
        arrays["audio"] = (rng.standard_normal((batch, frames, FRAME_SAMPLES)) * 0.1).astype(np.float32)
    if "video" in modalities:
        arrays["video"] = rng.uniform(size=(batch, frames, face_size, face_size, FACE_CHANNELS)).astype(np.float32)
    return arrays


def tf_batch(arrays: dict) -> dict:
    """The batch as TensorFlow tensors."""
    return {k: tf.constant(v) for k, v in arrays.items()}


def torch_batch(arrays: dict) -> dict:
    """The batch as torch tensors, faces NCHW (the layout a PyTorch data loader would deliver)."""
    out = {k: torch.from_numpy(v) for k, v in arrays.items()}
    if "video" in out:
        out["video"] = out["video"].permute(0, 1, 4, 2, 3).contiguous()
    return out


def to_emorec_layout(key: str, value) -> np.ndarray:
    """A twin output in emorec's layout (faces back to channels-last)."""
    value = value.detach().numpy()
    return value.transpose(0, 1, 3, 4, 2) if key == "recon_video" else value


# -- the forward check ---------------------------------------------------------------------------


def forward_gaps(model, twin, arrays: dict, objective=None, twin_objective=None) -> dict:
    """Inference-mode outputs of both: ``{output: (max |Δ|, max |emorec|)}``; ``loss`` too with objectives."""
    names = [t.name for t in model.inputs]
    ours = model({k: tf.constant(arrays[k]) for k in names}, training=False)
    batch = torch_batch(arrays)
    twin.eval()
    with torch.no_grad():
        theirs = twin(**{k: batch[k] for k in names})
    gaps = {}
    for key, value in ours.items():
        value = np.asarray(value)
        gaps[key] = (float(np.max(np.abs(to_emorec_layout(key, theirs[key]) - value))), float(np.max(np.abs(value))))
    if objective is not None:
        loss, _ = objective(tf_batch(arrays), ours, reduce_fn=local_moments)
        loss = float(loss + tf.add_n(model.losses)) if model.losses else float(loss)
        with torch.no_grad():
            mirrored = float(twin_objective(twin, batch, theirs))
        gaps["loss"] = (abs(mirrored - loss), abs(loss))
    return gaps


def gaps_within_tolerance(gaps: dict) -> bool:
    """Every gap ≤ TOLERANCE · (1 + |emorec|)."""
    return all(gap <= TOLERANCE * (1.0 + scale) for gap, scale in gaps.values())


# -- timing --------------------------------------------------------------------------------------


class Rounds:
    """Named calls timed in interleaved rounds (the load moves the same way for all); best per call."""

    def __init__(self):
        self.calls: dict[str, Callable[[], None]] = {}
        self.first: dict[str, float] = {}
        self.samples: dict[str, list[float]] = {}
        self.failed: dict[str, str] = {}

    def add(self, name: str, call: Callable[[], None]) -> None:
        """Warm ``call`` up once (its time is ``first``) and enter it in the rounds; a failure is recorded."""
        start = time.perf_counter()
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - a compiler that cannot handle the model is a result
            self.failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
            return
        self.first[name] = time.perf_counter() - start
        self.calls[name] = call
        self.samples[name] = []

    def run(self, repeats: int) -> None:
        """``repeats`` rounds of one call each."""
        for _ in range(repeats):
            for name, call in self.calls.items():
                start = time.perf_counter()
                call()
                self.samples[name].append(time.perf_counter() - start)

    def best(self, name: str) -> float | None:
        """Best time of ``name``, or None when it failed or was not run."""
        return min(self.samples[name]) if self.samples.get(name) else None

    def best_of(self, names) -> float | None:
        """The best time among ``names`` (None when none ran)."""
        times = [t for t in map(self.best, names) if t is not None]
        return min(times) if times else None

    def cell(self, name: str) -> str:
        """The table cell of ``name``'s best time."""
        if name in self.failed:
            return "failed"
        best = self.best(name)
        return "-" if best is None else f"{best:.3f}"

    def first_cell(self, name: str) -> str:
        """The table cell of ``name``'s first call."""
        if name in self.failed:
            return "failed"
        return f"{self.first[name]:.1f}" if name in self.first else "-"


def _wait(result) -> None:
    for leaf in tf.nest.flatten(result):
        if hasattr(leaf, "numpy"):
            leaf.numpy()


def emorec_calls(name: str, config, model, arrays: dict) -> dict:
    """emorec's training step (the engine's: task step on the default strategy) and inference, plain and XLA."""
    spec = get_model_spec(name)
    task = get_task(spec.task)
    objective = task.objective(spec, config.loss)
    optimizer = make_optimizer(config.optimizer)
    optimizer.build(model.trainable_variables)
    names = [t.name for t in model.inputs]
    batch = tf_batch(arrays)
    inputs = {k: batch[k] for k in names}
    calls = {}

    def infer(x):
        return model(x, training=False)

    for jit in (False, "update", True):
        context = StepContext(model, optimizer, objective, tf.distribute.get_strategy(), len(arrays["mask"]),
                              names, xla=_common.XLA_MODE[jit])
        step = task.make_step(config, context)
        label = {False: "", "update": " [xla update]", True: " [xla]"}[jit]
        calls[f"train emorec{label}"] = lambda step=step: _wait(step(batch))
        if jit != "update":  # inference has no optimizer update
            forward = tf.function(infer, jit_compile=jit)
            calls[f"infer emorec{label}"] = lambda forward=forward: _wait(forward(inputs))
    return calls


def torch_optimizer(twin: nn.Module, optimizer_config) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (fused) with the YAML's learning rate, betas and ε over the trainable parameters."""
    return torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], lr=optimizer_config.learning_rate,
                            betas=(optimizer_config.beta_1, optimizer_config.beta_2),
                            eps=optimizer_config.epsilon, fused=True)


def torch_calls(twin, objective, optimizer, arrays: dict, input_names, compile_: bool) -> dict:
    """The twin's training step (forward, objective, backward, Adam) and inference, eager and compiled."""
    batch = torch_batch(arrays)
    inputs = {k: batch[k] for k in input_names}
    loss_module = TwinLoss(twin, objective, input_names)
    variants = {"": (loss_module, twin)}
    if compile_:
        variants[" [compiled]"] = (torch.compile(loss_module), torch.compile(twin))
    calls = {}
    for label, (loss_fn, forward) in variants.items():
        def train(loss_fn=loss_fn):
            twin.train()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            loss.backward()
            optimizer.step()

        def infer(forward=forward):
            twin.eval()
            with torch.inference_mode():
                forward(**inputs)

        calls[f"train torch{label}"] = train
        calls[f"infer torch{label}"] = infer
    return calls


def torch_matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` FLOP/s of a ``size × size`` float32 matmul in torch (2·n³ FLOPs)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 / min(times[1:])


# -- the run -------------------------------------------------------------------------------------


def set_threads(threads: int) -> None:
    """The same thread count for both frameworks (before either runs an op)."""
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)


def load_config(name: str):
    """train/NAME.yaml with the settings the twin reproduces."""
    return resolve_config(config_path_for(name), overrides=OVERRIDES[name])


def run_case(name: str, args) -> tuple[list, list, dict]:
    """Build, check and time one network; returns (table rows, first-call rows, forward gaps)."""
    config = load_config(name)
    batch_size = args.batch_sizes.get(name) or config.data.batch_size
    frames = config.data.window_frames
    keras.utils.set_random_seed(config.training.seed)
    torch.manual_seed(config.training.seed)
    model = get_model_spec(name).builder(config.model)
    twin = build_twin(name, config.model, model)
    spec = get_model_spec(name)
    modalities = spec.modalities
    face_size = getattr(config.model, "face_size", 0)
    arrays = make_batch(modalities, batch_size, frames, face_size, config.data.target)
    objective = make_objective(name, config.loss)
    check = {k: v[: min(2, batch_size)] for k, v in arrays.items()}
    gaps = forward_gaps(model, twin, check, get_task(spec.task).objective(spec, config.loss), objective)
    text = ", ".join(f"{k} max|Δ| {g:.2e} (max|emorec| {s:.3g})" for k, (g, s) in gaps.items())
    print(f"{name}: forward check, inference mode, {len(check['mask'])} windows: {text}", flush=True)
    if not gaps_within_tolerance(gaps):
        raise SystemExit(f"{name}: the twins' forward passes differ beyond {TOLERANCE} · (1 + |value|)")

    rounds = Rounds()
    input_names = [t.name for t in model.inputs]
    calls = {**emorec_calls(name, config, model, arrays),
             **torch_calls(twin, objective, torch_optimizer(twin, config.optimizer), arrays, input_names,
                           not args.no_compile)}
    for call_name, call in calls.items():
        rounds.add(call_name, call)
    rounds.run(args.repeats)
    shape = f"{batch_size}x{frames}"
    rows, firsts = [], []
    for kind, what in (("train", "training step"), ("infer", "inference")):
        names = [f"{kind} {v}" for v in VARIANTS]
        ours = rounds.best_of(names[:len(EMOREC_VARIANTS)])
        theirs = rounds.best_of(names[len(EMOREC_VARIANTS):])
        ratio = ours / theirs if ours and theirs else float("nan")
        verdict = ("met" if ratio <= TARGET else "NOT met") if kind == "train" else ""
        rows.append([f"{name} {what}", shape, *(rounds.cell(n) for n in names), f"{ratio:.2f}",
                     f"{batch_size / ours:.1f}" if ours else "-", f"{batch_size / theirs:.1f}" if theirs else "-",
                     verdict])
        firsts.append([f"{name} {what}", *(rounds.first_cell(n) for n in names)])
    for call_name, reason in rounds.failed.items():
        print(f"{name}: {call_name} failed: {reason}")
    return rows, firsts, gaps


def main(argv=None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="batch 5 (e2e_audio) and 8 (ae_lstm), one timed round")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, among " + ", ".join(CASES))
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads for both frameworks (default: the usable cores)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (best is reported)")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    args.batch_sizes = {}
    if args.quick:
        args.batch_sizes, args.repeats = {"e2e_audio": 5, "ae_lstm": 8}, 1
    set_threads(args.threads)
    # A fresh inductor cache: the compiled column's first call is then a cold compilation in every run.
    cache = tempfile.TemporaryDirectory(prefix="torch_twin_inductor_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
    print(_common.machine_description())
    print(f"PyTorch {torch.__version__}: threads intra={torch.get_num_threads()} "
          f"inter={torch.get_num_interop_threads()}; both frameworks run with {args.threads} threads")
    reference = _common.MatmulReference()
    reference.measure()
    torch_reference = [torch_matmul_flops()]

    rows, firsts = [], []
    for name in cases:
        case_rows, case_firsts, _ = run_case(name, args)
        # The case's models, optimizers and compiled graphs go before the next case is built.
        torch._dynamo.reset()
        keras.backend.clear_session()
        gc.collect()
        rows += case_rows
        firsts += case_firsts
        reference.measure()
        torch_reference.append(torch_matmul_flops())
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(reference.describe())
    print("float32 matmul in torch (2048x2048, best of 5): "
          + ", ".join(f"{f / 1e9:.1f}" for f in torch_reference) + " GFLOP/s")
    print(f"s/call: best of {args.repeats} interleaved rounds; ratio = best emorec ÷ best torch; "
          f"target: training step ratio ≤ {TARGET}")
    _common.print_table(["case", "input", "emorec s", "emorec xla update s", "emorec xla s", "torch s",
                         "torch compiled s", "emorec÷torch", "emorec win/s", "torch win/s", "target"], rows)
    print("\nfirst call, tracing/compilation included (s):")
    _common.print_table(["case", "emorec", "emorec xla update", "emorec xla", "torch", "torch compiled"], firsts)
    cache.cleanup()


if __name__ == "__main__":
    main()

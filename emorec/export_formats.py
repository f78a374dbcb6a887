"""ONNX and LiteRT forms of an exported model: ``emorec export RUN OUT --format savedmodel onnx litert``.

Each format holds two graphs sharing the export's conventions (inputs as in
the SavedModel, see :mod:`emorec.export`; file names in
:class:`emorec.rundir.ExportDir`):

=================  ===================  ==========================================================
format             files                inputs → outputs
=================  ===================  ==========================================================
ONNX (opset 17)    ``model.onnx``       ``audio``/``video``/``landmarks`` (B, T, ...) → ``arousal``,
                                        ``valence`` (B, T)
                   ``model_step.onnx``  the same + ``states`` (B, R, U) → ``arousal``,
                                        ``valence``, ``next_states`` (B, R, U)
LiteRT             ``model.tflite``     as ONNX, with B = 1 (one stream per interpreter)
                   ``model_step.tflite``
=================  ===================  ==========================================================

T (frames per call) is free in both; B is free in ONNX and 1 in LiteRT. The
state output is ``next_states`` because an ONNX graph cannot give an input
and an output the same name (the SavedModel's ``step`` returns ``states``).

How they are made, and why:

* ONNX: ``tf2onnx.convert.from_function`` on ``tf.function`` s of the Keras
  model and its state twin, batch and time dynamic. tf2onnx turns the
  recurrent layers' ``while`` loops (Keras' RNN over the custom
  :class:`~emorec.models.recurrent.PeepholeLSTMCell`, or ``keras.layers.LSTM``)
  into an ONNX ``Loop``, and the speech CNN's
  :class:`~emorec.models.speech.ChannelMaxPool` (reshape + max) into
  ``Reshape`` + ``ReduceMax``; nothing needed changing.
* LiteRT: ``tf.lite.TFLiteConverter`` with built-in ops only (no
  SELECT_TF_OPS, so the plain ``ai-edge-litert`` interpreter runs it). Two
  things are needed for the recurrent loop: a **fixed batch of 1** (the
  converter lowers the loop's TensorList only when its element shape,
  ``(batch, units)``, is static; time stays dynamic), and the variables
  **frozen into constants** first
  (``convert_variables_to_constants_v2``), because variables read inside the
  loop body otherwise convert into resource reads the interpreter cannot
  resolve (``READ_VARIABLE ... variable != nullptr``). Keras'
  ``model.export(format="litert")`` (Keras 3.15) traces with a dynamic batch
  and falls back to Select TF ops (``FlexTensorListReserve``), which the
  ``ai-edge-litert`` interpreter refuses without the Flex delegate. One graph
  per file: the frozen path converts one function at a time.

Supported model/runtime pairs (offline and streaming, each checked at export
against Keras, max abs difference recorded in ``export.json``, export fails
above :data:`CHECK_TOLERANCE`):

===========================================  =========  ======  ======
model                                        SavedModel  ONNX   LiteRT
===========================================  =========  ======  ======
``e2e_audio`` (peephole or ``recurrent:
keras``; ``audio_variant: code``)            yes        yes     yes
``e2e_video``, ``e2e_av``,
``e2e_av_geometric``                         yes        yes     yes
``ae_lstm``, ``ae_lstm_audio``,
``ae_lstm_video``, ``conv_lstm``,
``ae_2slstm``                                yes        yes     yes
===========================================  =========  ======  ======

``audio_variant: paper`` converts too, but its features of a frame depend on
its neighbours (one convolution over the whole chunk), so streaming chunk by
chunk is not the offline model on the whole recording in *any* format, the
SavedModel included; its step graph is checked against the Keras twin on the
same chunks. The ResNet-50 models make large files (each graph holds its own
copy of the 23.6 M weights: about 95 MB per ONNX or LiteRT file) and take
about a minute per graph to convert.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emorec.errors import ExportError
from emorec.runtimes import NEXT_STATES, OUTPUT_NAMES, STATES

logger = logging.getLogger(__name__)

FORMATS = ("savedmodel", "onnx", "litert")
DEFAULT_FORMATS = ("savedmodel",)
ONNX_OPSET = 17
# Predictions live in [-1, 1]. The small models agree with Keras to ~1e-6, but
# ResNet-50's 53 float32 convolutions, fused and ordered differently by each
# runtime (even TensorFlow's own graph mode), drift by up to ~2e-4 on outputs
# of unit scale; a wrong conversion is off by ~1e-1.
CHECK_TOLERANCE = 1e-3
CHECK_FRAMES = (5, 4)  # the check's chunks: offline on their sum, streaming chunk by chunk
CHECK_BATCH = 2


def _input_shapes(model) -> dict:
    from emorec.streaming import input_names

    tensors = model.input if isinstance(model.input, dict) else {t.name: t for t in model.inputs}
    return {name: tuple(int(d) for d in tensors[name].shape[2:]) for name in input_names(model)}


def graph_functions(model, twin, batch: int | None):
    """``tf.function`` s of the offline model and of its state twin, for converters.

    Args:
        model: the offline Keras model (``emotion`` output).
        twin: its streaming twin (:func:`emorec.streaming.build_streaming`), or None.
        batch: the batch dimension of every input (None = dynamic).

    Returns:
        ``(offline, step)``: ``offline(inputs...) -> {arousal, valence}`` and ``step(inputs...,
        states) -> {arousal, valence, next_states}`` (None without ``twin``), each with its
        ``input_signature`` (time dynamic).
    """
    import tensorflow as tf

    shapes = _input_shapes(model)
    names = list(shapes)
    specs = [tf.TensorSpec((batch, None, *shapes[n]), tf.float32, name=n) for n in names]

    def offline(*args):
        emotion = model(dict(zip(names, args)), training=False)["emotion"]
        return {name: emotion[..., i] for i, name in enumerate(OUTPUT_NAMES)}

    offline_fn = tf.function(offline, input_signature=specs)
    if twin is None:
        return offline_fn, None
    from emorec.streaming import state_shape

    state_spec = tf.TensorSpec((batch, *state_shape(twin)), tf.float32, name=STATES)

    def step(*args):
        out = twin(dict(zip([*names, STATES], args)), training=False)
        emotion = out["emotion"]
        return {**{name: emotion[..., i] for i, name in enumerate(OUTPUT_NAMES)}, NEXT_STATES: out[STATES]}

    return offline_fn, tf.function(step, input_signature=[*specs, state_spec])


def _io(function) -> dict:
    specs = function.input_signature
    outputs = [*OUTPUT_NAMES, NEXT_STATES] if specs[-1].name == STATES else list(OUTPUT_NAMES)
    return {"inputs": [s.name for s in specs], "outputs": outputs}


def onnx_bytes(function) -> bytes:
    """One ``tf.function`` (with its input signature) as a serialised ONNX model (needs tf2onnx).

    Args:
        function: a ``tf.function`` with an ``input_signature``, as made by
            :func:`graph_functions`.

    Returns:
        The ONNX ``ModelProto`` bytes (opset :data:`ONNX_OPSET`); inputs and outputs keep the
        signature's names.
    """
    import tf2onnx

    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                             opset=ONNX_OPSET)
    return proto.SerializeToString()


def litert_bytes(function) -> bytes:
    """One ``tf.function`` (batch 1 in its signature) as a LiteRT flatbuffer, variables frozen in.

    The frozen function loses its output names, so it is wrapped again in a
    function returning the same dict (the signature keeps the names).

    Args:
        function: a ``tf.function`` with a fully known batch dimension in its
            ``input_signature`` (:func:`graph_functions` with ``batch=1``).

    Returns:
        The ``.tflite`` flatbuffer bytes, TFLite built-in ops only.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = function.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    keys = sorted(concrete.structured_outputs)  # the order the frozen graph's outputs come in

    def named(*args):
        return dict(zip(keys, frozen(*args)))

    wrapper = tf.function(named, input_signature=function.input_signature)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([wrapper.get_concrete_function()], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _require_converter(fmt: str, shown: Path) -> None:
    import importlib

    # The runtime too: every converted model is run once against Keras before it is kept.
    needed = {"onnx": {"tf2onnx": "tf2onnx", "onnx": "onnx", "onnxruntime": "onnxruntime"},
              "litert": {"ai_edge_litert.interpreter": "ai-edge-litert"}}[fmt]
    for module, package in needed.items():
        try:
            importlib.import_module(module)
        except ImportError:
            raise ExportError(f"{shown}: --format {fmt} needs {', '.join(needed.values())} ({package} is "
                              f"missing): pip install 'emorec[{fmt}]'") from None


def write_format(fmt: str, model, twin, folder: Path, shown: Path | None = None) -> dict:
    """Convert ``model`` (and ``twin``) to ``fmt`` in ``folder``; returns the format's ``export.json`` entry.

    Args:
        fmt: ``onnx`` or ``litert``.
        model: the offline inference model.
        twin: its streaming twin, or None (no streaming file).
        folder: where the files go (names from :class:`~emorec.rundir.ExportDir`).
        shown: the folder messages name (the export directory, when ``folder`` is a staging folder).

    Returns:
        ``{"offline": {"file", "inputs", "outputs"}, "streaming": {...} or None, "batch", "frames",
        "converter", "runtime"}``.

    Raises:
        ExportError: the converter is not installed or cannot convert the model.
    """
    from emorec.manifest import atomic_write_bytes
    from emorec.rundir import ExportDir

    shown = Path(folder if shown is None else shown)
    _require_converter(fmt, shown)
    names = {"onnx": (ExportDir.ONNX, ExportDir.ONNX_STREAMING),
             "litert": (ExportDir.LITERT, ExportDir.LITERT_STREAMING)}[fmt]
    batch = 1 if fmt == "litert" else None
    convert = litert_bytes if fmt == "litert" else onnx_bytes
    entry = {"batch": "1 (one stream per call)" if batch else "any", "frames": "any number per call"}
    for part, function, file in zip(("offline", "streaming"), graph_functions(model, twin, batch), names):
        if function is None:
            entry[part] = None
            continue
        try:
            data = convert(function)
        except Exception as exc:  # noqa: BLE001 - converters raise anything; the model is the cause
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"{shown / file}: cannot convert model {model.name} to {fmt} ({first})") from exc
        atomic_write_bytes(folder / file, data)
        entry[part] = {"file": file, **_io(function)}
        logger.info("wrote %s (%.1f MB)", file, len(data) / 1e6)
    entry.update(_versions(fmt))
    return entry


def _versions(fmt: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    packages = {"onnx": (("tf2onnx", "onnx"), "onnxruntime"), "litert": (("tensorflow",), "ai-edge-litert")}[fmt]
    found = []
    for package in packages[0]:
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(package)
    return {"converter": ", ".join(found), "runtime": packages[1],
            **({"opset": ONNX_OPSET} if fmt == "onnx" else {})}


def check_inputs(model, frames: int, batch: int = CHECK_BATCH, seed: int = 0) -> dict:
    """Deterministic inputs for the export's check: noise, faces in [0, 1], landmarks in the crop.

    Args:
        model: the Keras model whose inputs to fill (names and per-frame shapes are read from it).
        frames: number of frames per stream.
        batch: number of streams.
        seed: seed of the numpy generator (same seed, same arrays).

    Returns:
        ``{input name: (batch, frames, *shape) float32}``: ``video`` uniform in ``[0, 1]``,
        ``landmarks`` uniform in ``[0, 32]`` pixels, anything else normal with std 0.3.

    >>> import keras
    >>> audio = keras.Input((None, 640), name="audio")
    >>> m = keras.Model({"audio": audio}, {"emotion": keras.layers.Dense(2)(audio)})
    >>> {k: v.shape for k, v in check_inputs(m, 3).items()}
    {'audio': (2, 3, 640)}
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in _input_shapes(model).items():
        if name == "video":
            out[name] = rng.uniform(0.0, 1.0, (batch, frames, *shape))
        elif name == "landmarks":
            out[name] = rng.uniform(0.0, 32.0, (batch, frames, *shape))
        else:
            out[name] = rng.normal(0.0, 0.3, (batch, frames, *shape))
    return {k: v.astype(np.float32) for k, v in out.items()}


def check_runtime(runtime, model, twin) -> dict:
    """Max abs difference between ``runtime`` and Keras, offline and streaming.

    The inputs are :func:`check_inputs`. The streaming graph is compared with the
    Keras twin fed the same chunks (so a model whose chunks are not independent,
    ``audio_variant: paper``, is still checked exactly).

    Args:
        runtime: a loaded :class:`~emorec.runtimes.Runtime` of the exported files
            (its ``offline``, ``streaming``, ``initial_state`` and ``step``).
        model: the offline Keras inference model the files were made from.
        twin: the model's streaming twin, or None (no streaming check).

    Returns:
        ``{"offline": float, "streaming": float or None}``; the streaming figure covers the
        predictions and the carried states over the chunks :data:`CHECK_FRAMES`.
    """
    inputs = check_inputs(model, sum(CHECK_FRAMES))
    want = np.asarray(model(inputs, training=False)["emotion"])
    result = {"offline": float(np.max(np.abs(runtime.offline(inputs) - want))), "streaming": None}
    if twin is not None and runtime.streaming:
        states = runtime.initial_state(CHECK_BATCH)
        keras_states = states.copy()
        diff, start = 0.0, 0
        for size in CHECK_FRAMES:
            chunk = {k: v[:, start:start + size] for k, v in inputs.items()}
            got, states = runtime.step(chunk, states)
            ref = twin({**chunk, STATES: keras_states}, training=False)
            keras_states = np.asarray(ref[STATES])
            diff = max(diff, float(np.max(np.abs(got - np.asarray(ref["emotion"])))),
                       float(np.max(np.abs(states - keras_states))))
            start += size
        result["streaming"] = diff
    return result

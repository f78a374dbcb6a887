"""``emorec export RUN_DIR OUT_DIR [--format savedmodel onnx litert]``: a run's best model for serving.

Layout of ``OUT_DIR`` (names in :class:`emorec.rundir.ExportDir`)::

    export.json        what a client needs: model, inputs, face size, frame period, sample rate,
                       audio normalisation, label alignment, state layout, and per format its
                       files, inputs, outputs and the check against Keras (formats.<name>)
    model.keras        the Keras model (a hard link to RUN_DIR/best.keras where the file system allows)
    postprocess.json   the run's tuned AVEC post-processing and the inference mode it was tuned on
                       (only if the run has one)
    saved_model/       --format savedmodel (default): signatures serving_default (offline), step
                       (streaming) and initial_state, sharing one copy of the variables
    model.onnx, model_step.onnx       --format onnx: offline and streaming graphs (ONNX Runtime)
    model.tflite, model_step.tflite   --format litert: the same for the LiteRT interpreter, batch 1

Several formats may be asked for at once. Each written format is loaded in
its own runtime (TensorFlow, ONNX Runtime, the LiteRT interpreter;
:mod:`emorec.runtimes`) and compared with the Keras model, offline and chunk
by chunk with the state carried; the largest absolute difference goes into
``export.json`` (``formats.<name>.check_max_abs_diff``) and an export above
:data:`emorec.export_formats.CHECK_TOLERANCE` (1e-3) fails. Everything is written into a temporary folder first and moved
into place at the end, ``export.json`` last, so a failed export leaves the
previous one as it was.

Only the path to ``emotion`` is exported: decoders (``ae_lstm``'s
reconstructions) play no part in prediction, so they are left out.

SavedModel offline signature (only the model's own inputs; batch and time dynamic)::

    serving_default(audio=float32 (B, T, 640), video=float32 (B, T, S, S, 3) RGB in [0, 1],
                    [landmarks=float32 (B, T, 5, 2)]) -> {arousal: (B, T), valence: (B, T)}

Streaming signature (batch axis = independent streams, T = frames in this chunk)::

    step(<same inputs for one chunk>, states=float32 (B, R, U))
        -> {arousal: (B, T), valence: (B, T), states: (B, R, U)}
    initial_state(batch_size=int32 ()) -> {states: zeros (batch_size, R, U)}

ONNX and LiteRT carry the same graphs, the state output named
``next_states``; LiteRT takes one stream (B = 1) per call, any T. How they
are converted (tf2onnx; TF's LiteRT converter on frozen, batch-1 functions,
built-in ops only) and why: :mod:`emorec.export_formats`.

Supported model/runtime pairs (offline and streaming): every emorec model
with recurrent heads in every format: ``e2e_audio`` (peephole or
``recurrent: keras``), ``e2e_video``, ``e2e_av``, ``e2e_av_geometric`` and
the ``ae_lstm`` family (``ae_lstm``, ``ae_lstm_audio``, ``ae_lstm_video``,
``conv_lstm``, ``ae_2slstm``) in SavedModel, ONNX and LiteRT, with no fixed
chunk length. ``audio_variant: paper`` converts too, but its streaming is not
its offline output in any format (its convolutions span the chunk's edges).

``R``/``U`` (``export.json`` ``streaming.state_shape``): see
:mod:`emorec.models.twin`. Zeros start a stream; feeding a recording chunk by
chunk, passing each returned state to the next call, gives the offline
output on the whole recording.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from emorec.errors import ConfigError, EmorecError, ExportError
from emorec.manifest import atomic_write_bytes
from emorec.rundir import ExportDir, RunDir
from emorec.runtimes import OUTPUT_NAMES, STATES
from emorec.schema import FRAME_PERIOD, FRAME_SAMPLES, MODALITIES, SAMPLE_RATE

logger = logging.getLogger(__name__)

EXPORT_VERSION = 3
STATE_LAYOUT = (
    "float32 (streams, rows, units); rows 2l and 2l+1 are h and c of LSTM layer l "
    "(0 = the layer that reads the features; ae_2slstm: video head rows first); zeros start a stream"
)


def _input_specs(model) -> list:
    """One named TensorSpec per model input, batch and time dynamic."""
    import tensorflow as tf

    from emorec.streaming import input_names

    inputs = model.input if isinstance(model.input, dict) else {t.name: t for t in model.inputs}
    return [
        tf.TensorSpec((None, None, *inputs[name].shape[2:]), tf.float32, name=name)
        for name in input_names(model)
    ]


def _split(emotion) -> dict:
    return {name: emotion[..., i] for i, name in enumerate(OUTPUT_NAMES)}


def inference_model(model):
    """The part of ``model`` that computes ``emotion`` (shares its layers; decoders left out).

    Args:
        model: a Keras model with an ``emotion`` output (a dict output, possibly with
            reconstruction outputs beside it).

    Returns:
        ``model`` itself when ``emotion`` is its only output (or its output is not a dict),
        else a new functional model over the same input with the ``emotion`` output alone.
    """
    import keras

    outputs = model.output if isinstance(model.output, dict) else None
    if outputs is None or set(outputs) == {"emotion"}:
        return model
    return keras.Model(model.input, {"emotion": outputs["emotion"]}, name=model.name)


def serving_module(model, streaming: bool = True):
    """A ``tf.Module`` with the offline (and streaming) functions and their signatures, one set of variables.

    Args:
        model: the offline Keras model.
        streaming: add the ``step`` and ``initial_state`` signatures (needs recurrent heads).

    Returns:
        ``(module, signatures, state_shape or None, note)``: ``note`` says why there is no streaming form.
    """
    import tensorflow as tf

    from emorec.streaming import build_streaming, state_shape

    model = inference_model(model)
    specs = _input_specs(model)
    names = [s.name for s in specs]
    module = tf.Module()
    module.model = model

    def serve(*args):
        return _split(model(dict(zip(names, args)), training=False)["emotion"])

    module.serve = tf.function(serve, input_signature=specs)
    signatures = {"serving_default": module.serve.get_concrete_function()}
    if not streaming:
        return module, signatures, None, "exported without streaming (--no-streaming)"
    try:
        twin = build_streaming(model)
    except ConfigError as exc:
        return module, signatures, None, str(exc)
    shape = state_shape(twin)
    module.streaming = twin
    step_specs = [*specs, tf.TensorSpec((None, *shape), tf.float32, name=STATES)]

    def step(*args):
        out = twin(dict(zip([*names, STATES], args)), training=False)
        return {**_split(out["emotion"]), STATES: out[STATES]}

    def initial_state(batch_size):
        return {STATES: tf.zeros(tf.stack([batch_size, *shape]), tf.float32)}

    module.step = tf.function(step, input_signature=step_specs)
    module.initial_state = tf.function(
        initial_state, input_signature=[tf.TensorSpec((), tf.int32, name="batch_size")]
    )
    signatures["step"] = module.step.get_concrete_function()
    signatures["initial_state"] = module.initial_state.get_concrete_function()
    return module, signatures, shape, None


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source``, or a copy where links are impossible.

    The link is made under a temporary name and renamed over ``target``; the copy is
    written atomically, so ``target`` is never seen half-written.

    Args:
        source: the existing file.
        target: the path to create or replace (same folder rules as :func:`os.link`).
    """
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        atomic_write_bytes(target, source.read_bytes())
        return
    os.replace(tmp, target)


def _training_data(config, data):
    """The training dataset's handle (``data``, or the directory the run names), or a note why there is none."""
    from emorec.dataset import open_dataset

    if data is not None:
        return open_dataset(data), None
    data_dir = (config.run or {}).get("data_dir")
    if not data_dir:
        return None, "run config names no data_dir; defaults assumed"
    try:
        return open_dataset(data_dir), None
    except (EmorecError, OSError) as exc:
        return None, f"training data manifest unreadable ({exc}); defaults assumed"


# Every name an export may hold besides export.json; a new export replaces them all.
EXPORT_ENTRIES = (
    ExportDir.KERAS_MODEL, ExportDir.POSTPROCESS, ExportDir.SAVED_MODEL,
    ExportDir.ONNX, ExportDir.ONNX_STREAMING, ExportDir.LITERT, ExportDir.LITERT_STREAMING,
)


def check_formats(formats) -> tuple[str, ...]:
    """The requested formats, deduplicated in the canonical order; ExportError for an unknown one.

    Args:
        formats: names from :data:`emorec.export_formats.FORMATS`, in any order, repeats
            allowed; None means the default (``savedmodel`` alone).

    Returns:
        The formats in the order of :data:`~emorec.export_formats.FORMATS`, each once.

    Raises:
        ExportError: an unknown name, or an empty list.

    >>> check_formats(["litert", "savedmodel", "litert"])
    ('savedmodel', 'litert')
    """
    from emorec.export_formats import DEFAULT_FORMATS, FORMATS

    formats = tuple(DEFAULT_FORMATS if formats is None else formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format(s) {unknown or '(none)'}; expected some of {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in formats)


def _saved_model_entry(names: list, shape) -> dict:
    return {
        "folder": ExportDir.SAVED_MODEL,
        "batch": "any", "frames": "any number per call",
        "offline": {"signature": "serving_default", "inputs": names, "outputs": list(OUTPUT_NAMES)},
        "streaming": None if shape is None else {
            "signature": "step", "inputs": [*names, STATES], "outputs": [*OUTPUT_NAMES, STATES],
            "initial_state_signature": "initial_state",
        },
        "runtime": "tensorflow",
    }


def _check(fmt: str, stage: Path, info: dict, model, twin) -> dict:
    """Run the staged ``fmt`` in its runtime against Keras; ExportError above the tolerance."""
    from emorec.export_formats import CHECK_TOLERANCE, check_runtime
    from emorec.runtimes import open_runtime

    diffs = check_runtime(open_runtime(stage, info, fmt), model, twin)
    worst = max(d for d in diffs.values() if d is not None)
    if not worst <= CHECK_TOLERANCE:
        raise ExportError(f"{stage.parent}: the {fmt} model differs from the Keras model by {worst:.3g} "
                          f"(more than {CHECK_TOLERANCE}); not exported")
    logger.info("%s: max abs difference from Keras %.2g (offline), %s (streaming)", fmt, diffs["offline"],
                "n/a" if diffs["streaming"] is None else f"{diffs['streaming']:.2g}")
    return diffs


def _install(stage: Path, out: ExportDir) -> None:
    """Move the staged files into ``out``, drop what an earlier export left, write export.json last.

    The earlier export.json goes first, so that an interrupted swap leaves a
    folder that is no export rather than one whose export.json is wrong.
    """
    out.info.unlink(missing_ok=True)
    for name in EXPORT_ENTRIES:
        target, staged = out.path / name, stage / name
        if staged.exists():
            if target.is_dir() and not target.is_symlink():
                # A folder cannot be replaced in one rename: move the old one aside first.
                old = stage / f"{name}.old"
                os.replace(target, old)
            os.replace(staged, target)
        elif target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
    os.replace(stage / ExportDir.EXPORT_JSON, out.info)


def _feature_info(model, names, config, handle) -> dict:
    """``export.json`` entries of a model reading feature sets: their dimensions and how to normalise them."""
    from emorec.schema import feature_set_of

    inputs = model.input if isinstance(model.input, dict) else {t.name: t for t in model.inputs}
    dims = {feature_set_of(n): int(inputs[n].shape[-1]) for n in names if feature_set_of(n) is not None}
    if not dims:
        return {}
    norm = config.data.feature_norm
    out = {"feature_sets": dims, "feature_norm": norm,
           "feature_input": "float32 (B, T, D) per set under input features_<name>, z-scored per dimension "
                            + {"speaker": "with the speaker's own mean and standard deviation (over all the "
                                          "speaker's frames)",
                               "train": "with feature_norm_stats (the training partition's)",
                               "none": "not at all (as stored)"}[norm]}
    if norm == "train" and handle is not None:
        from emorec.feature_norm import normalization

        stats = normalization(handle, "train", tuple(dims), "train")
        out["feature_norm_stats"] = {name: {"mean": stats[name][0][0].tolist(), "scale": stats[name][1][0].tolist()}
                                     for name in dims}
    return out


def export_run(run_dir, out_dir, *, model=None, keras_file=None, data=None, streaming: bool = True,
               formats=None) -> dict:
    """Write the export directory of a run's best model.

    Everything is written into a temporary folder inside ``out_dir``, every
    format is run in its own runtime and compared with the Keras model, and
    only then are the files moved into place (``export.json`` last): a failed
    export leaves an earlier one untouched.

    Args:
        run_dir: the training run directory.
        out_dir: the export directory (created; an earlier export there is replaced).
        model: use this model instead of ``RUN_DIR/best.keras``.
        keras_file: a ``.keras`` file holding ``model`` (hard-linked as ``model.keras`` instead of
            writing the model again); implied when ``model`` is None.
        data: the training dataset (handle or directory), for its audio normalisation and label
            alignment; default: the directory the run's config names.
        streaming: add the streaming forms.
        formats: some of ``savedmodel``, ``onnx``, ``litert`` (default: ``savedmodel``).

    Returns:
        The dict written to ``export.json``.

    Raises:
        ConfigError: the run directory is unusable; ExportError: an unknown format, a converter
            that is not installed or fails, an output directory that cannot be written.
    """
    from emorec.config import load_run_config
    from emorec.evaluate import load_best_model

    formats = check_formats(formats)
    run = RunDir(run_dir)
    config = load_run_config(run.path)
    if model is None:
        model, keras_file = load_best_model(run.path), run.best_model
    return write_staged(out_dir, lambda stage: _export_into(stage, run, config, model, keras_file, data,
                                                           streaming, formats))


def write_staged(out_dir, fill) -> dict:
    """Write an export into a staging folder inside ``out_dir``, then swap it in (export.json last).

    Every export (per-frame models here, clip models in :mod:`emorec.clip_export`)
    goes through this, so a failed one leaves the previous export as it was.

    Args:
        out_dir: the export directory (created).
        fill: ``fill(stage) -> info``: writes the export's files into the folder ``stage``
            and returns the ``export.json`` dict, which is written here.

    Returns:
        What ``fill`` returned.

    Raises:
        ExportError: ``out_dir`` cannot be written.
    """
    out = ExportDir(out_dir)
    try:
        out.path.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".export.", dir=out.path))
    except OSError as exc:
        raise ExportError(f"{out.path}: cannot write the export here ({exc.strerror or exc})") from None
    try:
        info = fill(stage)
        atomic_write_bytes(stage / ExportDir.EXPORT_JSON, (json.dumps(info, indent=2) + "\n").encode())
        _install(stage, out)
    except OSError as exc:
        raise ExportError(f"{out.path}: cannot write the export ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return info


def _effective_audio_norm(config, handle) -> str:
    """The audio normalisation the model was trained with, which prediction must repeat.

    Stored audio is normalised either at build (datasets built with
    ``--audio-norm recording``) or when read (``data.audio_norm: recording``);
    the model saw normalised audio if either applied.
    """
    from emorec.media.audio import DEFAULT_AUDIO_NORM

    built = handle.audio_norm if handle else DEFAULT_AUDIO_NORM
    return "recording" if "recording" in (built, config.data.audio_norm) else built


def _export_into(stage: Path, run: RunDir, config, model, keras_file, data, streaming: bool, formats) -> dict:
    """Write every part of the export into ``stage`` and check each format; returns export.json's dict."""
    from emorec.evaluate import inference_mode
    from emorec.export_formats import write_format
    from emorec.schema import DEFAULT_LABEL_ALIGNMENT

    handle, data_note = _training_data(config, data)
    module, signatures, shape, stream_note = serving_module(model, streaming)
    names = [s.name for s in _input_specs(model)]
    face_size = int(model.input["video"].shape[2]) if "video" in names else None
    info = {
        "format_version": EXPORT_VERSION,
        "model": config.model_name,
        "run_dir": str(run.path.resolve()),
        "inputs": names,
        "modalities": [m for m in MODALITIES if m in names],
        "face_size": face_size,
        "video_input": "float32 RGB face crops in [0, 1] (uint8 / 255)" if face_size else None,
        "frame_period": FRAME_PERIOD,
        "sample_rate": SAMPLE_RATE,
        "frame_samples": FRAME_SAMPLES,
        "audio_norm": _effective_audio_norm(config, handle),
        "label_alignment": handle.label_alignment if handle else DEFAULT_LABEL_ALIGNMENT,
        "training_window_frames": config.window_frames,
        "training_inference": {"mode": inference_mode("train", config)[0], "frames": config.window_frames},
        "outputs": list(OUTPUT_NAMES),
        "saved_model": ExportDir.SAVED_MODEL if "savedmodel" in formats else None,
        "offline": {"signature": "serving_default"} if "savedmodel" in formats else None,
        "keras_model": ExportDir.KERAS_MODEL,
        "postprocess": None,
        "streaming": None,
        "formats": {},
    }
    info.update(_feature_info(model, names, config, handle))
    if data_note:
        info["note"] = data_note
    if shape is None:
        info["streaming_unavailable"] = stream_note
    else:
        info["streaming"] = {
            "inputs": [*names, STATES],
            "outputs": [*OUTPUT_NAMES, STATES],
            "state_shape": list(shape),
            "state_dtype": "float32",
            "state_layout": STATE_LAYOUT,
            # The SavedModel's names; ONNX and LiteRT: see formats.<name>.streaming.
            "signature": "step",
            "initial_state_signature": "initial_state",
        }
    if keras_file is not None and Path(keras_file).is_file():
        link_or_copy(Path(keras_file), stage / ExportDir.KERAS_MODEL)
    else:
        from emorec.training.checkpoint import save_keras_atomic

        save_keras_atomic(model, stage / ExportDir.KERAS_MODEL)
    if run.postprocess.is_file():
        atomic_write_bytes(stage / ExportDir.POSTPROCESS, run.postprocess.read_bytes())
        info["postprocess"] = ExportDir.POSTPROCESS
    keras_model = inference_model(model)
    twin = getattr(module, "streaming", None)
    for fmt in formats:
        if fmt == "savedmodel":
            import tensorflow as tf

            tf.saved_model.save(module, str(stage / ExportDir.SAVED_MODEL), signatures=signatures)
            entry = _saved_model_entry(names, shape)
        else:
            entry = write_format(fmt, keras_model, twin, stage, shown=stage.parent)
        info["formats"][fmt] = entry
        entry["check_max_abs_diff"] = _check(fmt, stage, info, keras_model, twin)
    return info


if __name__ == "__main__":
    from emorec.cli import module_main

    module_main("export", "python -m emorec.export")

"""``emorec export RUN_DIR OUT_DIR``: a training run's best model as one SavedModel for serving.

Layout of ``OUT_DIR`` (names in :class:`emorec.rundir.ExportDir`)::

    export.json        what a client needs: model, inputs, face size, frame period, sample rate,
                       audio normalisation, label alignment, state layout, signatures
    model.keras        the Keras model (a hard link to RUN_DIR/best.keras where the file system allows)
    postprocess.json   the run's tuned AVEC post-processing and the inference mode it was tuned on
                       (only if the run has one)
    saved_model/       signatures serving_default (offline), step (streaming) and initial_state,
                       sharing one copy of the variables

Only the path to ``emotion`` is exported: decoders (``ae_lstm``'s
reconstructions) play no part in prediction, so they are left out.

Offline signature (only the model's own inputs; batch and time dynamic)::

    serving_default(audio=float32 (B, T, 640), video=float32 (B, T, S, S, 3) RGB in [0, 1],
                    [landmarks=float32 (B, T, 5, 2)]) -> {arousal: (B, T), valence: (B, T)}

Streaming signature (batch axis = independent streams, T = frames in this chunk)::

    step(<same inputs for one chunk>, states=float32 (B, R, U))
        -> {arousal: (B, T), valence: (B, T), states: (B, R, U)}
    initial_state(batch_size=int32 ()) -> {states: zeros (batch_size, R, U)}

``R``/``U`` (``export.json`` ``streaming.state_shape``): see
:mod:`emorec.models.twin`. Zeros start a stream; feeding a recording chunk by
chunk, passing each returned ``states`` to the next call, gives the offline
output on the whole recording.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from emorec.errors import ConfigError, EmorecError
from emorec.manifest import atomic_write_bytes
from emorec.rundir import ExportDir, RunDir
from emorec.schema import FRAME_PERIOD, FRAME_SAMPLES, MODALITIES, SAMPLE_RATE

logger = logging.getLogger(__name__)

EXPORT_VERSION = 2
STATES = "states"
OUTPUT_NAMES = ("arousal", "valence")
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
    """The part of ``model`` that computes ``emotion`` (shares its layers; decoders left out)."""
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


def _save_dir(module, signatures, target: Path) -> None:
    """``tf.saved_model.save`` into a temporary folder beside ``target``, then swap it in."""
    import tensorflow as tf

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no bytes written), or a copy where links are impossible."""
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


def export_run(run_dir, out_dir, *, model=None, keras_file=None, data=None, streaming: bool = True) -> dict:
    """Write the export directory of a run's best model.

    Args:
        run_dir: the training run directory.
        out_dir: the export directory (created; an earlier export there is replaced).
        model: use this model instead of ``RUN_DIR/best.keras``.
        keras_file: a ``.keras`` file holding ``model`` (hard-linked as ``model.keras`` instead of
            writing the model again); implied when ``model`` is None.
        data: the training dataset (handle or directory), for its audio normalisation and label
            alignment; default: the directory the run's config names.
        streaming: add the streaming signatures.

    Returns:
        The dict written to ``export.json``.

    Raises:
        ConfigError: the run directory is unusable.
    """
    from emorec.config import load_run_config
    from emorec.evaluate import load_best_model
    from emorec.media.audio import DEFAULT_AUDIO_NORM
    from emorec.schema import DEFAULT_LABEL_ALIGNMENT

    run, out = RunDir(run_dir), ExportDir(out_dir)
    config = load_run_config(run.path)
    if model is None:
        model, keras_file = load_best_model(run.path), run.best_model
    out.path.mkdir(parents=True, exist_ok=True)
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
        "audio_norm": handle.audio_norm if handle else DEFAULT_AUDIO_NORM,
        "label_alignment": handle.label_alignment if handle else DEFAULT_LABEL_ALIGNMENT,
        "training_window_frames": config.window_frames,
        "outputs": list(OUTPUT_NAMES),
        "saved_model": ExportDir.SAVED_MODEL,
        "offline": {"signature": "serving_default"},
        "keras_model": ExportDir.KERAS_MODEL,
        "postprocess": None,
        "streaming": None,
    }
    info.update(_feature_info(model, names, config, handle))
    if data_note:
        info["note"] = data_note
    if keras_file is not None and Path(keras_file).is_file():
        link_or_copy(Path(keras_file), out.keras_model)
    else:
        from emorec.training.checkpoint import save_keras_atomic

        save_keras_atomic(model, out.keras_model)
    if run.postprocess.is_file():
        atomic_write_bytes(out.postprocess, run.postprocess.read_bytes())
        info["postprocess"] = ExportDir.POSTPROCESS
    _save_dir(module, signatures, out.saved_model)
    if shape is None:
        info["streaming_unavailable"] = stream_note
    else:
        info["streaming"] = {
            "signature": "step",
            "inputs": [*names, STATES],
            "outputs": [*OUTPUT_NAMES, STATES],
            "state_shape": list(shape),
            "state_dtype": "float32",
            "state_layout": STATE_LAYOUT,
            "initial_state_signature": "initial_state",
        }
    atomic_write_bytes(out.info, (json.dumps(info, indent=2) + "\n").encode())
    return info


if __name__ == "__main__":
    from emorec.cli import module_main

    module_main("export", "python -m emorec.export")

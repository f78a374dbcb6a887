"""``python -m emorec.export RUN_DIR OUT_DIR``: a training run's best model as SavedModels for serving.

Layout of ``OUT_DIR``::

    export.json               what a client needs: model, inputs, face size, frame period,
                              sample rate, audio normalisation, label alignment, state layout
    model.keras               the Keras model (RUN_DIR/best.keras)
    postprocess.json          the run's tuned AVEC post-processing (only if the run has one)
    saved_model/              offline: signature ``serving_default`` (also ``.serve``)
    streaming_saved_model/    streaming: signatures ``serving_default`` = ``step``, and ``initial_state``

Offline signature (only the model's own inputs; batch and time dynamic)::

    serve(audio=float32 (B, T, 640), video=float32 (B, T, S, S, 3) RGB in [0, 1],
          [landmarks=float32 (B, T, 5, 2)]) -> {arousal: (B, T), valence: (B, T)}

Streaming signature (batch axis = independent streams, T = frames in this chunk)::

    step(<same inputs for one chunk>, states=float32 (B, R, U))
        -> {arousal: (B, T), valence: (B, T), states: (B, R, U)}
    initial_state(batch_size=int32 ()) -> {states: zeros (batch_size, R, U)}

``R``/``U`` (``export.json`` ``streaming.state_shape``): rows ``2 l`` and
``2 l + 1`` are ``h`` and ``c`` of LSTM layer ``l`` (see
:mod:`emorec.models.recurrent`; ``ae_2slstm`` stacks the video head's rows
before the audio head's). Zeros start a stream; feeding a recording chunk by
chunk, passing each returned ``states`` to the next call, gives the offline
output on the whole recording.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from emorec.errors import ConfigError, EmorecError
from emorec.manifest import atomic_write_bytes
from emorec.schema import (
    DEFAULT_LABEL_ALIGNMENT,
    FRAME_PERIOD,
    FRAME_SAMPLES,
    MODALITIES,
    SAMPLE_RATE,
)

EXPORT_VERSION = 1
EXPORT_JSON = "export.json"
KERAS_FILE = "model.keras"
POSTPROCESS_FILE = "postprocess.json"
OFFLINE_DIR = "saved_model"
STREAMING_DIR = "streaming_saved_model"
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


def _offline_module(model):
    import tensorflow as tf

    specs = _input_specs(model)
    names = [s.name for s in specs]
    module = tf.Module()
    module.model = model

    def serve(*args):
        return _split(model(dict(zip(names, args)), training=False)["emotion"])

    module.serve = tf.function(serve, input_signature=specs)
    return module, {"serving_default": module.serve.get_concrete_function()}


def _streaming_module(streaming, state_shape):
    import tensorflow as tf

    specs = _input_specs(streaming)
    names = [s.name for s in specs] + [STATES]
    specs.append(tf.TensorSpec((None, *state_shape), tf.float32, name=STATES))
    module = tf.Module()
    module.model = streaming

    def step(*args):
        out = streaming(dict(zip(names, args)), training=False)
        return {**_split(out["emotion"]), STATES: out[STATES]}

    def initial_state(batch_size):
        return {STATES: tf.zeros(tf.stack([batch_size, *state_shape]), tf.float32)}

    module.step = tf.function(step, input_signature=specs)
    module.initial_state = tf.function(
        initial_state, input_signature=[tf.TensorSpec((), tf.int32, name="batch_size")]
    )
    step_fn = module.step.get_concrete_function()
    return module, {
        "serving_default": step_fn,
        "step": step_fn,
        "initial_state": module.initial_state.get_concrete_function(),
    }


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


def _copy_file(source: Path, target: Path) -> None:
    atomic_write_bytes(target, source.read_bytes())


def _data_options(config: dict) -> tuple[dict, str | None]:
    """The training data's manifest options (audio norm, label alignment), if its directory is still there."""
    from emorec.evaluate import dataset_options

    data_dir = (config.get("run") or {}).get("data_dir")
    if not data_dir:
        return {}, "run config names no data_dir; defaults assumed"
    try:
        return dataset_options(data_dir), None
    except (EmorecError, OSError) as exc:
        return {}, f"training data manifest unreadable ({exc}); defaults assumed"


def export_run(run_dir, out_dir, *, model=None, streaming: bool = True) -> dict:
    """Write the export directory of the run's best model (``model`` overrides it); returns export.json's dict."""
    import keras

    from emorec.evaluate import BEST_MODEL, load_best_model, read_run_config
    from emorec.media.audio import DEFAULT_AUDIO_NORM

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config = read_run_config(run_dir)
    model = model if model is not None else load_best_model(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options, options_note = _data_options(config)

    specs = _input_specs(model)
    names = [s.name for s in specs]
    face_size = None
    if "video" in names:
        face_size = int(specs[names.index("video")].shape[2])
    info = {
        "format_version": EXPORT_VERSION,
        "model": config["model"]["name"],
        "run_dir": str(run_dir.resolve()),
        "inputs": names,
        "modalities": [m for m in MODALITIES if m in names],
        "face_size": face_size,
        "video_input": "float32 RGB face crops in [0, 1] (uint8 / 255)" if face_size else None,
        "frame_period": FRAME_PERIOD,
        "sample_rate": SAMPLE_RATE,
        "frame_samples": FRAME_SAMPLES,
        "audio_norm": options.get("audio_norm", DEFAULT_AUDIO_NORM),
        "label_alignment": options.get("label_alignment", DEFAULT_LABEL_ALIGNMENT),
        "training_window_frames": int(round(config["data"]["window"] / FRAME_PERIOD)),
        "outputs": list(OUTPUT_NAMES),
        "offline": {"saved_model": OFFLINE_DIR, "signature": "serving_default"},
        "keras_model": KERAS_FILE,
        "postprocess": None,
        "streaming": None,
    }
    if options_note:
        info["note"] = options_note

    best = run_dir / BEST_MODEL
    if best.is_file():
        _copy_file(best, out_dir / KERAS_FILE)
    else:
        tmp = out_dir / f".{KERAS_FILE}.tmp.keras"
        keras.saving.save_model(model, str(tmp))
        os.replace(tmp, out_dir / KERAS_FILE)
    params = run_dir / POSTPROCESS_FILE
    if params.is_file():
        _copy_file(params, out_dir / POSTPROCESS_FILE)
        info["postprocess"] = POSTPROCESS_FILE

    _save_dir(*_offline_module(model), out_dir / OFFLINE_DIR)
    if streaming:
        from emorec.streaming import build_streaming, state_shape

        try:
            stream_model = build_streaming(model)
        except ConfigError as exc:
            info["streaming_unavailable"] = str(exc)
        else:
            shape = state_shape(stream_model)
            _save_dir(*_streaming_module(stream_model, shape), out_dir / STREAMING_DIR)
            info["streaming"] = {
                "saved_model": STREAMING_DIR,
                "signature": "step",
                "inputs": [*names, STATES],
                "outputs": [*OUTPUT_NAMES, STATES],
                "state_shape": list(shape),
                "state_dtype": "float32",
                "state_layout": STATE_LAYOUT,
                "initial_state_signature": "initial_state",
            }
    atomic_write_bytes(out_dir / EXPORT_JSON, (json.dumps(info, indent=2) + "\n").encode())
    return info


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m emorec.export", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="training run directory (best.keras, config.yaml)")
    parser.add_argument("out_dir", type=Path, help="export directory to write")
    parser.add_argument("--no-streaming", action="store_true", help="skip the streaming SavedModel")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0 on success, 2 on bad input."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        info = export_run(args.run_dir, args.out_dir, streaming=not args.no_streaming)
    except (EmorecError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stream = info["streaming"]
    print(f"exported {info['model']} ({', '.join(info['inputs'])}) to {args.out_dir}"
          + (f"; streaming state {stream['state_shape']}" if stream else "; no streaming form"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

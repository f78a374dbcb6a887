"""``python -m emorec.evaluate``: score a training run's best model on whole recordings, AVEC 2016 style.

    python -m emorec.evaluate RUN_DIR --data DIR --partition dev --postprocess tune
    python -m emorec.evaluate RUN_DIR --data DIR --partition test --postprocess apply

The model of ``RUN_DIR/best.keras`` runs over every recording of the
partition (:func:`emorec.data.read_recordings`). ``--eval-window train``
(default) cuts each recording into consecutive windows of the run's training
length, each started from a zero state: that is how the original release
evaluated (its evaluation read the same fixed-length sequences as training,
with the LSTM state reset per sequence) and how the training engine chose the
best epoch. ``--eval-window whole`` runs the recurrent model over the whole
recording (in chunks of ``--chunk-frames`` with the state carried over, which
equals one pass over the whole sequence); a number is a window in seconds.

Raw metrics and, separately, metrics after the AVEC post-processing chain:
``--postprocess tune`` (dev only) chooses the chain on this partition and
stores it as ``RUN_DIR/postprocess.json``; ``apply`` re-applies the stored
chain (e.g. on test); ``off`` skips it. Settings (metric convention, grids,
default window) come from ``evaluate/avec2016.yaml`` or ``--protocol FILE``.

Writes to ``--out`` (default ``RUN_DIR/eval/<partition>``): ``metrics.json``,
``predictions/<recording>.csv`` (``time, arousal, valence, gold_arousal,
gold_valence``; gold empty when unlabelled), ``postprocessed/<recording>.csv``
with post-processing, and ``plots/<recording>.png``.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError, EmorecError
from emorec.manifest import atomic_write_bytes
from emorec.schema import DEFAULT_LABEL_ALIGNMENT, FRAME_PERIOD

BEST_MODEL = "best.keras"
CONFIG_FILE = "config.yaml"
POSTPROCESS_FILE = "postprocess.json"
METRICS_FILE = "metrics.json"
POSTPROCESS_MODES = ("off", "tune", "apply")
CSV_COLUMNS = ("time", "arousal", "valence", "gold_arousal", "gold_valence")

# The protocol used when evaluate/avec2016.yaml is not next to the package (a non-editable install).
DEFAULT_PROTOCOL = {
    "name": "avec2016",
    "names": ["arousal", "valence"],
    "metrics": {"convention": "avec", "headline": "concatenated",
                "also": ["ccc_per_recording_mean", "pearson", "rmse"]},
    "inference": {"eval_window": "train", "chunk_frames": 750},
    "partitions": {"tune": "dev", "apply": ["dev", "test"]},
    "postprocess": {
        "steps": ["median_filter", "centring", "scaling", "time_shift"],
        "median_windows_s": [0.4, 0.8, 1.2, 1.6, 2.0, 2.8, 4.0, 5.6, 8.0, 11.2, 16.0, 20.0],
        "shift_range_s": [FRAME_PERIOD, 10.0],
        "scale_about": "zero",
    },
}


# -- protocol and run --------------------------------------------------------------------------


def default_protocol_path() -> Path:
    """``evaluate/avec2016.yaml`` of the checkout emorec is installed from."""
    import emorec

    return Path(emorec.__file__).resolve().parent.parent / "evaluate" / "avec2016.yaml"


def load_protocol(path: str | os.PathLike | None = None) -> dict:
    """The evaluation protocol: ``path``, else ``evaluate/avec2016.yaml``, else the built-in copy of it."""
    from emorec.config import deep_merge, read_yaml

    if path is None:
        path = default_protocol_path()
        if not path.is_file():
            return copy.deepcopy(DEFAULT_PROTOCOL)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: evaluation protocol file not found")
    doc = read_yaml(path)
    unknown = sorted(set(doc) - set(DEFAULT_PROTOCOL))
    if unknown:
        raise ConfigError(f"{path}: unknown protocol key(s) {', '.join(unknown)}")
    return deep_merge(DEFAULT_PROTOCOL, doc)


def load_keras_model(path, model_name: str | None = None):
    """Load a ``.keras`` emorec model; ConfigError naming the file if it cannot be used."""
    import keras

    from emorec.models.registry import available_models

    available_models()  # imports the model modules, registering their layers
    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise ConfigError(f"{path}: cannot load the model: {exc}") from exc


def read_run_config(run_dir) -> dict:
    """The resolved config saved by training (``RUN_DIR/config.yaml``)."""
    from emorec.config import read_yaml

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not found; RUN_DIR must be a directory written by emorec.train")
    return read_yaml(path)


def load_best_model(run_dir):
    """``RUN_DIR/best.keras``, or the run's ``checkpoints/best`` restored into a model built from its config."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    path = run_dir / BEST_MODEL
    if path.is_file():
        return load_keras_model(path, config["model"].get("name"))
    import tensorflow as tf

    from emorec.models.registry import build_model

    prefix = tf.train.latest_checkpoint(str(run_dir / "checkpoints" / "best"))
    if prefix is None:
        raise ConfigError(f"{run_dir}: holds neither {BEST_MODEL} nor checkpoints/best")
    model = build_model(config["model"]["name"], config["model"])
    tf.train.Checkpoint(model_variables=list(model.variables)).restore(prefix).expect_partial()
    return model


def dataset_options(data_dir) -> dict:
    """The dataset manifest's ``options`` (label alignment, audio norm, face size...)."""
    from emorec.manifest import read_manifest

    try:
        return dict(read_manifest(data_dir).options)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None


# -- inference ----------------------------------------------------------------------------------


def model_inputs(arrays: dict, names) -> dict:
    """Per-recording arrays → model inputs with a batch axis of 1; faces uint8 → float32 in [0, 1]."""
    out = {}
    for name in names:
        if name not in arrays:
            raise ConfigError(f"the model needs input {name!r}, which the dataset does not hold")
        value = arrays[name]
        if name == "video" and value.dtype == np.uint8:
            value = value.astype(np.float32) / 255.0
        out[name] = np.asarray(value, np.float32)[None]
    return out


class Predictor:
    """Runs one model over whole recordings, windowed (zero state per window) or whole."""

    def __init__(self, model, window_frames: int | None, chunk_frames: int, batch_size: int = 8):
        import tensorflow as tf

        from emorec.streaming import StreamRunner, build_streaming, input_names

        self.model = model
        self.names = input_names(model)
        self.window_frames = window_frames
        self.chunk_frames = int(chunk_frames)
        self.batch_size = max(1, int(batch_size))

        @tf.function(reduce_retracing=True)
        def forward(inputs):
            return model(inputs, training=False)["emotion"]

        self._forward = forward
        self._runner = None
        if window_frames is None:
            try:
                self._runner = StreamRunner(build_streaming(model))
            except ConfigError:
                self._runner = None  # no streaming form: one call on the whole recording

    def __call__(self, arrays: dict) -> np.ndarray:
        """Predictions ``(N, 2)`` for one recording's arrays (as yielded by ``read_recordings``)."""
        inputs = model_inputs(arrays, self.names)
        total = inputs[self.names[0]].shape[1]
        if self.window_frames is None:
            if self._runner is not None:
                return self._runner.run(inputs, self.chunk_frames)[0][0]
            return self._forward(inputs).numpy()[0]
        w = self.window_frames
        count = -(-total // w)
        windows = {}
        for k, v in inputs.items():
            # Zero padding after the end cannot change earlier outputs: every part is causal per frame.
            padded = np.zeros((1, count * w, *v.shape[2:]), np.float32)
            padded[:, :total] = v
            windows[k] = padded.reshape(count, w, *v.shape[2:])
        out = [
            self._forward({k: v[i:i + self.batch_size] for k, v in windows.items()}).numpy()
            for i in range(0, count, self.batch_size)
        ]
        return np.concatenate(out).reshape(count * w, -1)[:total]


def resolve_eval_window(value, config: dict) -> int | None:
    """``"train"`` → the run's window in frames, ``"whole"`` → None, seconds → frames."""
    from emorec.config import window_frames
    from emorec.windows import seconds_to_frames

    if value in (None, "whole"):
        return None
    if value == "train":
        return window_frames(config)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--eval-window must be train, whole or seconds, got {value!r}") from None
    return seconds_to_frames(seconds, "--eval-window")


# -- outputs ------------------------------------------------------------------------------------


def frame_times(num_frames: int, alignment: str = DEFAULT_LABEL_ALIGNMENT) -> np.ndarray:
    """The time each frame's prediction refers to: its label time (end of the frame for ``end``)."""
    offset = 1 if alignment == "end" else 0
    return (np.arange(num_frames) + offset) * FRAME_PERIOD


def write_predictions_csv(path, times, pred, gold=None, with_gold: bool = True) -> Path:
    """``time, arousal, valence[, gold_arousal, gold_valence]`` (gold cells empty when unknown), atomically."""
    import pandas as pd

    pred = np.asarray(pred)
    columns = {"time": np.round(np.asarray(times, np.float64), 6),
               "arousal": pred[:, 0], "valence": pred[:, 1]}
    if with_gold:
        empty = np.full(len(pred), np.nan)
        columns["gold_arousal"] = empty if gold is None else np.asarray(gold)[:, 0]
        columns["gold_valence"] = empty if gold is None else np.asarray(gold)[:, 1]
    buffer = io.StringIO()
    pd.DataFrame(columns).to_csv(buffer, index=False, float_format="%.8g")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue().encode())
    return path


def _finite(obj):
    # json cannot hold NaN; metrics of constant predictions can be NaN.
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _grids(protocol: dict):
    from emorec.postprocess import PostprocessGrids

    pp = protocol["postprocess"]
    return PostprocessGrids(
        median_windows_s=tuple(float(s) for s in pp["median_windows_s"]),
        shift_range_s=tuple(float(s) for s in pp["shift_range_s"]),
    )


# -- the evaluation -----------------------------------------------------------------------------


def evaluate_run(
    run_dir,
    data_dir,
    partition: str,
    postprocess: str = "off",
    *,
    out_dir=None,
    eval_window=None,
    chunk_frames: int | None = None,
    protocol=None,
    plots: bool = True,
    progress: bool = True,
    model=None,
) -> dict:
    """Evaluate the run's best model on ``partition``; writes the outputs and returns the metrics dict.

    ``eval_window``: ``"train"``, ``"whole"``, seconds or None (the
    protocol's). ``protocol``: a dict, a YAML path or None
    (``evaluate/avec2016.yaml``). ``model`` overrides ``RUN_DIR/best.keras``.
    """
    from tqdm import tqdm

    from emorec.data import read_recordings
    from emorec.metrics import evaluate_recordings
    from emorec.postprocess import PostprocessParams, apply_postprocessing, tune_postprocessing

    if postprocess not in POSTPROCESS_MODES:
        raise ConfigError(f"--postprocess must be one of {', '.join(POSTPROCESS_MODES)}, got {postprocess!r}")
    protocol = protocol if isinstance(protocol, dict) else load_protocol(protocol)
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    config = read_run_config(run_dir)
    options = dataset_options(data_dir)
    names = tuple(protocol["names"])
    convention = protocol["metrics"]["convention"]
    tune_partition = protocol["partitions"]["tune"]
    if postprocess == "tune" and partition != tune_partition:
        raise ConfigError(
            f"--postprocess tune chooses the chain on {tune_partition} (protocol "
            f"{protocol['name']}); evaluate {tune_partition} with tune, then {partition} with apply"
        )
    params_path = run_dir / POSTPROCESS_FILE
    params = None
    if postprocess == "apply":
        if not params_path.is_file():
            raise ConfigError(f"{params_path}: no stored post-processing; run --partition "
                              f"{tune_partition} --postprocess tune first")
        params = PostprocessParams.load(params_path)

    window_value = protocol["inference"]["eval_window"] if eval_window is None else eval_window
    window = resolve_eval_window(window_value, config)
    chunk = int(chunk_frames or protocol["inference"]["chunk_frames"])
    model = model if model is not None else load_best_model(run_dir)
    predictor = Predictor(model, window, chunk, batch_size=config.get("data", {}).get("batch_size", 8))
    modalities = [m for m in ("audio", "video") if m in predictor.names]
    alignment = options.get("label_alignment", DEFAULT_LABEL_ALIGNMENT)

    preds, golds = {}, {}
    recordings = read_recordings(data_dir, partition, modalities=modalities or None)
    for rid, arrays in tqdm(recordings, desc=f"evaluate {partition}", unit="rec", disable=not progress):
        preds[rid] = predictor(arrays).astype(np.float64)
        golds[rid] = arrays.get("labels")
    if not preds:
        raise ConfigError(f"{data_dir}: partition {partition!r} holds no recordings")
    labelled = all(g is not None for g in golds.values())

    result = {
        "run_dir": str(run_dir), "data_dir": str(data_dir), "partition": partition,
        "model": config["model"]["name"], "protocol": protocol["name"],
        "convention": convention,
        "headline": "ccc = one CCC over all frames of the partition concatenated "
                    f"({convention} convention: variances N-1, covariance N); "
                    "ccc_per_recording_mean beside it",
        "eval_window": {"mode": "whole" if window is None else str(window_value),
                        "frames": window, "chunk_frames": chunk if window is None else None},
        "label_alignment": alignment, "labelled": labelled,
        "num_recordings": len(preds), "postprocess": {"mode": postprocess},
        "raw": None, "postprocessed": None,
    }
    if labelled:
        result["raw"] = evaluate_recordings({r: (golds[r], preds[r]) for r in preds}, names, convention)
    else:
        result["note"] = f"partition {partition} has no labels: predictions only, no metrics"

    if postprocess == "tune":
        if not labelled:
            raise ConfigError(f"{data_dir}: partition {partition} has no labels; cannot tune post-processing")
        params = tune_postprocessing(
            {r: (golds[r], preds[r]) for r in preds}, FRAME_PERIOD, _grids(protocol), names,
            scale_about=protocol["postprocess"]["scale_about"], convention=convention,
        )
        params.save(params_path)
    post = None
    if params is not None:
        post = apply_postprocessing(params, preds)
        result["postprocess"].update(params_file=str(params_path), params=params.to_dict())
        if labelled:
            result["postprocessed"] = evaluate_recordings(
                {r: (golds[r], post[r]) for r in preds}, names, convention
            )

    out_dir = Path(out_dir) if out_dir is not None else run_dir / "eval" / partition
    out_dir.mkdir(parents=True, exist_ok=True)
    for rid, pred in preds.items():
        times = frame_times(len(pred), alignment)
        write_predictions_csv(out_dir / "predictions" / f"{rid}.csv", times, pred, golds[rid])
        if post is not None:
            write_predictions_csv(out_dir / "postprocessed" / f"{rid}.csv", times, post[rid], golds[rid])
        if plots:
            from emorec.plots import plot_recording

            plot_recording(out_dir / "plots" / f"{rid}.png", times, pred, golds[rid],
                           None if post is None else post[rid], title=f"{rid} ({result['model']})", names=names)
    result["out_dir"] = str(out_dir)
    result = _finite(result)
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(out_dir / METRICS_FILE, text.encode())
    return result


# -- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m emorec.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="training run directory (holds best.keras, config.yaml)")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (manifest.json)")
    parser.add_argument("--partition", required=True, choices=("train", "dev", "test"))
    parser.add_argument("--postprocess", choices=POSTPROCESS_MODES, default="off",
                        help="tune (dev: choose and store in RUN_DIR/postprocess.json), apply (stored), off")
    parser.add_argument("--eval-window", default=None,
                        help="train (the run's window, zero state each; default), whole, or seconds")
    parser.add_argument("--chunk-frames", type=int, default=None,
                        help="frames per chunk in whole-recording mode (state carried over)")
    parser.add_argument("--protocol", type=Path, default=None, help="protocol YAML (default evaluate/avec2016.yaml)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default RUN_DIR/eval/PARTITION)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _summary(result: dict) -> str:
    lines = [f"{result['model']} on {result['partition']} ({result['num_recordings']} recordings, "
             f"eval window {result['eval_window']['mode']})"]
    for key in ("raw", "postprocessed"):
        metrics = result.get(key)
        if metrics:
            for name in ("arousal", "valence"):
                m = metrics.get(name)
                if m:
                    lines.append(f"  {key:13s} {name:8s} CCC {m['ccc']} (per-recording mean "
                                 f"{m['ccc_per_recording_mean']}), RMSE {m['rmse']}")
    if result.get("note"):
        lines.append(f"  {result['note']}")
    lines.append(f"outputs: {result['out_dir']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0 on success, 2 on bad input."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        result = evaluate_run(
            args.run_dir, args.data, args.partition, args.postprocess, out_dir=args.out,
            eval_window=args.eval_window, chunk_frames=args.chunk_frames, protocol=args.protocol,
            plots=not args.no_plots, progress=not args.no_progress,
        )
    except (EmorecError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

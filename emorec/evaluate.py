"""``emorec evaluate``: score a training run's best model on whole recordings, AVEC 2016 style.

    emorec evaluate RUN_DIR --data DIR --partition dev --postprocess tune
    emorec evaluate RUN_DIR --data DIR --partition test --postprocess apply

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
stores it as ``RUN_DIR/postprocess.json`` together with the evaluation window
it was tuned on; ``apply`` re-applies the stored chain (e.g. on test) and
refuses another evaluation window; ``off`` skips it. Settings (metric
convention, extra metrics, chain, grids, default window, partitions) come from
``evaluate/avec2016.yaml`` or ``--protocol FILE`` (:mod:`emorec.protocol`).

Writes to ``--out`` (default ``RUN_DIR/eval/<partition>``): ``metrics.json``,
``predictions/<recording>.csv`` (``time, arousal, valence, gold_arousal,
gold_valence``; gold empty when unlabelled), ``postprocessed/<recording>.csv``
with post-processing, and ``plots/<recording>.png``.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError
from emorec.manifest import atomic_write_bytes
from emorec.rundir import EvalDir, RunDir
from emorec.schema import DEFAULT_LABEL_ALIGNMENT, FRAME_PERIOD, feature_set_of

POSTPROCESS_MODES = ("off", "tune", "apply")
CSV_COLUMNS = ("time", "arousal", "valence", "gold_arousal", "gold_valence")


# -- the run ----------------------------------------------------------------------------------


def load_keras_model(path):
    """Load a ``.keras`` emorec model.

    Args:
        path: the ``.keras`` file.

    Returns:
        The Keras model, not compiled.

    Raises:
        ConfigError: the file cannot be loaded (naming it and why).
    """
    import keras

    import emorec.models  # noqa: F401  (registers the custom layers a .keras file names)

    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        raise ConfigError(f"{path}: cannot load the model: {exc}") from exc


def load_best_model(run_dir):
    """``RUN_DIR/best.keras``.

    Args:
        run_dir: the training run directory.

    Returns:
        The Keras model of the run's best epoch, not compiled.

    Raises:
        ConfigError: the run has no best model yet, or it cannot be loaded.
    """
    path = RunDir(run_dir).best_model
    if not path.is_file():
        raise ConfigError(f"{path}: not found; the run has no best model yet (did training finish an epoch?)")
    return load_keras_model(path)


# -- inference ----------------------------------------------------------------------------------


def inference_mode(value, config) -> tuple[str, int | None]:
    """How ``--eval-window`` runs the model: ``(mode, frames)`` for :class:`~emorec.inference.RecordingPredictor`.

    ``train`` evaluates as the run was trained: its windows, consecutive
    (``data.target: all``) or sliding and scored on their last frame (``last``).

    Args:
        value: ``train``, ``whole`` (or None), or seconds.
        config: the run config (``data.target`` and the window are read for ``train``).

    Returns:
        ``("whole", None)``, ``("sliding", frames)`` (``train`` of a ``last``-target run) or
        ``("window", frames)``.

    Raises:
        ConfigError: a value that is none of these, or seconds that are not a positive whole
            number of frames.
    """
    frames = resolve_eval_window(value, config)
    if frames is None:
        return "whole", None
    if value == "train" and config.data.target == "last":
        return "sliding", frames
    return "window", frames


def resolve_eval_window(value, config) -> int | None:
    """``"train"`` → the run's window in frames, ``"whole"`` → None, seconds → frames.

    Args:
        value: ``train``, ``whole`` (or None), or seconds (a number or its text).
        config: the run config (only read for ``train``).

    Returns:
        The window in frames, or None for the whole recording.

    Raises:
        ConfigError: a value that is none of these, or seconds that are not a positive whole
            number of frames.

    >>> resolve_eval_window("whole", None) is None
    True
    >>> resolve_eval_window(0.2, None)
    5
    """
    from emorec.windows import seconds_to_frames

    if value in (None, "whole"):
        return None
    if value == "train":
        return config.window_frames
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--eval-window must be train, whole or seconds, got {value!r}") from None
    return seconds_to_frames(seconds, "--eval-window")


# -- outputs ------------------------------------------------------------------------------------


def frame_times(num_frames: int, alignment: str = DEFAULT_LABEL_ALIGNMENT) -> np.ndarray:
    """The time each frame's prediction refers to: its label time (end of the frame for ``end``).

    Args:
        num_frames: frames in the recording.
        alignment: the label alignment (``end``: a frame's label is at its end; otherwise at
            its start).

    Returns:
        float64 ``(num_frames,)`` times in seconds.

    >>> frame_times(3, "end").round(2).tolist(), frame_times(2, "start").round(2).tolist()
    ([0.04, 0.08, 0.12], [0.0, 0.04])
    """
    offset = 1 if alignment == "end" else 0
    return (np.arange(num_frames) + offset) * FRAME_PERIOD


def write_predictions_csv(path, times, pred, gold=None, with_gold: bool = True) -> Path:
    """``time, arousal, valence[, gold_arousal, gold_valence]`` (gold cells empty when unknown), atomically.

    Args:
        path: the CSV to write (its folder is created).
        times: ``(N,)`` times in seconds (rounded to 1 µs).
        pred: ``(N, 2)`` predicted ``[arousal, valence]``.
        gold: ``(N, 2)`` gold values, or None.
        with_gold: write the two gold columns.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: the file cannot be written.
    """
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue().encode())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the predictions ({exc.strerror or exc})") from None
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


# -- the evaluation -----------------------------------------------------------------------------


def evaluate_run(
    run_dir,
    data,
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

    Args:
        run_dir: the training run directory.
        data: the dataset (handle or directory).
        partition: ``train``, ``dev`` or ``test``.
        postprocess: ``off``, ``tune`` (on the protocol's tuning partition) or ``apply``.
        out_dir: where to write (default ``RUN_DIR/eval/<partition>``).
        eval_window: ``train``, ``whole``, seconds, or None for the protocol's.
        chunk_frames: whole-recording mode's chunk (None: the protocol's).
        protocol: a :class:`~emorec.protocol.Protocol`, a mapping, a YAML path or None (the model's
            task's protocol: ``evaluate/avec2015.yaml`` for feature_lstm, else AVEC 2016).
        plots: draw one PNG per recording.
        progress: show a progress bar.
        model: evaluate this model instead of ``RUN_DIR/best.keras``.

    Returns:
        The dict written to ``metrics.json``.

    Raises:
        ConfigError: unusable settings (a tuning or apply partition the protocol does not allow, a
            stored chain tuned with another evaluation window, no stored chain to apply).
    """
    from tqdm import tqdm

    from emorec.config import load_run_config
    from emorec.data import read_recordings
    from emorec.dataset import open_dataset
    from emorec.inference import RecordingPredictor
    from emorec.metrics import evaluate_recordings
    from emorec.outputs import check_output_dir
    from emorec.postprocess import PostprocessParams, apply_postprocessing, tune_postprocessing
    from emorec.protocol import load_protocol

    if postprocess not in POSTPROCESS_MODES:
        raise ConfigError(f"--postprocess must be one of {', '.join(POSTPROCESS_MODES)}, got {postprocess!r}")
    run = RunDir(run_dir)
    data = open_dataset(data)
    config = load_run_config(run.path)
    protocol = load_protocol(protocol if protocol is not None else task_protocol(config))
    # Before any work: an unwritable --out must not cost an evaluation, nor leave a tuned chain behind.
    check_output_dir(out_dir if out_dir is not None else run.eval_dir(partition), "the evaluation")
    names = tuple(protocol.names)
    convention = protocol.metrics.convention
    tune_partition = protocol.partitions.tune
    if postprocess == "tune" and partition != tune_partition:
        raise ConfigError(
            f"--postprocess tune chooses the chain on {tune_partition} (protocol "
            f"{protocol.name}); evaluate {tune_partition} with tune, then {partition} with apply"
        )
    if postprocess == "apply" and partition not in protocol.partitions.apply:
        raise ConfigError(
            f"--postprocess apply: protocol {protocol.name} applies the stored chain only on "
            f"{', '.join(protocol.partitions.apply)} (partitions.apply), not on {partition}"
        )
    window_value = protocol.inference.eval_window if eval_window is None else eval_window
    mode, window = inference_mode(window_value, config)
    inference = {"eval_window": "whole" if window is None else str(window_value), "mode": mode, "frames": window}
    params = None
    if postprocess == "apply":
        if not run.postprocess.is_file():
            raise ConfigError(f"{run.postprocess}: no stored post-processing; run --partition "
                              f"{tune_partition} --postprocess tune first")
        params = PostprocessParams.load(run.postprocess)
        check_postprocess_inference(params, inference, run.postprocess)

    chunk = int(chunk_frames or protocol.inference.chunk_frames)
    model = model if model is not None else load_best_model(run.path)
    predictor = RecordingPredictor(model, mode, window, chunk, batch_size=config.data.batch_size)
    modalities = [m for m in ("audio", "video") if m in predictor.names]
    # Feature-set inputs (features_<name>) are read with the run's normalisation; then no modality is.
    features = [name for name in map(feature_set_of, predictor.names) if name is not None]
    alignment = data.label_alignment

    data.check_labels(partition)
    preds, golds = {}, {}
    recordings = read_recordings(data, partition, modalities=modalities or (() if features else None),
                                 audio_norm=config.data.audio_norm, features=features,
                                 feature_norm=config.data.feature_norm)
    for rid, arrays in tqdm(recordings, desc=f"evaluate {partition}", unit="rec", disable=not progress):
        preds[rid] = predictor(arrays).astype(np.float64)
        golds[rid] = arrays.get("labels")
    if not preds:
        raise ConfigError(f"{data.path}: partition {partition!r} holds no recordings")
    labelled = all(g is not None for g in golds.values())
    also = tuple(protocol.metrics.also)

    result = {
        "run_dir": str(run.path), "data_dir": str(data.path), "partition": partition,
        "model": config.model_name, "protocol": protocol.name,
        "convention": convention,
        "headline": "ccc = one CCC over all frames of the partition concatenated "
                    f"({convention} convention); {', '.join(also) or 'nothing'} beside it",
        "eval_window": {"mode": inference["eval_window"], "inference": mode, "frames": window,
                        "chunk_frames": chunk if window is None else None},
        "label_alignment": alignment, "labelled": labelled,
        "num_recordings": len(preds), "postprocess": {"mode": postprocess},
        "raw": None, "postprocessed": None,
    }
    if labelled:
        result["raw"] = evaluate_recordings({r: (golds[r], preds[r]) for r in preds}, names, convention, also)
    else:
        result["note"] = f"partition {partition} has no labels: predictions only, no metrics"

    if postprocess == "tune":
        if not labelled:
            raise ConfigError(f"{data.path}: partition {partition} has no labels; cannot tune post-processing")
        params = tune_postprocessing(
            {r: (golds[r], preds[r]) for r in preds}, FRAME_PERIOD, protocol.postprocess.grids, names,
            scale_about=protocol.postprocess.scale_about, convention=convention,
            steps=protocol.postprocess.steps, inference=inference,
        )
        params.save(run.postprocess)
    post = None
    if params is not None:
        post = apply_postprocessing(params, preds)
        result["postprocess"].update(params_file=str(run.postprocess), params=params.to_dict())
        if labelled:
            result["postprocessed"] = evaluate_recordings(
                {r: (golds[r], post[r]) for r in preds}, names, convention, also
            )

    out = EvalDir(out_dir if out_dir is not None else run.eval_dir(partition))
    try:
        out.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out.path}: cannot create the output directory ({exc.strerror or exc})") from None
    for rid, pred in preds.items():
        times = frame_times(len(pred), alignment)
        write_predictions_csv(out.prediction_csv(rid), times, pred, golds[rid])
        if post is not None:
            write_predictions_csv(out.prediction_csv(rid, postprocessed=True), times, post[rid], golds[rid])
        if plots:
            from emorec.plots import plot_recording

            plot_recording(out.plot(rid), times, pred, golds[rid],
                           None if post is None else post[rid], title=f"{rid} ({result['model']})", names=names)
    result["out_dir"] = str(out.path)
    result = _finite(result)
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(out.metrics, text.encode())
    return result


def task_protocol(config):
    """The evaluation protocol file the run's task names, or None (AVEC 2016, the default).

    Args:
        config: the run config (its model's task is looked up).

    Returns:
        The path of ``evaluate/<name>.yaml`` of the task's protocol, or None.
    """
    from emorec.models import get_model_spec
    from emorec.protocol import protocol_path
    from emorec.tasks import get_task

    name = get_task(get_model_spec(config.model_name).task).protocol
    return None if name is None else protocol_path(name)


def check_postprocess_inference(params, inference: dict, path) -> None:
    """Refuse to apply a chain tuned on predictions made another way (another evaluation window).

    Args:
        params: the stored post-processing parameters (``inference``: how the tuning predictions
            were made, or None for chains tuned before that was recorded: always accepted).
        inference: how these predictions are made (``mode``, ``frames``, ``eval_window``).
        path: the post-processing file, named in the message.

    Raises:
        ConfigError: naming the file, both modes, and how to re-tune.
    """
    tuned = params.inference
    if tuned is None or (tuned.get("frames"), tuned.get("mode", "window" if tuned.get("frames") else "whole")) == (
            inference.get("frames"), inference.get("mode")):
        return
    raise ConfigError(
        f"{path}: the post-processing was tuned on predictions made with eval window "
        f"{tuned.get('eval_window')!r}, these are made with {inference.get('eval_window')!r}; "
        f"evaluate with --eval-window {tuned.get('eval_window')}, or re-tune with "
        f"--partition dev --postprocess tune --eval-window {inference.get('eval_window')}"
    )


if __name__ == "__main__":
    from emorec.cli import module_main

    module_main("evaluate", "python -m emorec.evaluate")

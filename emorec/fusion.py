"""Late fusion of several runs (Chen & Jin §5.7): linear regression of their dev predictions, per dimension.

``emorec fuse RUN... --data D --out FUSED``:

1. Every run's best model predicts the dev (and test) recordings the way its
   protocol evaluates (``feature_lstm``: each recording whole).
2. Smoothing first (§5.7 "We apply smoothing before fusion"): per run and
   dimension, the exponential smoothing of eq. 7 with α chosen on the fitting
   recordings from the protocol's grid and direction (``evaluate/avec2015.yaml``:
   backward in time); ``smoothing=False`` skips it.
3. Per dimension, a least-squares linear regression (weights and an
   intercept) of the gold standard on the smoothed predictions of the runs
   that predict that dimension (a single-target run counts for its own only),
   fitted on the fitting recordings' frames:

   - ``split="paper"`` (default): the dev recordings in id order, all but the
     last fit the weights ("dev-dev", the paper's first 8 of 9) and the last
     evaluates them ("dev-test"); ``fit_recordings`` sets how many fit;
   - ``split="whole"``: every dev recording fits and evaluates (optimistic).

4. The weights are applied unchanged to the test partition (predictions
   written; metrics when it is labelled). ``fusion.json`` records the runs,
   the smoothing, the weights and Table 10's rows (best single run, fusion on
   dev-dev, on dev-test and, refitted, on the entire dev: RMSE, CC and CCC per
   dimension); ``fused.keras`` and ``export/`` hold the fused predictor (the
   runs' models, their smoothing and the weights as one Keras model), for runs
   evaluated on whole recordings.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError
from emorec.manifest import atomic_write_bytes
from emorec.rundir import FusionDir, RunDir
from emorec.schema import FRAME_PERIOD, feature_set_of

logger = logging.getLogger(__name__)

SPLITS = ("paper", "whole")
DIMENSIONS = ("arousal", "valence")
FUSION_VERSION = 1


@dataclasses.dataclass
class RunPredictions:
    """One run's predictions: ``{partition: {recording: (N, 2)}}``, the gold and what the run is about."""

    run_dir: Path
    model: str
    columns: tuple[int, ...]  # the dimensions the run predicts (0 arousal, 1 valence)
    feature_norm: str
    inputs: tuple[str, ...]
    whole: bool  # evaluated on whole recordings (so it can join the exported predictor)
    preds: dict
    gold: dict


def _run_columns(config) -> tuple[int, ...]:
    targets = getattr(config.model, "targets", DIMENSIONS)
    return tuple(DIMENSIONS.index(t) for t in targets)


def predict_run(run_dir, data, partitions, protocol=None, model=None) -> RunPredictions:
    """A run's best model over the recordings of ``partitions``, as its protocol evaluates.

    Args:
        run_dir: the training run directory.
        data: the dataset directory or an open dataset.
        partitions: the partitions to predict.
        protocol: the evaluation protocol (path, mapping or object; None: the run's task's).
        model: the run's model already loaded (None: its ``best.keras``).

    Returns:
        The run's float64 ``(N, 2)`` predictions and gold labels (None when unlabelled) per
        partition and recording, with what the fusion needs to know about the run.

    Raises:
        ConfigError: the run has no best model, or its protocol is unusable.
    """
    from emorec.config import load_run_config
    from emorec.data import read_recordings
    from emorec.evaluate import inference_mode, load_best_model, task_protocol
    from emorec.inference import RecordingPredictor
    from emorec.protocol import load_protocol

    run = RunDir(run_dir)
    config = load_run_config(run.path)
    protocol = load_protocol(protocol if protocol is not None else task_protocol(config))
    mode, window = inference_mode(protocol.inference.eval_window, config)
    model = model if model is not None else load_best_model(run.path)
    predictor = RecordingPredictor(model, mode, window, protocol.inference.chunk_frames,
                                   batch_size=config.data.batch_size)
    modalities = [m for m in ("audio", "video") if m in predictor.names]
    features = [f for f in map(feature_set_of, predictor.names) if f is not None]
    preds, gold = {}, {}
    for partition in partitions:
        preds[partition], gold[partition] = {}, {}
        recordings = read_recordings(data, partition, modalities or (() if features else None),
                                     audio_norm=config.data.audio_norm, features=features,
                                     feature_norm=config.data.feature_norm)
        for rid, arrays in recordings:
            preds[partition][rid] = predictor(arrays).astype(np.float64)
            gold[partition][rid] = arrays.get("labels")
    return RunPredictions(run.path, config.model_name, _run_columns(config), config.data.feature_norm,
                          tuple(predictor.names), mode == "whole", preds, gold)


def _lstsq(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights and intercept of ``y ≈ x @ w + b`` by least squares.

    >>> w, b = _lstsq(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 3.0, 5.0]))
    >>> np.round(w, 6).tolist(), round(b, 6)
    ([2.0], 1.0)
    """
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    return solution[:-1], float(solution[-1])


def _table_metrics(per_recording: dict, convention: str, columns) -> dict:
    """RMSE, CC and CCC per dimension of the concatenated recordings (the paper's table columns)."""
    from emorec.metrics import evaluate_recordings

    result = evaluate_recordings(per_recording, DIMENSIONS, convention, ("pearson", "rmse"))
    return {DIMENSIONS[c]: {"rmse": result[DIMENSIONS[c]]["rmse"], "cc": result[DIMENSIONS[c]]["pearson"],
                            "ccc": result[DIMENSIONS[c]]["ccc"]} for c in columns}


def split_recordings(recordings, split: str, fit_recordings: int | None = None) -> tuple[list, list]:
    """``(fitting, evaluated)`` dev recordings: see the module docstring.

    Args:
        recordings: the dev recording ids (any order).
        split: ``paper`` (fit on the first, evaluate on the rest) or ``whole``.
        fit_recordings: with ``paper``, how many recordings (in id order) fit; None: all but the
            last.

    Returns:
        ``(fitting ids, evaluated ids)``, each sorted.

    Raises:
        ConfigError: an unknown split, or a ``paper`` split that leaves either side empty.

    >>> split_recordings(["dev_1", "dev_2", "dev_3"], "paper")
    (['dev_1', 'dev_2'], ['dev_3'])
    >>> split_recordings(["dev_1", "dev_2"], "whole")
    (['dev_1', 'dev_2'], ['dev_1', 'dev_2'])
    """
    ids = sorted(recordings)
    if split not in SPLITS:
        raise ConfigError(f"fusion split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "whole":
        return ids, ids
    count = len(ids) - 1 if fit_recordings is None else int(fit_recordings)
    if len(ids) < 2 or not 1 <= count < len(ids):
        raise ConfigError(
            f"the paper's split fits on some dev recordings and evaluates on the others: {len(ids)} dev "
            f"recording(s), {count} to fit; use --split whole or another --fit-recordings")
    return ids[:count], ids[count:]


def _smoothing(runs, fit_ids, protocol, enabled: bool) -> list[list[float]]:
    """α per run and dimension, tuned on the fitting recordings (1 = no smoothing)."""
    from emorec.postprocess import tune_postprocessing

    alphas = []
    for run in runs:
        if not enabled:
            alphas.append([1.0, 1.0])
            continue
        dev = {rid: (run.gold["dev"][rid], run.preds["dev"][rid]) for rid in fit_ids}
        params = tune_postprocessing(dev, FRAME_PERIOD, protocol.postprocess.grids, DIMENSIONS, convention=protocol.metrics.convention,
                                     steps=("exponential_smoothing",))
        alphas.append([d.smoothing if c in run.columns else 1.0 for c, d in enumerate(params.dimensions)])
    return alphas


def _smoothed(run, alphas, direction: str, partition: str) -> dict:
    from emorec.postprocess import exponential_smoothing

    return {rid: np.stack([exponential_smoothing(pred[:, c], alphas[c], direction) for c in range(2)], axis=1)
            for rid, pred in run.preds[partition].items()}


def _fit_weights(smoothed, runs, gold, ids) -> tuple[np.ndarray, np.ndarray]:
    """``(weights (K, 2), bias (2,))`` per dimension by least squares over the frames of ``ids``."""
    weights = np.zeros((len(runs), 2))
    bias = np.zeros(2)
    for c in range(2):
        members = [k for k, run in enumerate(runs) if c in run.columns]
        if not members:
            continue
        x = np.stack([np.concatenate([smoothed[k][rid][:, c] for rid in ids]) for k in members], axis=1)
        y = np.concatenate([gold[rid][:, c] for rid in ids])
        w, b = _lstsq(x, y)
        weights[members, c] = w
        bias[c] = b
    return weights, bias


def _apply(smoothed, weights, bias, partition: str) -> dict:
    rids = smoothed[0][partition].keys()
    return {rid: bias + sum(weights[k] * smoothed[k][partition][rid] for k in range(len(smoothed)))
            for rid in rids}


def fuse_runs(run_dirs, data, out, *, split: str = "paper", fit_recordings: int | None = None,
              smoothing: bool = True, protocol=None, export: bool = True, progress: bool = True) -> dict:
    """Late-fuse ``run_dirs`` on ``data``'s dev partition into ``out`` (see the module docstring).

    Args:
        run_dirs: two or more training run directories.
        data: the dataset (handle or directory) the runs were trained on.
        out: the fusion directory (created).
        split: ``paper`` or ``whole``.
        fit_recordings: with ``paper``, how many dev recordings (in id order) fit the weights.
        smoothing: smooth each run's predictions first.
        protocol: the evaluation protocol (default: the first run's task's).
        export: write the fused predictor (``fused.keras``, ``export/``).
        progress: progress bars.

    Returns:
        The dict written to ``fusion.json``.

    Raises:
        ConfigError: fewer than two runs, an unlabelled dev partition, a split that leaves nothing to fit
            or evaluate, or runs that read the same feature set normalised differently.
    """
    from tqdm import tqdm

    from emorec.config import load_run_config
    from emorec.dataset import open_dataset
    from emorec.evaluate import task_protocol, write_predictions_csv
    from emorec.protocol import load_protocol

    run_dirs = [Path(r) for r in run_dirs]
    if len(run_dirs) < 2:
        raise ConfigError("emorec fuse needs at least two runs to fuse")
    data = open_dataset(data)
    data.check_labels("dev", required=True)
    protocol = load_protocol(protocol if protocol is not None else task_protocol(load_run_config(run_dirs[0])))
    partitions = [p for p in ("dev", "test") if data.has_partition(p)]
    runs = [predict_run(r, data, partitions, protocol)
            for r in tqdm(run_dirs, desc="predict runs", unit="run", disable=not progress)]
    norms = {run.feature_norm for run in runs if any(feature_set_of(n) for n in run.inputs)}
    if len(norms) > 1:
        raise ConfigError(f"{run_dirs[0]}: the runs normalise their feature sets differently ({sorted(norms)}); "
                          "late fusion of one predictor needs one data.feature_norm")
    gold = runs[0].gold["dev"]
    fit_ids, eval_ids = split_recordings(gold, split, fit_recordings)
    direction = protocol.postprocess.smoothing_direction
    alphas = _smoothing(runs, fit_ids, protocol, smoothing)
    smoothed = [{p: _smoothed(run, alphas[k], direction, p) for p in partitions} for k, run in enumerate(runs)]
    weights, bias = _fit_weights([s["dev"] for s in smoothed], runs, gold, fit_ids)
    fused = {p: _apply(smoothed, weights, bias, p) for p in partitions}
    columns = sorted({c for run in runs for c in run.columns})
    convention = protocol.metrics.convention

    def metrics_of(preds, ids):
        return _table_metrics({rid: (gold[rid], preds[rid]) for rid in ids}, convention, columns)

    whole_w, whole_b = _fit_weights([s["dev"] for s in smoothed], runs, gold, sorted(gold))
    rows = {
        "best_single_run": _best_single(runs, smoothed, gold, eval_ids, convention, columns),
        "fusion_fit": metrics_of(fused["dev"], fit_ids),
        "fusion_evaluated": metrics_of(fused["dev"], eval_ids),
        "fusion_entire_dev_refit": metrics_of(_apply(smoothed, whole_w, whole_b, "dev"), sorted(gold)),
    }
    target = FusionDir(out)
    try:
        target.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{target.path}: cannot create the fusion directory ({exc.strerror or exc})") from None
    for partition in partitions:
        for rid, pred in fused[partition].items():
            times = (np.arange(len(pred)) + (1 if data.label_alignment == "end" else 0)) * FRAME_PERIOD
            write_predictions_csv(target.prediction_csv(partition, rid), times, pred, runs[0].gold[partition][rid])
    if "test" in partitions and data.has_labels("test"):
        test_gold = runs[0].gold["test"]
        rows["fusion_test"] = _table_metrics({r: (test_gold[r], fused["test"][r]) for r in test_gold},
                                             convention, columns)
    info = {
        "version": FUSION_VERSION, "data_dir": str(data.path), "protocol": protocol.name, "split": split,
        "fit_recordings": fit_ids, "evaluated_recordings": eval_ids, "convention": convention,
        "smoothing": {"enabled": smoothing, "direction": direction},
        "runs": [{"run_dir": str(run.run_dir), "model": run.model,
                  "dimensions": [DIMENSIONS[c] for c in run.columns], "smoothing_alpha": alphas[k],
                  "weights": weights[k].tolist()} for k, run in enumerate(runs)],
        "bias": bias.tolist(),
        "metrics": rows,
        "exported": None,
    }
    if export:
        info["exported"] = _export(runs, alphas, direction, weights, bias, target, data)
    text = json.dumps(_finite(info), indent=2) + "\n"
    atomic_write_bytes(target.info, text.encode())
    atomic_write_bytes(target.table, (format_table(info) + "\n").encode())
    return info


def _best_single(runs, smoothed, gold, ids, convention, columns) -> dict:
    """Per dimension the run (smoothed) with the best CCC on the evaluated recordings."""
    best = {}
    for c in columns:
        name = DIMENSIONS[c]
        scored = [(_table_metrics({r: (gold[r], s["dev"][r]) for r in ids}, convention, [c])[name], k)
                  for k, (run, s) in enumerate(zip(runs, smoothed)) if c in run.columns]
        value, k = max(scored, key=lambda item: -np.inf if not np.isfinite(item[0]["ccc"]) else item[0]["ccc"])
        best[name] = {**value, "run": str(runs[k].run_dir)}
    return best


def _finite(obj):
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def format_table(info: dict) -> str:
    """Table 10 of the paper for these runs: CCC (and RMSE, CC) per dimension and row, as Markdown.

    Args:
        info: what :func:`fuse_runs` returns (``metrics``: ``{row key: {dimension: {rmse, cc,
            ccc}}}``).

    Returns:
        The Markdown table, rows absent from ``info`` left out, missing values ``n/a``.
    """
    labels = {
        "best_single_run": "best single run on the evaluated dev recordings (no fusion)",
        "fusion_fit": "late fusion on the fitting dev recordings (dev-dev)",
        "fusion_evaluated": "late fusion on the evaluated dev recordings (dev-test)",
        "fusion_entire_dev_refit": "late fusion fitted and scored on the entire dev",
        "fusion_test": "late fusion on test",
    }
    dims = [d for d in DIMENSIONS if any(d in row for row in info["metrics"].values())]
    head = "| | " + " | ".join(f"{d} RMSE | {d} CC | {d} CCC" for d in dims) + " |"
    lines = [head, "|---" * (1 + 3 * len(dims)) + "|"]

    def cell(value):
        return "n/a" if value is None else f"{value:.3f}"

    for key, label in labels.items():
        row = info["metrics"].get(key)
        if row is None:
            continue
        cells = []
        for d in dims:
            m = row.get(d) or {}
            cells += [cell(m.get("rmse")), cell(m.get("cc")), cell(m.get("ccc"))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fused_predictor(runs_models, alphas, direction: str, weights, bias):
    """One Keras model: every run's model on shared inputs, smoothed, linearly fused into ``emotion``.

    Args:
        runs_models: the runs' Keras models (their ``emotion`` output is used).
        alphas: per run the smoothing α of each dimension.
        direction: the smoothing direction.
        weights: ``(K, 2)`` fusion weights.
        bias: ``(2,)`` intercepts.

    Returns:
        The uncompiled Keras model ``late_fusion``: inputs the union of the runs' inputs (by
        name), output ``{"emotion": (B, T, 2)}``.
    """
    import keras

    from emorec.models.fusion_layers import ExponentialSmoothing, LinearFusion

    shapes = {}
    for model in runs_models:
        for tensor in model.inputs:
            shapes.setdefault(tensor.name, tensor.shape[1:])
    inputs = {name: keras.Input(shape, name=name) for name, shape in shapes.items()}
    outs = []
    for k, model in enumerate(runs_models):
        # Runs of one family share layer names; each joins the fused model under its own name.
        wrapped = keras.Model(model.input, model.output, name=f"run_{k}")
        emotion = wrapped({t.name: inputs[t.name] for t in model.inputs})["emotion"]
        outs.append(ExponentialSmoothing(alphas[k], direction, name=f"smoothing_{k}")(emotion))
    fused = LinearFusion(np.asarray(weights).tolist(), np.asarray(bias).tolist(), name="fusion")(outs)
    return keras.Model(inputs, {"emotion": fused}, name="late_fusion")


def _export(runs, alphas, direction, weights, bias, target: FusionDir, data) -> dict | None:
    """``fused.keras`` and ``export/`` (SavedModel, export.json) of the fused predictor, when every run is whole."""
    from emorec.evaluate import load_best_model
    from emorec.export import serving_module, write_staged
    from emorec.rundir import ExportDir
    from emorec.schema import feature_set_of
    from emorec.training.checkpoint import save_keras_atomic

    if not all(run.whole for run in runs):
        logger.warning("fused predictor not exported: a run is evaluated in windows, not on whole recordings")
        return None
    model = fused_predictor([load_best_model(run.run_dir) for run in runs], alphas, direction, weights, bias)
    save_keras_atomic(model, target.fused_model)
    module, signatures, _, _ = serving_module(model, streaming=False)
    export_dir = ExportDir(target.export)
    names = [t.name for t in model.inputs]
    info = {"model": "late_fusion", "inputs": names, "outputs": list(DIMENSIONS),
            "modalities": [m for m in ("audio", "video") if m in names],
            # emorec predict reads this to say that feature sets come from a dataset build, not from media.
            "feature_sets": {feature_set_of(t.name): int(t.shape[-1]) for t in model.inputs
                             if feature_set_of(t.name) is not None},
            "feature_norm": runs[0].feature_norm, "audio_norm": "none", "frame_period": FRAME_PERIOD,
            "label_alignment": data.label_alignment, "saved_model": ExportDir.SAVED_MODEL,
            "offline": {"signature": "serving_default"}, "keras_model": str(target.fused_model),
            "streaming": None, "streaming_unavailable": "late fusion smooths whole recordings (backward in time)",
            "runs": [str(run.run_dir) for run in runs]}

    def fill(stage: Path) -> dict:
        import tensorflow as tf

        tf.saved_model.save(module, str(stage / ExportDir.SAVED_MODEL), signatures=signatures)
        return info

    write_staged(export_dir.path, fill)
    return {"keras_model": str(target.fused_model), "saved_model": str(export_dir.saved_model)}


__all__ = ["SPLITS", "format_table", "fuse_runs", "fused_predictor", "predict_run",
           "split_recordings"]

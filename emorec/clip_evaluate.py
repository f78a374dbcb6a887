"""``emorec evaluate RUN --data D --partition P`` for clip classification runs (Pini et al., EmotiW 2017).

The run's best model predicts every clip of the partition the way it was
validated (:class:`emorec.tasks.clip_classification.ClipUnits`): the frame
branch every frame (scored on the frames where a face was found), the C3D
branch consecutive 16-frame slices, the audio branch the middle second, the
fusion each clip's cached branch features. Clip predictions of the visual
branches combine their frames' or slices' probabilities as the protocol says
(``aggregation: mean``, the paper's "averaging the predictions of its
frames", or ``vote``). Evaluating a fusion run also evaluates its three
branches, so the result holds every row of the paper's Table 2.

Settings: ``evaluate/emotiw2017.yaml`` (or ``--protocol FILE``):
``aggregation`` (mean | vote) and ``confusion_png`` (row: each true class's
row in percent, as Fig. 3; count: raw counts).

Writes to ``--out`` (default ``RUN/eval/<partition>``):

- ``metrics.json``: per-unit and per-clip accuracy, per-class recall, UAR
  and confusion matrices (``null`` metrics on an unlabelled partition), the
  Table 2 rows, clips without a face or without sound, and the branches'
  results (fusion);
- ``clip_predictions.csv``: ``clip_id, video, label, predicted`` and one
  probability column per class;
- ``predicted_labels.txt``: one ``<video name> <class>`` line per clip, sorted
  (the test-partition file);
- ``confusion_matrix.csv`` (rows true, columns predicted, counts) and
  ``confusion_matrix.png``, per clip; for the visual branches also
  ``unit_confusion_matrix.csv`` / ``.png`` per frame or slice;
- ``<branch>/`` (fusion runs): the same for each branch.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np

from emorec.config.base import Section, choice, read_yaml, setting, text
from emorec.errors import ConfigError, DatasetError
from emorec.manifest import atomic_write_bytes
from emorec.rundir import EvalDir, RunDir

UNIT_NAMES = {"frame": "single frame", "c3d": "single slice", "audio": "1 second", "fusion": "whole video"}
ROW_NAMES = {"frame": "CNN branch", "c3d": "C3D branch", "audio": "Audio branch", "fusion": "Multimodal fusion"}


@dataclasses.dataclass(frozen=True)
class ClipProtocol(Section):
    """The clip evaluation protocol (``evaluate/emotiw2017.yaml``); see the module docstring."""

    SECTION = "protocol"

    name: str = setting("emotiw2017", text)
    aggregation: str = setting("mean", choice("mean", "vote"),
                               doc="clip prediction of the visual branches from their frames or slices")
    confusion_png: str = setting("row", choice("row", "count"), doc="row = percent of each true class (Fig. 3)")


def default_clip_protocol_path() -> Path:
    """``evaluate/emotiw2017.yaml`` of the checkout emorec is installed from.

    Returns:
        The path, next to the ``emorec`` package directory (it may not exist, e.g. in a wheel).
    """
    import emorec

    return Path(emorec.__file__).resolve().parent.parent / "evaluate" / "emotiw2017.yaml"


def load_clip_protocol(source=None) -> ClipProtocol:
    """A clip protocol from a YAML path, a mapping, a ClipProtocol, or None (``evaluate/emotiw2017.yaml``).

    Args:
        source: a path to a YAML file, a dict of settings, a :class:`ClipProtocol` (returned as
            is), or None for the default file (the defaults when that file is absent).

    Returns:
        The protocol.

    Raises:
        ConfigError: a missing or malformed file (naming it).
    """
    if isinstance(source, ClipProtocol):
        return source
    if isinstance(source, dict):
        return ClipProtocol.from_dict(source, "<protocol>")
    path = Path(source) if source is not None else default_clip_protocol_path()
    if source is None and not path.is_file():
        return ClipProtocol()
    if not path.is_file():
        raise ConfigError(f"{path}: evaluation protocol file not found")
    return ClipProtocol.from_dict(read_yaml(path), str(path))


# -- scoring ----------------------------------------------------------------------------------------------


def vote_by_clip(clip_ids, probs, keep=None) -> tuple[list[str], np.ndarray]:
    """Per clip, the share of its (kept) units voting for each class (argmax), like :func:`average_by_clip`.

    Args:
        clip_ids: the clip of each row.
        probs: ``(N, K)`` class probabilities.
        keep: rows that vote (bool ``(N,)``); a clip none of whose rows is kept counts all its rows.

    Returns:
        ``(clip ids in first-seen order, (C, K) vote shares)``.

    >>> ids, v = vote_by_clip(["a", "a", "a"], [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    >>> ids, v.tolist()
    (['a'], [[0.3333333333333333, 0.6666666666666666]])
    """
    from emorec.classification import average_by_clip

    probs = np.asarray(probs, np.float64)
    votes = np.eye(probs.shape[1])[probs.argmax(axis=1)]
    return average_by_clip(clip_ids, votes, keep)


def score_units(predictions: dict, classes, aggregation: str = "mean") -> dict:
    """Unit and clip metrics of :meth:`ClipUnits.predict` output.

    Args:
        predictions: ``{"probs" (N, K), "label" (N,), "clip_id" [N], "keep" (N,)}``.
        classes: the class names.
        aggregation: ``mean`` (:func:`~emorec.classification.average_by_clip`) or ``vote``
            (:func:`vote_by_clip`): how units make a clip prediction.

    Returns:
        ``{"unit": metrics or None, "clip": metrics or None, "clip_ids", "clip_probs", "clip_labels"}``
        (metrics as :func:`emorec.classification.classification_metrics`; None when unlabelled).
    """
    from emorec.classification import average_by_clip, classification_metrics

    probs, labels, keep = predictions["probs"], predictions["label"], predictions["keep"]
    combine = average_by_clip if aggregation == "mean" else vote_by_clip
    ids, clip_probs = combine(predictions["clip_id"], probs, keep)
    first = dict(zip(predictions["clip_id"], labels))
    clip_labels = np.array([first[c] for c in ids], np.int64)
    labelled = bool(len(clip_labels)) and (clip_labels >= 0).all()
    return {
        "unit": classification_metrics(labels[keep], probs[keep], classes) if labelled else None,
        "clip": classification_metrics(clip_labels, clip_probs, classes) if labelled else None,
        "clip_ids": ids, "clip_probs": clip_probs, "clip_labels": clip_labels,
    }


def table2_rows(branch: str, unit: dict | None, clip: dict | None) -> list[dict]:
    """The paper's Table 2 rows of one model: per unit and, for the visual branches, averaged per clip.

    Args:
        branch: ``frame``, ``c3d``, ``audio`` or ``fusion``.
        unit: unit metrics (``accuracy`` is read), or None when unlabelled.
        clip: clip metrics, or None when unlabelled.

    Returns:
        ``[{"row": name, "accuracy": value or None}]``: two rows for ``frame`` and ``c3d`` (unit,
        then clip average), one (the clip accuracy) for ``audio`` and ``fusion``.

    >>> [r["row"] for r in table2_rows("c3d", {"accuracy": 0.3}, {"accuracy": 0.4})]
    ['C3D branch (single slice)', 'C3D branch (average)']
    """
    def acc(metrics):
        return None if metrics is None else metrics["accuracy"]

    if branch in ("frame", "c3d"):
        return [{"row": f"{ROW_NAMES[branch]} ({UNIT_NAMES[branch]})", "accuracy": acc(unit)},
                {"row": f"{ROW_NAMES[branch]} (average)", "accuracy": acc(clip)}]
    return [{"row": f"{ROW_NAMES[branch]} ({UNIT_NAMES[branch]})", "accuracy": acc(clip)}]


# -- files ------------------------------------------------------------------------------------------------


def confusion_csv_bytes(matrix, classes) -> bytes:
    """CSV of a confusion matrix: header ``true\\predicted,<classes>``, one row per true class.

    Args:
        matrix: ``(K, K)`` counts, rows = true class.
        classes: the ``K`` class names.

    Returns:
        The UTF-8 CSV text, one line per row, each ending in a newline.

    >>> print(confusion_csv_bytes([[2, 0], [1, 3]], ["Angry", "Happy"]).decode(), end="")
    true\\predicted,Angry,Happy
    Angry,2,0
    Happy,1,3
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["true\\predicted", *classes])
    for name, row in zip(classes, matrix):
        writer.writerow([name, *(int(v) for v in row)])
    return out.getvalue().encode()


def plot_confusion_matrix(path, matrix, classes, title: str, mode: str = "row") -> Path:
    """A confusion matrix as a PNG like Pini et al.'s Fig. 3 (rows: true class; cells in percent of the row).

    Args:
        path: the PNG to write.
        matrix: counts ``(K, K)``.
        classes: class names.
        title: figure title.
        mode: ``row`` (percent of each true class) or ``count``.

    Returns:
        ``path``.
    """
    from emorec.plots import pyplot, save_png

    plt = pyplot()
    matrix = np.asarray(matrix, np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    shown = np.divide(100.0 * matrix, totals, out=np.zeros_like(matrix), where=totals > 0) if mode == "row" else matrix
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.1 * k + 2.2, 1.0 * k + 1.6))
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=100 if mode == "row" else max(1.0, shown.max()))
    for i in range(k):
        for j in range(k):
            value = f"{shown[i, j]:.1f}" if mode == "row" else f"{int(shown[i, j])}"
            ax.text(j, i, value, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > 0.6 * (100 if mode == "row" else shown.max()) else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of true class" if mode == "row" else "clips")
    fig.tight_layout()
    return save_png(fig, Path(path), dpi=110)


def _video_names(data, clip_ids) -> list[str]:
    """The video file stems of clips (AFEW's names), from the manifest."""
    clips = data.manifest.clips
    return [Path(clips[c].video).stem if c in clips else c for c in clip_ids]


def write_clip_outputs(out: EvalDir, data, scored: dict, classes, protocol: ClipProtocol, title: str,
                       unit_label: str | None, plots: bool) -> dict:
    """Write the CSVs, the label file and the confusion matrices of one model's evaluation; returns their paths.

    Files: ``clip_predictions.csv`` (clip, video, label, predicted class, probabilities),
    ``predicted_labels.txt`` (``<video> <class>`` lines, sorted), the clip confusion matrix
    CSV/PNG and, when ``unit_label`` is set, the unit one (``unit_`` prefix); confusion files
    only when labelled, PNGs only with ``plots``.

    Args:
        out: the evaluation directory (created if missing).
        data: the clip dataset (for the clips' video names).
        scored: :func:`score_units` output.
        classes: the class names.
        protocol: the protocol (``confusion_png`` style).
        title: start of the plots' titles.
        unit_label: the units' name for the unit plot (``frames``, ``slices``), or None for no
            unit confusion matrix.
        plots: draw the confusion PNGs.

    Returns:
        ``{file kind: path string}``: ``metrics`` (written later by the caller),
        ``clip_predictions``, ``labels``, ``clip_confusion_csv``/``unit_confusion_csv``, and
        ``clip_confusion_png``/``unit_confusion_png``/``confusion_png`` as written.
    """
    out.path.mkdir(parents=True, exist_ok=True)
    ids, probs, labels = scored["clip_ids"], scored["clip_probs"], scored["clip_labels"]
    videos = _video_names(data, ids)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["clip_id", "video", "label", "predicted", *classes])
    lines = []
    for cid, video, label, row in zip(ids, videos, labels, probs):
        predicted = classes[int(np.argmax(row))]
        writer.writerow([cid, video, classes[label] if label >= 0 else "", predicted,
                         *(f"{p:.6f}" for p in row)])
        lines.append(f"{video} {predicted}")
    atomic_write_bytes(out.clip_predictions, table.getvalue().encode())
    atomic_write_bytes(out.predicted_labels, ("\n".join(sorted(lines)) + "\n").encode())
    files = {"metrics": str(out.metrics), "clip_predictions": str(out.clip_predictions),
             "labels": str(out.predicted_labels)}
    for prefix, metrics, what in (("", scored["clip"], "clips"), ("unit", scored["unit"], unit_label)):
        if metrics is None or (prefix and unit_label is None):
            continue
        atomic_write_bytes(out.confusion_csv(prefix), confusion_csv_bytes(metrics["confusion"], classes))
        files[f"{prefix or 'clip'}_confusion_csv"] = str(out.confusion_csv(prefix))
        if plots:
            plot_confusion_matrix(out.confusion_png(prefix), metrics["confusion"], classes,
                                  f"{title}: {what}, accuracy {100 * metrics['accuracy']:.1f}%",
                                  protocol.confusion_png)
            files[f"{prefix or 'clip'}_confusion_png"] = str(out.confusion_png(prefix))
    if "clip_confusion_png" in files:
        files["confusion_png"] = files["clip_confusion_png"]
    return files


# -- runs -------------------------------------------------------------------------------------------------


def _clip_data(data):
    from emorec.clips.dataset import is_clip_dataset
    from emorec.dataset import open_dataset

    data = open_dataset(data)
    if not is_clip_dataset(data):
        raise DatasetError(f"{data.path}: a clip classification run is evaluated on a clip dataset "
                           "(clips_manifest.json); this one is windowed")
    return data


def evaluate_clip_run(run_dir, data, partition: str, *, out_dir=None, protocol=None, model=None,
                      fusion_data=None, progress: bool = False, plots: bool = True) -> dict:
    """Evaluate a clip classification run's best model on one partition (see the module docstring).

    Args:
        run_dir: the training run (a branch or a fusion run).
        data: the clip dataset (handle or directory).
        partition: ``train``, ``dev`` or ``test``.
        out_dir: where to write (default ``RUN/eval/<partition>``).
        protocol: a protocol YAML, mapping or :class:`ClipProtocol` (default ``evaluate/emotiw2017.yaml``).
        model: the model to use instead of ``RUN/best.keras``.
        fusion_data: the fusion's :class:`~emorec.clip_features.FusionData` (default: from the run's branches).
        progress: progress bars (branch features).
        plots: draw the confusion matrices.

    Returns:
        The dict written to ``metrics.json`` (plus ``files``).

    Raises:
        ConfigError, DatasetError: an unusable run, dataset or partition.
    """
    from emorec.config import load_run_config
    from emorec.evaluate import load_best_model
    from emorec.tasks import get_task
    from emorec.tasks.clip_classification import TASK_NAME, ClipUnits, branch_of, make_class_forward

    run = RunDir(run_dir)
    config = load_run_config(run.path)
    branch = branch_of(config)
    data = _clip_data(data)
    protocol = load_clip_protocol(protocol)
    if not data.has_partition(partition):
        raise DatasetError(f"{data.path}: no clips in partition {partition}")
    data.check_labels(partition)
    classes = list(data.classes)
    model = model if model is not None else load_best_model(run.path)
    out = EvalDir(out_dir if out_dir is not None else run.eval_dir(partition))
    branch_results = {}
    source = data
    if branch == "fusion":
        from emorec.clip_features import BranchRuns, fusion_data_for

        if fusion_data is None:
            fusion_data = fusion_data_for(run.path, data, config, BranchRuns.load(run.path), progress=progress)
        for name, branch_run in fusion_data.branches.runs.items():
            branch_results[name] = evaluate_clip_run(
                branch_run, data, partition, out_dir=out.path / name, protocol=protocol,
                model=fusion_data.branches.models[name], progress=progress, plots=plots)
        source = fusion_data
    units = ClipUnits(get_task(TASK_NAME), source, config, partition)
    scored = score_units(units.predict(make_class_forward(model)), classes, protocol.aggregation)
    clips = data.clips(partition)
    result = {
        "model": config.model_name, "branch": branch, "partition": partition, "run_dir": str(run.path),
        "data_dir": str(data.path), "protocol": protocol.to_dict(), "classes": classes,
        "num_clips": len(scored["clip_ids"]), "labelled": scored["clip"] is not None,
        "unit_name": UNIT_NAMES[branch], "unit": scored["unit"], "clip": scored["clip"],
        "clips_without_face": sum(c.faces_found == 0 for c in clips),
        "clips_without_audio": sum(not c.has_audio for c in clips),
        "table2": [row for r in branch_results.values() for row in r["table2"]]
        + table2_rows(branch, scored["unit"], scored["clip"]),
        "branches": {k: {key: v[key] for key in ("run_dir", "unit", "clip", "table2")}
                     for k, v in branch_results.items()},
    }
    if not result["labelled"]:
        result["note"] = f"partition {partition} is unlabelled: predictions only"
    unit_label = None if branch in ("audio", "fusion") else ("frames" if branch == "frame" else "slices")
    title = f"{config.model_name} on {partition}"
    result["files"] = write_clip_outputs(out, data, scored, classes, protocol, title, unit_label, plots)
    atomic_write_bytes(out.metrics, (json.dumps(_finite(result), indent=2) + "\n").encode())
    return result


def _finite(obj):
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def format_evaluation(result: dict) -> str:
    """The lines printed after an evaluation: Table 2's rows, UAR, per-class recall, faceless and silent clips.

    Args:
        result: the dict :func:`evaluate_clip_run` returns.

    Returns:
        The text, lines joined by newlines (no final newline).
    """
    lines = [f"{result['model']} on {result['partition']} ({result['num_clips']} clips)"]
    if not result["labelled"]:
        lines.append(f"  {result.get('note', 'unlabelled')}")
    else:
        lines.append("  Table 2 rows (accuracy):")
        for row in result["table2"]:
            value = "n/a" if row["accuracy"] is None else f"{100 * row['accuracy']:.2f}%"
            lines.append(f"    {row['row']:<34s} {value}")
        clip = result["clip"]
        lines.append(f"  clip accuracy {100 * clip['accuracy']:.2f}%, unweighted average recall "
                     f"{100 * clip['uar']:.2f}%")
        recall = ", ".join(f"{k} {'n/a' if v is None else f'{100 * v:.1f}%'}" for k, v in clip["recall"].items())
        lines.append(f"  recall per class: {recall}")
    lines.append(f"  clips without a face: {result['clips_without_face']}, without sound: "
                 f"{result['clips_without_audio']}")
    files = result.get("files", {})
    lines.append(f"outputs: {Path(files.get('metrics', '.')).parent} (metrics.json, clip_predictions.csv, "
                 "predicted_labels.txt, confusion_matrix.csv/.png)")
    return "\n".join(lines)


def is_clip_run(run_dir) -> bool:
    """True when ``RUN_DIR/config.yaml`` names a clip classification model.

    Args:
        run_dir: the training run directory.

    Returns:
        Whether the run's model belongs to the ``clip_classification`` task.

    Raises:
        ConfigError: no readable run config, or an unknown model name.
    """
    from emorec.config import load_run_config
    from emorec.models import get_model_spec

    return get_model_spec(load_run_config(run_dir).model_name).task == "clip_classification"


__all__ = ["ClipProtocol", "evaluate_clip_run", "format_evaluation", "is_clip_run", "load_clip_protocol",
           "plot_confusion_matrix", "score_units", "table2_rows"]

"""Training flows of the clip task (Pini et al., EmotiW 2017): one branch, the two phases, k-fold, the demo.

- A branch model (``emotiw_frame``, ``emotiw_c3d``, ``emotiw_audio``) trains
  like any model, once ``model.num_classes: null`` is resolved to the
  dataset's class count.
- The fusion (``emotiw``) runs §3.5's two phases. Without ``branches`` it
  trains the three branches first, each with its own ``train/emotiw_*.yaml``
  (and their ``demo:`` sections on the demo corpus), into ``RUN/frame``,
  ``RUN/c3d`` and ``RUN/audio``; with ``branches`` it uses those runs. It then
  computes the branch features of every clip once
  (:mod:`emorec.clip_features`, cached in ``RUN/features``) and trains the
  fusion on them into ``RUN``. ``RUN/branches.json`` names the branch runs,
  for evaluation and export.
- ``folds=K`` trains K times into ``RUN/fold1`` ... ``RUN/foldK`` on Pini et
  al.'s folds (:mod:`emorec.clips.folds`: train on Train plus K - 1 folds of
  Val, validate on the remaining fold, subject-independent where subjects are
  known) and writes ``RUN/folds.json`` with each fold's best validation
  accuracy and their mean and standard deviation.
- :func:`run_clip_demo_flow`: the embedded demo clip corpus (built into the
  cache once), all phases, evaluation on dev with the confusion matrix,
  export, learning curves.

Settings of the phases: the fusion's config comes from the command (its
YAML, ``--set``, flags); each branch phase from its own YAML plus the
``--set frame.KEY=VALUE`` / ``c3d.`` / ``audio.`` overrides and the run-wide
flags (seed, strategy, XLA) in ``phase_flags``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from emorec.errors import ConfigError
from emorec.manifest import atomic_write_bytes
from emorec.rundir import RunDir

logger = logging.getLogger(__name__)

BRANCH_PREFIXES = ("frame", "c3d", "audio")
# The demo clip corpus of the emotiw demo flow: smaller and shorter clips than the
# data module's default ClipSpec, at half its video size, and 80-pixel faces, so that
# building it and training all four networks fit in a few minutes on two cores.
DEMO_CLIP_SPEC = dict(train_per_class=16, val_per_class=8, min_seconds=1.0, max_seconds=2.0,
                      width=128, height=96)
DEMO_FACE_SIZE = 80
DEV = "dev"


@dataclasses.dataclass
class ClipTrainResult:
    """A clip model's training: its run, and the branch phases trained with it."""

    train: object  # emorec.training.engine.TrainResult of the model itself (the fusion's for emotiw)
    branches: dict  # branch -> TrainResult of phases trained here, or the Path of a given run
    data: object  # the dataset handle
    folds: list | None = None  # per-fold ClipTrainResult of a k-fold run
    summary: dict | None = None  # the k-fold summary (folds.json)

    def __getattr__(self, name):
        # run_dir, best_score, score_name, best_epoch, best_model, history, model...
        if name == "train":
            raise AttributeError(name)
        return getattr(self.train, name)


def with_dataset_classes(config, data):
    """``config`` with ``model.num_classes`` set to the dataset's when it is null.

    Args:
        config: a run config.
        data: the clip dataset (``num_classes`` is read).

    Returns:
        ``config`` itself when its model has no ``num_classes`` setting or a set one, else a copy
        with the dataset's count.
    """
    if getattr(config.model, "num_classes", 1) is not None:
        return config
    return config.replace(model=config.model.replace(num_classes=data.num_classes))


def split_overrides(overrides) -> tuple[list[str], dict[str, list[str]]]:
    """``--set`` values for the model itself, and those prefixed ``frame.``, ``c3d.``, ``audio.`` per phase.

    Args:
        overrides: ``KEY=VALUE`` strings.

    Returns:
        ``(own, {"frame": [...], "c3d": [...], "audio": [...]})``, the branch prefix removed.

    >>> split_overrides(["training.epochs=3", "frame.model.width=0.5"])
    (['training.epochs=3'], {'frame': ['model.width=0.5'], 'c3d': [], 'audio': []})
    """
    own, phases = [], {name: [] for name in BRANCH_PREFIXES}
    for text in overrides:
        head, _, rest = text.partition(".")
        if head in phases and rest:
            phases[head].append(rest)
        else:
            own.append(text)
    return own, phases


def branch_config(branch: str, *, demo: bool, overrides=(), flags=()):
    """The training config of one branch phase: ``train/emotiw_<branch>.yaml`` (+ demo section, overrides, flags).

    Args:
        branch: ``frame``, ``c3d`` or ``audio``.
        demo: merge the config's demo section.
        overrides: ``KEY=VALUE`` settings for the branch.
        flags: command-line flag settings for the branch.

    Returns:
        The resolved run config.

    Raises:
        ConfigError: a missing or malformed config file, or a bad override.
    """
    from emorec.config import config_path_for, resolve_config
    from emorec.models.emotiw import BRANCH_MODELS

    return resolve_config(config_path_for(BRANCH_MODELS[branch]), demo=demo, overrides=overrides, flags=flags)


def train_clip_model(config, data, run_dir, *, branches=None, folds: int | None = None, demo: bool = False,
                     phase_overrides: dict | None = None, phase_flags=(), resume: bool = False,
                     progress: bool = True, on_step=None, run_info: dict | None = None) -> ClipTrainResult:
    """Train a clip model (see the module docstring).

    Args:
        config: the model's resolved :class:`~emorec.config.TrainConfig`.
        data: the clip dataset (handle or directory).
        run_dir: the run directory.
        branches: for ``emotiw``: a :class:`~emorec.clip_features.BranchRuns` (or its
            ``FRAME,C3D,AUDIO`` text) to train the fusion on; None trains the branches here.
        folds: train K times on Pini et al.'s folds.
        demo: the branch phases merge their YAMLs' ``demo:`` sections.
        phase_overrides: ``{branch: ["key=value", ...]}`` for the branch phases.
        phase_flags: ``(dotted key, value, flag)`` given to every phase (seed, strategy, XLA).
        resume: continue every phase from its latest checkpoint.
        progress: progress bars.
        on_step: called after every training step of every phase.
        run_info: extra entries of the runs' ``config.yaml`` records.

    Returns:
        The :class:`ClipTrainResult`.

    Raises:
        ConfigError, DatasetError: unusable settings, data or branch runs.
    """
    from emorec.clip_features import BranchRuns, fusion_data_for
    from emorec.dataset import open_dataset
    from emorec.tasks.clip_classification import branch_of

    data = open_dataset(data)
    kind = branch_of(config)
    if branches is not None and kind != "fusion":
        raise ConfigError(f"--branches applies to the emotiw fusion only, not to {config.model_name}")
    if isinstance(branches, str):
        branches = BranchRuns.parse(branches)
    if folds:
        if branches is not None:
            raise ConfigError("--branches cannot be combined with --folds: every fold trains its own branches")
        return _train_folds(config, data, run_dir, folds, demo=demo, phase_overrides=phase_overrides,
                            phase_flags=phase_flags, resume=resume, progress=progress, on_step=on_step,
                            run_info=run_info)
    from emorec.training.engine import train

    config = with_dataset_classes(config, data)
    info = dict(run_info or {})
    if data.label:
        info["fold"] = data.label
    if kind != "fusion":
        result = train(config, data, run_dir, resume=resume, progress=progress, on_step=on_step, run_info=info)
        return ClipTrainResult(result, {}, data)

    run = RunDir(run_dir)
    trained = {}
    if branches is None:
        phase_overrides = phase_overrides or {}
        for name in BRANCH_PREFIXES:
            phase = with_dataset_classes(
                branch_config(name, demo=demo, overrides=phase_overrides.get(name, ()), flags=phase_flags), data)
            logger.info("phase 1: the %s branch (%s) into %s", name, phase.model_name, run.branch_dir(name))
            trained[name] = train(phase, data, run.branch_dir(name), resume=resume, progress=progress,
                                  on_step=on_step, run_info={**info, "phase": name, "fusion_run": str(run.path)})
        branches = BranchRuns(*(run.branch_dir(name) for name in BRANCH_PREFIXES))
    fusion_data = fusion_data_for(run.path, data, config, branches,
                                  models={k: _best_in_memory(v) for k, v in trained.items()}, progress=progress)
    branches.save(run.path)
    logger.info("phase 2: the fusion on the branch features into %s", run.path)
    result = train(config, fusion_data, run.path, resume=resume, progress=progress, on_step=on_step,
                   run_info={**info, "phase": "fusion",
                             "branches": {k: str(v) for k, v in branches.items()}})
    return ClipTrainResult(result, trained or {k: v for k, v in branches.items()}, data)


def _best_in_memory(result):
    """The phase's in-memory model when its final weights are the best epoch's (saves reloading it)."""
    history = result.history or []
    if result.model is not None and history and history[-1].get("epoch") == result.best_epoch:
        return result.model
    return None


def _train_folds(config, data, run_dir, k: int, **kwargs) -> ClipTrainResult:
    """K runs on Pini et al.'s folds, and ``RUN/folds.json`` (mean and sd of the folds' best accuracies)."""
    run = RunDir(run_dir)
    views = data.folds(k, seed=config.training.seed)
    results = []
    for index, view in enumerate(views, start=1):
        logger.info("%s: %d training clips, %d validation clips", view.label, len(view.clips("train")),
                    len(view.clips("dev")))
        results.append(train_clip_model(config, view, run.fold_dir(index), **kwargs))
    summary = fold_summary(results, views, run)
    run.path.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run.folds, (json.dumps(summary, indent=2) + "\n").encode())
    return ClipTrainResult(results[-1].train, {}, data, folds=results, summary=summary)


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of finite values.

    Args:
        values: numbers; None and non-finite ones are ignored.

    Returns:
        ``(mean, sd)``; ``(nan, nan)`` when no value is left.

    >>> [round(v, 6) for v in mean_sd([0.5, 0.7])]
    [0.6, 0.141421]
    """
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if not len(values):
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def fold_summary(results, views, run: RunDir) -> dict:
    """The k-fold record: per fold its run, sizes and best-epoch metrics; mean ± sd of each metric.

    Args:
        results: each fold's training result (``history``, ``best_epoch``).
        views: each fold's dataset view (its ``train`` and ``dev`` clips).
        run: the cross-validation run directory.

    Returns:
        ``{"folds": [per-fold row], "k": number of folds, "dev_accuracy" / "dev_clip_accuracy" /
        "dev_clip_uar": {"mean", "sd"}}``.
    """
    rows = []
    for index, (result, view) in enumerate(zip(results, views), start=1):
        best = next((r for r in result.history if r.get("epoch") == result.best_epoch), {})
        rows.append({
            "fold": index, "run_dir": str(run.fold_dir(index)), "best_epoch": result.best_epoch,
            "train_clips": len(view.clips("train")), "dev_clips": len(view.clips("dev")),
            "dev_subjects": sorted({c.subject_id for c in view.clips("dev") if c.subject_id}),
            **{k: best.get(k) for k in ("dev_accuracy", "dev_clip_accuracy", "dev_clip_uar")},
        })
    summary = {"folds": rows, "k": len(rows)}
    for key in ("dev_accuracy", "dev_clip_accuracy", "dev_clip_uar"):
        mean, sd = mean_sd([r[key] for r in rows])
        summary[key] = {"mean": mean, "sd": sd}
    return summary


def format_folds(summary: dict) -> str:
    """Lines of a k-fold summary: one per fold and the mean ± sd.

    Args:
        summary: :func:`fold_summary` output.

    Returns:
        The text, lines joined by newlines.
    """
    lines = [f"{summary['k']}-fold cross-validation (train on Train + {summary['k'] - 1} folds of Val)"]
    for row in summary["folds"]:
        lines.append(f"  fold {row['fold']}: best epoch {row['best_epoch']}, validation accuracy "
                     f"{row['dev_accuracy']:.4f} (clip {row['dev_clip_accuracy']:.4f}) on {row['dev_clips']} clips")
    acc, clip = summary["dev_accuracy"], summary["dev_clip_accuracy"]
    lines.append(f"  mean ± sd: {acc['mean']:.4f} ± {acc['sd']:.4f} (clip {clip['mean']:.4f} ± {clip['sd']:.4f})")
    return "\n".join(lines)


# -- the demo --------------------------------------------------------------------------------------------


def demo_clip_dataset(progress: bool = True):
    """The emotiw demo's clip dataset: ``$EMOREC_DEMO_CLIP_SPEC`` or :data:`DEMO_CLIP_SPEC`, built once into the cache.

    Args:
        progress: show progress bars while building.

    Returns:
        The dataset directory (holding ``clips_manifest.json``).

    Raises:
        ConfigError: a malformed ``$EMOREC_DEMO_CLIP_SPEC``.
    """
    from emorec.clips.build import ClipBuildOptions
    from emorec.demo.clip_cache import demo_clip_spec_from_env, ensure_demo_clip_dataset
    from emorec.demo.clips import ClipSpec

    spec = demo_clip_spec_from_env() or ClipSpec(**DEMO_CLIP_SPEC)
    return ensure_demo_clip_dataset(spec=spec, options=ClipBuildOptions(face_size=DEMO_FACE_SIZE),
                                    progress=progress)


@dataclasses.dataclass
class ClipDemoResult:
    """What the emotiw demo flow produced."""

    train: ClipTrainResult
    data_dir: Path
    metrics: dict  # evaluate_clip_run's result on dev
    export_dir: Path
    pictures: dict
    timings: dict
    summary: str

    @property
    def run_dir(self) -> Path:
        """The run directory."""
        return Path(self.train.run_dir)


def run_clip_demo_flow(config, run_dir, *, data=None, resume: bool = False, progress: bool = True,
                       on_step=None, run_info: dict | None = None, phase_overrides=None,
                       phase_flags=()) -> ClipDemoResult:
    """Build (or reuse) the demo clips, train every phase, evaluate dev, export, draw; see the module docstring.

    Args:
        config: the model's resolved config (its ``demo:`` section merged).
        run_dir: the run directory.
        data: a clip dataset built elsewhere; None builds or reuses the cached demo one.
        resume: continue the phases from their checkpoints.
        progress: progress bars.
        on_step: called after every training step.
        run_info: extra entries for ``config.yaml``.
        phase_overrides: ``--set`` overrides of the branch phases.
        phase_flags: run-wide flags of every phase.

    Returns:
        The :class:`ClipDemoResult`; ``summary`` is what the command prints.
    """
    from emorec.clip_evaluate import evaluate_clip_run, format_evaluation
    from emorec.clip_export import export_clip_run
    from emorec.dataset import open_dataset
    from emorec.pictures import plot_learning_curves

    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = open_dataset(data if data is not None else demo_clip_dataset(progress))
    timings["build"] = time.perf_counter() - started

    mark = time.perf_counter()
    result = train_clip_model(config, data, run_dir, demo=True, resume=resume, progress=progress, on_step=on_step,
                              run_info=run_info, phase_overrides=phase_overrides, phase_flags=phase_flags)
    timings["train"] = time.perf_counter() - mark
    run = RunDir(result.run_dir)

    mark = time.perf_counter()
    metrics = evaluate_clip_run(run.path, data, DEV, progress=progress)
    timings["evaluate"] = time.perf_counter() - mark

    mark = time.perf_counter()
    export_clip_run(run.path, run.export, data=data)
    timings["export"] = time.perf_counter() - mark

    mark = time.perf_counter()
    pictures = {"learning_curves": plot_learning_curves(run.path)}
    pictures["confusion_matrix"] = Path(metrics["files"]["confusion_png"])
    timings["pictures"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started

    summary = format_demo_summary(run, data, result, metrics, pictures, timings)
    record = {
        "run_dir": str(run.path), "data_dir": str(data.path), "best_model": str(run.best_model),
        "best_epoch": result.best_epoch, "export_dir": str(run.export),
        "metrics_json": metrics["files"]["metrics"], "pictures": {k: str(v) for k, v in pictures.items()},
        "dev": {row["row"]: row["accuracy"] for row in metrics["table2"]},
        "dev_uar": metrics["clip"]["uar"], "evaluation": format_evaluation(metrics),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    atomic_write_bytes(run.demo_summary, (json.dumps(record, indent=2) + "\n").encode())
    return ClipDemoResult(result, data.path, metrics, run.export, pictures, timings, summary)


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def format_demo_summary(run: RunDir, data, result, metrics: dict, pictures: dict, timings: dict) -> str:
    """The closing report of the demo flow: where everything is, Table 2's rows on dev, the time per stage.

    Args:
        run: the trained run's directory.
        data: the demo clip dataset.
        result: the training result (``best_epoch``, ``history``).
        metrics: the evaluation result (:func:`emorec.clip_evaluate.evaluate_clip_run`).
        pictures: ``{name: path}`` of the pictures drawn.
        timings: ``{stage: seconds}`` with ``total``.

    Returns:
        The report, lines joined by newlines.
    """
    from emorec.clip_evaluate import format_evaluation

    lines = [
        f"demo flow finished in {_minutes(timings['total'])} ("
        + ", ".join(f"{k} {_minutes(v)}" for k, v in timings.items() if k != "total") + ")",
        f"  demo dataset:  {data.path}",
        f"  run directory: {run.path}",
        f"  best model:    {run.best_model} (epoch {result.best_epoch} of {len(result.history)}, by dev accuracy)",
        f"  export:        {run.export} (saved_model/: a clip's faces and sound -> class probabilities)",
        f"  dev metrics:   {metrics['files']['metrics']}",
        "  pictures:      " + ", ".join(str(p) for p in pictures.values()),
        format_evaluation(metrics),
    ]
    return "\n".join(lines)

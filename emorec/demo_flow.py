"""The demo flow of ``emorec train`` without ``--data``: build → train → evaluate dev → export → pictures.

It is model-agnostic: any registered model runs through it with its YAML's
``demo:`` overrides. Outputs, all in the run directory:

- what training writes (``config.yaml``, ``history.*``, ``best.keras``,
  ``checkpoints/``, ``tb/``);
- ``eval/dev/``: ``metrics.json`` (raw metrics and, separately, the metrics
  after the AVEC post-processing tuned on dev, which are optimistic since dev
  chose the chain), ``predictions/*.csv``, ``postprocessed/*.csv``, ``plots/*.png``;
- ``postprocess.json`` (the tuned chain) and ``export/`` (``emorec.export``:
  one SavedModel with offline and streaming signatures, ``export.json``);
- ``learning_curves.png`` and, for models with a face decoder,
  ``reconstructions.png`` (:mod:`emorec.pictures`);
- ``demo_summary.json``: the paths above, the dev metrics and the time each
  stage took.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from emorec.manifest import atomic_write_bytes
from emorec.rundir import RunDir

DEV = "dev"
_DIMENSIONS = ("arousal", "valence")


@dataclasses.dataclass
class DemoFlowResult:
    """What the demo flow produced."""

    train: object  # emorec.training.engine.TrainResult
    data_dir: Path
    metrics: dict  # evaluate_run's dict (raw and post-processed dev metrics)
    export_dir: Path
    pictures: dict[str, Path]
    timings: dict[str, float]  # seconds per stage and in all
    summary: str  # the text printed at the end

    @property
    def run_dir(self) -> Path:
        """The run directory."""
        return Path(self.train.run_dir)


def _final_is_best(result) -> bool:
    """True when the model's final weights are the best epoch's (nothing trained after it was saved)."""
    history = result.history or []
    return result.model is not None and bool(history) and history[-1].get("epoch") == result.best_epoch


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _metric_lines(label: str, metrics: dict | None) -> list[str]:
    if not metrics:
        return []
    cells = [f"CCC {name} {metrics[name]['ccc']:.3f}" for name in _DIMENSIONS if metrics.get(name)]
    rmse = [f"{key} {metrics[key]:.3f}" for key in ("E_a", "E_v", "E_av") if metrics.get(key) is not None]
    return [f"{label}: {', '.join(cells)}", f"{' ' * len(label)}  RMSE {', '.join(rmse)}"]


def format_summary(run_dir: Path, data_dir: Path, result, metrics: dict, export_dir: Path,
                   pictures: dict, timings: dict, streaming: bool = True) -> str:
    """The closing report: where everything is, the dev CCC and RMSE per dimension, the time per stage.

    Args:
        run_dir: the training run directory.
        data_dir: the demo dataset directory.
        result: the training result (``best_model``, ``best_epoch``, ``history``,
            ``global_step``).
        metrics: the evaluation's metrics (``out_dir``, ``raw`` and optional ``postprocessed``).
        export_dir: the export directory.
        pictures: ``{name: path}`` of the pictures drawn.
        timings: ``{stage: seconds}`` with ``total``.
        streaming: the export has a streaming signature.

    Returns:
        The report, lines joined by newlines.
    """
    raw = metrics.get("raw") or {}
    eval_dir = Path(metrics["out_dir"])
    best = result.best_model or "none"
    lines = [
        f"demo flow finished in {_minutes(timings['total'])} ("
        + ", ".join(f"{k} {_minutes(v)}" for k, v in timings.items() if k != "total") + ")",
        f"  demo dataset:  {data_dir}",
        f"  run directory: {run_dir}",
        f"  best model:    {best} (epoch {result.best_epoch} of {len(result.history)}, by dev CCC; "
        f"{result.global_step} steps in all)",
        f"  export:        {export_dir} (saved_model/ with offline "
        + ("and streaming signatures" if streaming else "signature only: no streaming form") + ", export.json)",
        f"  dev metrics:   {eval_dir / 'metrics.json'} (predictions/*.csv, plots/*.png beside it)",
        "  pictures:      " + ", ".join(str(p) for p in pictures.values()),
        f"dev partition: {raw.get('num_recordings', '?')} recordings, {raw.get('num_frames', '?')} frames "
        f"(AVEC CCC over the concatenated recordings; RMSE E_a, E_v, E_av as Nguyen et al. eq. 11-13)",
    ]
    lines += _metric_lines("  dev, raw", raw)
    lines += _metric_lines("  dev, post-processed (chain tuned on dev itself: optimistic)",
                           metrics.get("postprocessed"))
    return "\n".join(lines)


def run_demo_flow(
    config,
    run_dir,
    *,
    data=None,
    resume: bool = False,
    progress: bool = True,
    postprocess: bool = True,
    on_step: Callable[[dict], None] | None = None,
    run_info: dict | None = None,
) -> DemoFlowResult:
    """Build (or reuse) the demo corpus, train ``config`` into ``run_dir``, evaluate dev, export, draw.

    Args:
        config: a resolved :class:`~emorec.config.TrainConfig` (the ``demo:`` overrides merged).
        run_dir: the run directory.
        data: a demo dataset built elsewhere (handle or directory); None builds or reuses the cached one.
        resume: continue the run's training from its latest checkpoint.
        progress: show progress bars.
        postprocess: tune the post-processing chain on dev (reported apart from the raw metrics).
        on_step: called after every training step.
        run_info: extra entries for the run's ``config.yaml``.

    Returns:
        The :class:`DemoFlowResult`; its ``summary`` is the text the command prints.
    """
    from emorec.dataset import open_dataset
    from emorec.evaluate import evaluate_run
    from emorec.export import export_run
    from emorec.pictures import write_run_pictures
    from emorec.training.engine import train

    timings: dict[str, float] = {}
    started = time.perf_counter()
    if data is None:
        from emorec.demo.cache import ensure_demo_dataset
        from emorec.models import get_model_spec
        from emorec.tasks import get_task

        # The task says what else its demo dataset holds (feature_lstm: feature sets from the media).
        extra = get_task(get_model_spec(config.model_name).task).demo_dataset_options(config)
        data = ensure_demo_dataset(config.data.window, progress=progress, **extra)
    data = open_dataset(data)
    timings["build"] = time.perf_counter() - started

    mark = time.perf_counter()
    result = train(config, data, run_dir, resume=resume, progress=progress, on_step=on_step,
                   run_info=run_info)
    timings["train"] = time.perf_counter() - mark
    run = RunDir(result.run_dir)
    # Reloading a large best.keras costs seconds; the in-memory model is the same when nothing followed it.
    model = result.model if _final_is_best(result) else None

    mark = time.perf_counter()
    metrics = evaluate_run(run.path, data, DEV, "tune" if postprocess else "off", model=model,
                           progress=progress)
    timings["evaluate"] = time.perf_counter() - mark

    mark = time.perf_counter()
    if model is None:
        from emorec.evaluate import load_best_model

        model = load_best_model(run.path)
    exported = export_run(run.path, run.export, model=model, keras_file=run.best_model, data=data)
    timings["export"] = time.perf_counter() - mark

    mark = time.perf_counter()
    pictures = write_run_pictures(run.path, data, model, partition=DEV)
    timings["pictures"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started

    summary = format_summary(run.path, data.path, result, metrics, run.export, pictures, timings,
                             streaming=exported.get("streaming") is not None)
    record = {
        "run_dir": str(run.path), "data_dir": str(data.path),
        "best_model": None if result.best_model is None else str(result.best_model),
        "best_epoch": result.best_epoch, "global_step": result.global_step,
        "export_dir": str(run.export), "metrics_json": str(Path(metrics["out_dir"]) / "metrics.json"),
        "pictures": {k: str(v) for k, v in pictures.items()},
        "dev": {key: metrics.get(key) and {k: v for k, v in metrics[key].items() if k != "per_recording"}
                for key in ("raw", "postprocessed")},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    atomic_write_bytes(run.demo_summary, (json.dumps(record, indent=2) + "\n").encode())
    return DemoFlowResult(train=result, data_dir=data.path, metrics=metrics, export_dir=run.export,
                          pictures=pictures, timings=timings, summary=summary)

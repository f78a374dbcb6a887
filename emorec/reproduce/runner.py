"""Running an experiment grid: every run trained and evaluated once, in parallel, resumable; then the tables.

Layout of ``OUT``::

    runs/<slug>/        one training run per distinct setting (config.yaml, best.keras, eval/dev/...)
    runs/<slug>/reproduce.json   written last: the run is finished (a rerun skips it)
    fusion/<table>-<dimension>/  the late fusions (emorec fuse's layout)
    tables/<table>.md, .csv      the paper's numbers beside emorec's
    tables/README.md             every table, one file

A run is trained with the grid's config (``train/<config>.yaml``) and the
run's settings (``--quick``: plus the grid's ``quick.overrides``), evaluated
on dev with its task's protocol (``evaluate/avec2015.yaml``: whole
recordings, exponential smoothing tuned on dev) and summarised in
``reproduce.json``. A run folder without it (a killed run) is started again.
``jobs`` runs train at once in separate processes, each with
``cores / jobs`` TensorFlow threads; a run that fails is reported in its
cells and the rest go on.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import time
from pathlib import Path

from emorec.errors import EmorecError
from emorec.manifest import atomic_write_bytes
from emorec.reproduce.grid import DIMENSIONS, Grid, RunSpec

logger = logging.getLogger(__name__)

DONE_FILE = "reproduce.json"
RUNS_DIR, FUSION_DIR, TABLES_DIR = "runs", "fusion", "tables"


@dataclasses.dataclass(frozen=True)
class Job:
    """What a worker needs to train and evaluate one run."""

    run: RunSpec
    run_dir: str
    data_dir: str
    config_path: str
    overrides: tuple  # ((dotted key, value), ...) of the quick mode


def run_summary(run_dir) -> dict | None:
    """The finished run's ``reproduce.json``, or None when it has not finished.

    Args:
        run_dir: the run's directory.

    Returns:
        The parsed summary, or None when the file is missing or unreadable.
    """
    path = Path(run_dir) / DONE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _flags(job: Job) -> list:
    return [*((key, value, "--quick") for key, value in job.overrides), *job.run.config_flags()]


def execute(job: Job) -> dict:
    """Train and evaluate one run (skipped when already finished); its summary, or the error it met.

    An unfinished run's directory is deleted and the run started again.

    Args:
        job: the run, its directory, the dataset and config paths and the quick overrides.

    Returns:
        The summary (key, run directory, settings, best epoch, epochs, seconds, dev metrics raw
        and smoothed, the tuned smoothing α), also written to the run's ``reproduce.json``; or
        ``{"key", "run_dir", "error"}`` when training or evaluation raised an EmorecError,
        OSError or ValueError.
    """
    from emorec.config import resolve_config
    from emorec.evaluate import evaluate_run
    from emorec.postprocess import PostprocessParams
    from emorec.rundir import RunDir
    from emorec.training.engine import train

    done = run_summary(job.run_dir)
    if done is not None and done.get("key") == job.run.key:
        return done
    run_dir = Path(job.run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished run: start it again
    started = time.time()
    try:
        config = resolve_config(job.config_path, flags=_flags(job))
        result = train(config, job.data_dir, run_dir, progress=False, run_info={"grid_run": job.run.key})
        metrics = evaluate_run(run_dir, job.data_dir, "dev", "tune", plots=False, progress=False)
    except (EmorecError, OSError, ValueError) as exc:
        logger.warning("run %s failed: %s", run_dir.name, exc)
        return {"key": job.run.key, "run_dir": str(run_dir), "error": str(exc)}
    params = PostprocessParams.load(RunDir(run_dir).postprocess)
    summary = {
        "key": job.run.key, "run_dir": str(run_dir), "settings": job.run.as_dict,
        "best_epoch": result.best_epoch, "epochs": len(result.history), "seconds": round(time.time() - started, 1),
        "raw": {d: metrics["raw"][d] for d in DIMENSIONS}, "smoothed": {d: metrics["postprocessed"][d] for d in DIMENSIONS},
        "alpha": {p.name: p.smoothing for p in params.dimensions},
    }
    atomic_write_bytes(run_dir / DONE_FILE, (json.dumps(summary, indent=2) + "\n").encode())
    logger.info("run %s: dev CCC %s (%d epochs, %.0f s)", run_dir.name,
                {d: round(summary["raw"][d]["ccc"], 3) for d in job.run.as_dict["targets"]},
                summary["epochs"], summary["seconds"])
    return summary


def _init_worker(threads: int) -> None:
    """Share the cores: each worker process gets its slice of TensorFlow threads."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))


def run_grid(grid: Grid, data_dir, out, *, jobs: int = 1, quick_overrides: dict | None = None,
             progress: bool = True) -> dict:
    """Train and evaluate every run of ``grid`` on ``data_dir`` into ``out``; returns ``{key: summary}``.

    Finished runs (same key in their ``reproduce.json``) are not trained again; with
    ``jobs > 1`` the runs train in spawned processes, each with ``cores // jobs`` threads.

    Args:
        grid: the experiment grid.
        data_dir: the dataset directory.
        out: the output directory (runs go to ``out/runs/<slug>``).
        jobs: runs trained at once.
        quick_overrides: nested settings applied to every run (the quick mode), or None.
        progress: show a progress bar over the runs.

    Returns:
        ``{run key: summary}`` of every run (:func:`execute`).
    """
    from tqdm import tqdm

    from emorec.config import config_path_for
    from emorec.config.base import flatten

    out = Path(out)
    overrides = tuple(flatten(quick_overrides)) if quick_overrides else ()
    runs = grid.runs()
    jobs_list = [Job(run, str(out / RUNS_DIR / run.slug), str(data_dir), str(config_path_for(grid.config)),
                     overrides) for run in runs]
    pending = [j for j in jobs_list if (run_summary(j.run_dir) or {}).get("key") != j.run.key]
    logger.info("grid %s: %d runs, %d to train (%d finished)", grid.name, len(jobs_list), len(pending),
                len(jobs_list) - len(pending))
    results = {j.run.key: run_summary(j.run_dir) for j in jobs_list if j not in pending}
    bar = tqdm(total=len(pending), desc="grid runs", unit="run", disable=not progress or not pending)
    try:
        if jobs <= 1 or len(pending) <= 1:
            for job in pending:
                results[job.run.key] = execute(job)
                bar.update(1)
        else:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(min(jobs, len(pending)), mp_context=context,
                                                        initializer=_init_worker, initargs=(threads,)) as pool:
                futures = {pool.submit(execute, job): job for job in pending}
                for future in concurrent.futures.as_completed(futures):
                    results[futures[future].run.key] = future.result()
                    bar.update(1)
    finally:
        bar.close()
    return results


def run_fusions(grid: Grid, data_dir, out, results: dict, progress: bool = True) -> dict:
    """Late fusion of each fusion table's finished members, per dimension: ``{(table, dim): info or reason}``.

    Args:
        grid: the experiment grid (its ``fusion`` tables).
        data_dir: the dataset directory.
        out: the output directory (fusions go to ``out/fusion/<table>-<target>``).
        results: :func:`run_grid` output.
        progress: show progress bars.

    Returns:
        ``{(table id, target): fusion info}`` (:func:`emorec.fusion.fuse_runs`, or the stored
        ``fusion.json`` of the same runs), or a string saying why there is none (fewer than two
        finished members, or the fusion's error).
    """
    from emorec.fusion import fuse_runs

    fusions = {}
    for table in grid.tables:
        if table.kind != "fusion":
            continue
        for target, members in table.members.items():
            dirs = [results[m.key]["run_dir"] for m in members
                    if isinstance(m, RunSpec) and "error" not in (results.get(m.key) or {"error": 1})]
            place = Path(out) / FUSION_DIR / f"{table.id}-{target}"
            if len(dirs) < 2:
                fusions[(table.id, target)] = f"fewer than two member runs ({len(dirs)})"
                continue
            previous = place / "fusion.json"
            if previous.is_file():
                info = json.loads(previous.read_text())
                if [r["run_dir"] for r in info["runs"]] == dirs:
                    fusions[(table.id, target)] = info
                    continue
            try:
                fusions[(table.id, target)] = fuse_runs(dirs, data_dir, place, export=False, progress=progress)
            except EmorecError as exc:
                fusions[(table.id, target)] = f"fusion failed: {exc}"
    return fusions

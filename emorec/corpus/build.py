"""Building an emorec TFRecord dataset from recording sources (``emorec build``, ``python -m tfrecords_tools.build``).

One shard per recording, ``OUT/<partition>/<recording_id>.tfrecord``, each
written to a temporary name and renamed when complete; ``OUT/manifest.json``
is rewritten atomically after every recording, so a killed build keeps its
finished recordings, and says ``complete: false`` with the recordings still
``missing`` until the last one is written. A rerun skips recordings whose
shard matches the manifest (size and SHA-256) under the same options, removes
temporary files left by a killed run and rebuilds whatever is missing or
damaged. One build at a time holds ``OUT/.emorec-build.lock``
(:mod:`emorec.corpus.lock`); a full disk stops the build with
``<path>: no space left on device``.

Feature sets (``BuildOptions.features``, :mod:`emorec.corpus.features`):
released files are read and checked before anything is written; the video
sets' models are fitted on the training partition into
``OUT/feature_models/`` before the first shard; each shard stores its
recording's rows and the manifest its per-set statistics. A change in the sets
(another model, other released columns) rebuilds every shard.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import json
import logging
import multiprocessing
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from emorec.corpus.lock import LOCK_NAME, build_lock
from emorec.errors import ConfigError, DatasetError
from emorec.features.sets import MODELS_DIR
from emorec.manifest import (
    MANIFEST_NAME,
    DatasetManifest,
    ShardInfo,
    default_file_mode,
    file_sha256,
    manifest_path,
    read_manifest,
    write_manifest,
)
from emorec.media.audio import Moments
from emorec.recording import BuildOptions, RecordingSource, prepare_recording
from emorec.schema import PARTITIONS, SchemaError, encode_window
from emorec.windows import iter_windows

logger = logging.getLogger(__name__)

SHARD_SUFFIX = ".tfrecord"
CACHE_DIR = ".cache"
# How build_dataset runs recordings side by side (its ``parallel`` argument).
PARALLEL_KINDS = ("processes", "threads")
# "<rid>: face found in K of N frames (P%)" - always written for video, read back by the summary.
_FACES_LINE = re.compile(r": face found in (\d+) of (\d+) frames")
# Write failures that are the storage's, not a bug: reported as "<path>: <what>", exit status 2.
_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large for its file system",
}


def storage_error(path, exc: BaseException) -> DatasetError | None:
    """The DatasetError for a write that failed because the storage is full (or read-only), else None.

    Both ``OSError`` (Python's writes) and TensorFlow's ``ResourceExhaustedError``
    (the TFRecord writer's ENOSPC and EDQUOT) are recognised.

    Args:
        path: the file being written, named first in the message.
        exc: the exception the write raised.

    Returns:
        ``DatasetError("<path>: no space left on device; ...")``, or None for any other exception.
    """
    what = None
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        what = _STORAGE_ERRNOS[exc.errno]
    else:
        tf = sys.modules.get("tensorflow")
        if tf is not None and isinstance(exc, tf.errors.ResourceExhaustedError):
            text = str(getattr(exc, "message", exc)).lower()
            what = _STORAGE_ERRNOS[errno.EDQUOT if "quota" in text else errno.ENOSPC]
    if what is None:
        return None
    fix = "free some space" if what in (_STORAGE_ERRNOS[errno.ENOSPC], _STORAGE_ERRNOS[errno.EDQUOT]) \
        else "fix that"
    return DatasetError(
        f"{path}: {what}; the build stopped, keeping the recordings it finished (manifest.json "
        f"lists the missing ones): {fix} and rerun the same command to finish it"
    )


@contextlib.contextmanager
def _storage_errors(path):
    """Turn a full disk (or quota, read-only file system) while writing ``path`` into a DatasetError."""
    try:
        yield
    except Exception as exc:
        error = storage_error(path, exc)
        if error is None:
            raise
        raise error from exc


def _write_manifest(out: Path, manifest: DatasetManifest) -> None:
    with _storage_errors(manifest_path(out)):
        write_manifest(out, manifest)


def shard_relpath(source: RecordingSource) -> str:
    """Path of a recording's shard inside the dataset directory.

    Args:
        source: the recording (its partition and id are read).

    Returns:
        ``<partition>/<recording id>.tfrecord``, relative, with ``/``.
    """
    return f"{source.partition}/{source.recording_id}{SHARD_SUFFIX}"


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _emorec_files(out: Path) -> list[Path]:
    """Files a build writes in ``out`` (shards, temporary files, the manifest, feature models), cache excluded."""
    files = [p for p in out.iterdir() if p.is_file() and (p.name == MANIFEST_NAME or _is_temp(p.name))]
    models = out / MODELS_DIR
    if models.is_dir():
        files += [p for p in models.iterdir() if p.is_file() and (p.suffix == ".npz" or _is_temp(p.name))]
    for partition in PARTITIONS:
        folder = out / partition
        if folder.is_dir():
            files += [
                p for p in folder.iterdir()
                if p.is_file() and (p.suffix == SHARD_SUFFIX or _is_temp(p.name))
            ]
    return files


def _only_emorec_files(out: Path) -> bool:
    """True if ``out`` holds nothing but what a build writes (e.g. after a killed first run)."""
    owned = set(_emorec_files(out))
    for entry in out.iterdir():
        if entry.name == CACHE_DIR and entry.is_dir():
            continue
        if entry.name == LOCK_NAME:  # a build's lock (maybe left by a killed one)
            continue
        if entry.is_dir() and (entry.name in PARTITIONS or entry.name == MODELS_DIR):
            if all(p in owned for p in entry.iterdir()):
                continue
            return False
        if entry not in owned:
            return False
    return True


def check_not_foreign(out: Path) -> None:
    """Refuse an existing, non-empty folder that is not an emorec dataset (never overwrite user files).

    Args:
        out: the output directory (a missing one passes).

    Raises:
        ConfigError: ``out`` holds files other than emorec's and no manifest.
    """
    if not out.is_dir() or manifest_path(out).is_file() or _only_emorec_files(out):
        return
    raise ConfigError(
        f"{out}: exists, is not empty and is not an emorec dataset (no {MANIFEST_NAME}); "
        "choose a new or empty directory (emorec never overwrites other files)"
    )


def make_output_dir(out: Path) -> None:
    """Create ``out`` if needed and check that files can be written there and that it is not foreign.

    Args:
        out: the output directory.

    Raises:
        ConfigError: it cannot be created or written to, or it is foreign
            (:func:`check_not_foreign`).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test.", suffix=".tmp")
        probe.close()
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the output directory ({exc.strerror or exc})") from exc
    check_not_foreign(out)


def prepare_output(out: Path, options: dict, force: bool) -> DatasetManifest:
    """Clean the output directory (the caller holds its lock); return the manifest to resume from.

    With ``force``, every emorec file in ``out`` is deleted; otherwise only temporary files left
    by a killed build are, and the existing manifest (if any) is resumed from.

    Args:
        out: the output directory.
        options: the build's options as stored in the manifest.
        force: start again from nothing.

    Returns:
        An empty manifest with ``options``, or the existing one to resume.

    Raises:
        ConfigError: a malformed manifest or one of another schema version, or one built with
            other options.
    """
    has_manifest = manifest_path(out).is_file()
    if force:
        for path in _emorec_files(out):
            path.unlink()
        return DatasetManifest(options=options)
    for path in _emorec_files(out):
        if _is_temp(path.name):
            path.unlink()  # left by a killed build
    if not has_manifest:
        return DatasetManifest(options=options)
    try:
        manifest = read_manifest(out)
    except SchemaError as exc:
        raise ConfigError(f"{exc}") from exc
    if manifest.options != options:
        changed = sorted(k for k in set(options) | set(manifest.options)
                         if options.get(k) != manifest.options.get(k))
        details = "; ".join(
            f"{k}: {manifest.options.get(k)!r} -> {options.get(k)!r}" for k in changed
        )
        raise ConfigError(
            f"{manifest_path(out)}: the dataset was built with other options ({details}); "
            "rerun with --force to rebuild it all, or choose another output directory"
        )
    return manifest


def _shard_is_current(out: Path, info: ShardInfo | None, source: RecordingSource) -> bool:
    """True if the manifest's shard for ``source`` exists with the recorded size and checksum."""
    if info is None or info.path != shard_relpath(source):
        return False
    if info.subject_id != source.subject_id or info.has_labels != (source.labels is not None):
        return False
    path = out / info.path
    return path.is_file() and path.stat().st_size == info.bytes and file_sha256(path) == info.sha256


@dataclasses.dataclass
class ShardResult:
    """What a worker hands back: the manifest entry plus face statistics."""

    shard: ShardInfo
    faces_found: int
    video_frames: int


def build_shard(
    source: RecordingSource,
    options: BuildOptions,
    out: Path,
    cache_dir: Path | None,
    progress: bool = True,
    models=None,
) -> ShardResult:
    """Write one recording's shard (temporary file, then rename) and describe it.

    ``models`` are the video feature sets' fitted models
    (:class:`~emorec.corpus.features.FeatureModels`), when the build extracts them.

    Args:
        source: the recording.
        options: the build options.
        out: the dataset directory.
        cache_dir: cache for decoded media and faces, or None.
        progress: show progress bars.
        models: the fitted feature models, or None.

    Returns:
        The shard's manifest entry and its face statistics.

    Raises:
        MediaError, LabelError, AlignmentError: the recording cannot be used.
        DatasetError: the disk is full (or the quota exceeded) while writing it.
    """
    with _storage_errors(out / shard_relpath(source)):
        return _build_shard(source, options, out, cache_dir, progress, models)


def _with_features(frames, features: dict):
    """The frames with their rows of every feature set attached."""
    for i, frame in enumerate(frames):
        frame.features = {name: values[i] for name, values in features.items()}
        yield frame


def _build_shard(source, options, out, cache_dir, progress, models=None) -> ShardResult:
    import tensorflow as tf

    from emorec.corpus.features import FeatureModels, recording_features
    from emorec.feature_norm import FeatureMoments

    prepared = prepare_recording(source, options, cache_dir=cache_dir, progress=progress)
    features, feature_report = {}, []
    if options.features.requested:
        features, feature_report = recording_features(prepared, options.features, models or FeatureModels())
    relpath = shard_relpath(source)
    final = out / relpath
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    windows = found = 0
    moments = Moments() if prepared.stores_audio else None
    info = dataclasses.replace(prepared.info, feature_dims=tuple((n, v.shape[1]) for n, v in features.items()))

    def counted(frames):
        # Per frame, once (overlapping windows repeat frames): faces found, and the statistics of the
        # audio as stored, for read-time normalisation (one pass, no extra read).
        nonlocal found
        for frame in frames:
            if moments is not None:
                moments.add(frame.audio)
            found += int(frame.face_found)
            yield frame

    try:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            frames = counted(prepared.frames(progress=progress))
            if features:
                frames = _with_features(frames, features)
            for record in iter_windows(frames, info, options.window_frames, options.hop_frames):
                writer.write(encode_window(record))
                windows += 1
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, default_file_mode())  # mkstemp makes it private; a shard is ordinary data
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report = list(prepared.report) + feature_report
    video_frames = prepared.num_frames if prepared.faces is not None else 0
    if video_frames and not prepared.stores_video:
        # The video was read for its features only: count the track's faces on the frame grid.
        track = prepared.faces.found
        found = int(sum(int(track[min(i, len(track) - 1)]) for i in range(video_frames)))
    if video_frames:
        report.append(
            f"{source.recording_id}: face found in {found} of {video_frames} frames "
            f"({100.0 * found / video_frames:.1f}%)"
        )
    shard = ShardInfo(
        recording_id=source.recording_id,
        partition=source.partition,
        subject_id=source.subject_id,
        path=relpath,
        windows=windows,
        frames=prepared.num_frames,
        has_labels=prepared.labels is not None,
        bytes=final.stat().st_size,
        sha256=file_sha256(final),
        report=report,
        audio_mean=None if moments is None else float(moments.mean),
        audio_std=None if moments is None else float(moments.std),
        feature_stats=_feature_stats(features, FeatureMoments) if features else None,
    )
    return ShardResult(shard, found, video_frames)


def _feature_stats(features: dict, moments_class) -> dict:
    """Count, mean and standard deviation of every feature set's rows (the recording's real frames)."""
    out = {}
    for name, values in features.items():
        moments = moments_class(values.shape[1])
        moments.add(values)
        out[name] = moments.to_dict()
    return out


def build_dataset(
    sources: Sequence[RecordingSource],
    out,
    options: BuildOptions,
    source_name: str,
    *,
    force: bool = False,
    jobs: int = 1,
    cache_dir=None,
    progress: bool = True,
    root=None,
    parallel: str = "processes",
) -> DatasetManifest:
    """Build (or resume) the dataset in ``out`` from ``sources``; return its manifest.

    Args:
        sources: the recordings to build.
        out: the dataset directory (created; an existing emorec dataset is resumed).
        options: how recordings become windows (stored in the manifest).
        source_name: the adapter's name, stored in the manifest's options.
        force: delete this dataset's shards and manifest first and rebuild everything.
        jobs: recordings built in parallel.
        cache_dir: the face-detection cache (default ``OUT/.cache/faces``).
        progress: show progress bars.
        root: the corpus folder (released feature paths are stored relative to it).
        parallel: ``"processes"`` (each pays a TensorFlow import, a few seconds, then runs
            without sharing the interpreter) or ``"threads"`` (no start-up cost; MTCNN, the
            decoders and the encoders release the interpreter's lock for much of their work,
            but feature extractors may not be thread-safe, so it refuses feature sets).

    Returns:
        The manifest written to ``OUT/manifest.json``.

    Raises:
        ConfigError: bad settings, a foreign output directory, a dataset built with other options, or
            a feature set that cannot be computed (dlib model missing, no training videos).
        MediaError, LabelError, AlignmentError: a recording that cannot be used (named in the message);
            for released feature files, raised before anything is written.
        BuildLockedError: another build is writing ``out`` (see :mod:`emorec.corpus.lock`).
        DatasetError: the disk filled up (``<path>: no space left on device``); the manifest
            then lists the recordings still missing, and a rerun finishes the build.
    """
    from emorec.corpus.features import check_feature_inputs, feature_models, feature_set_infos

    out = Path(out)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if parallel not in PARALLEL_KINDS:
        raise ConfigError(f"parallel must be one of {', '.join(PARALLEL_KINDS)}, got {parallel!r}")
    if parallel == "threads" and options.features.requested:
        raise ConfigError("parallel='threads' builds media only: feature extractors may not be thread-safe")
    opts = json.loads(json.dumps(options.manifest_options(source_name)))
    released = check_feature_inputs(sources, options.features, options.label_alignment, options.tolerance_s,
                                    root) if options.features.requested else {}
    make_output_dir(out)
    # Inner writes name their own file; this names the directory for any other (the lock, cleaning).
    with _storage_errors(out), build_lock(out):
        manifest = prepare_output(out, opts, force)
        cache = Path(cache_dir) if cache_dir is not None else out / CACHE_DIR / "faces"
        models, model_sha = feature_models(sources, options.features, out, options.face, options.face_size,
                                           cache, jobs, progress)
        infos = feature_set_infos(options.features, released, model_sha)
        return _build(sources, out, options, manifest, jobs, cache, progress, infos, models, parallel)


def _executor(parallel: str, workers: int) -> concurrent.futures.Executor:
    if parallel == "threads":
        return concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emorec-build")
    # spawn, not fork: the caller may already run TensorFlow's thread pools.
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    )


def _build(sources, out: Path, options, manifest: DatasetManifest, jobs, cache, progress, infos=None,
           models=None, parallel="processes"):
    """Build what ``manifest`` lacks (the caller holds the directory's lock)."""
    from tqdm import tqdm

    infos = infos or {}
    wanted = {s.recording_id: s for s in sources}
    on_disk = (manifest.is_complete, sorted(manifest.missing))
    todo = []
    dirty = False
    if manifest.shards and manifest.feature_sets != infos:
        # Other feature columns or a refitted model: every stored shard holds stale rows.
        logger.info("feature sets changed (%s -> %s): rebuilding every recording",
                    ", ".join(manifest.feature_sets) or "none", ", ".join(infos) or "none")
        for info in manifest.shards.values():
            (out / info.path).unlink(missing_ok=True)
        manifest.shards.clear()
        dirty = True
    manifest.feature_sets = dict(infos)
    for rid, info in list(manifest.shards.items()):
        if rid not in wanted or not _shard_is_current(out, info, wanted[rid]):
            # Stale or damaged: drop it now so the manifest never lists a bad shard.
            (out / info.path).unlink(missing_ok=True)
            del manifest.shards[rid]
            dirty = True
            if rid not in wanted:
                logger.info("removed %s: recording %s is no longer in the source", info.path, rid)
    for source in sources:
        if source.recording_id in manifest.shards:
            logger.info("skip %s (complete)", shard_relpath(source))
        else:
            todo.append(source)
    # Until the last recording is written the manifest says which ones are still missing. It is
    # first rewritten when the directory changes, so a build that fails before finishing any
    # recording leaves the directory (and a previous complete manifest) as it was.
    manifest.missing = sorted(s.recording_id for s in todo)
    manifest.complete = not todo
    if dirty:
        _write_manifest(out, manifest)

    def finish(result: ShardResult) -> None:
        manifest.shards[result.shard.recording_id] = result.shard
        manifest.missing.remove(result.shard.recording_id)
        manifest.complete = not manifest.missing
        _write_manifest(out, manifest)
        bar.update(1)

    bar = tqdm(total=len(todo), desc="recordings", unit="rec", disable=not progress or not todo)
    try:
        if jobs == 1 or len(todo) <= 1:
            for source in todo:
                finish(build_shard(source, options, out, cache, progress, models))
        else:
            with _executor(parallel, min(jobs, len(todo))) as pool:
                futures = [pool.submit(build_shard, s, options, out, cache, False, models) for s in todo]
                done = set()
                try:
                    for future in concurrent.futures.as_completed(futures):
                        finish(future.result())
                        done.add(future)
                except BaseException:
                    for future in futures:
                        future.cancel()
                    # Keep what the running workers finish: their shards are complete.
                    for future in futures:
                        if future not in done and not future.cancelled() and future.exception() is None:
                            finish(future.result())
                    raise
    finally:
        bar.close()
    if not dirty and not todo and on_disk != (True, []):
        # An earlier build stopped early, and what it missed is no longer asked for.
        _write_manifest(out, manifest)
    return manifest


def summarize(manifest: DatasetManifest) -> str:
    """Per-partition table (recordings, subjects, windows, frames, faces found) and reports.

    Args:
        manifest: the dataset's manifest.

    Returns:
        The text: one row per partition, a line of build options, the feature sets, and the
        shards' reports other than complete face counts (lines joined by newlines).
    """
    lines = [
        f"{'partition':<10}{'recordings':>11}{'subjects':>10}{'windows':>9}{'frames':>10}"
        f"{'faces':>8}  labels"
    ]
    reports: list[str] = []
    for partition, info in manifest.partition_summary().items():
        shards = manifest.shards_for(partition)
        found = total = 0
        for shard in shards:
            for line in shard.report:
                match = _FACES_LINE.search(line)
                if match:
                    found += int(match.group(1))
                    total += int(match.group(2))
                if not match or match.group(1) != match.group(2):
                    reports.append(line)
        faces = f"{100.0 * found / total:.1f}%" if total else "-"
        lines.append(
            f"{partition:<10}{len(info['recordings']):>11}{len(info['subjects']):>10}"
            f"{info['windows']:>9}{info['frames']:>10}{faces:>8}  "
            f"{'yes' if info['has_labels'] else 'no'}"
        )
    opts = manifest.options
    lines.append(
        f"window {opts['window']} s ({opts['window_frames']} frames), hop {opts['hop']} s, "
        f"modalities {','.join(opts['modalities']) or 'none'}, audio_norm {opts['audio_norm']}, "
        f"label_alignment {opts['label_alignment']}"
    )
    if manifest.feature_sets:
        lines.append("feature sets: " + ", ".join(
            f"{f.name} ({f.dim}, {f.source})" for f in manifest.feature_sets.values()))
    if reports:
        lines.append(f"reports ({len(reports)}):")
        lines += [f"  {line}" for line in reports]
    else:
        lines.append("reports: none (all lengths matched)")
    return "\n".join(lines)

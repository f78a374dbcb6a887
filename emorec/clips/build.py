"""Clips (AFEW-style videos with one class each) -> clip TFRecord shards and ``clips_manifest.json``.

:func:`prepare_clip` turns one video into a :class:`~emorec.clips.schema.ClipRecord`:

1. Every frame is decoded at the clip's own rate (no 40 ms grid: a clip is
   classified whole and its frames are sampled later, see :mod:`emorec.clips.data`).
2. Faces are tracked with emorec's MTCNN tracker (:mod:`emorec.media.faces`):
   the largest face of each detection, interpolated and smoothed between
   keyframes, as Pini et al. keep the biggest face of a frame. The crop is the
   square around the face box with ``margin`` = 0.15 of the box's longer side
   added on every side (side = 1.3 x the box), resized to 160 x 160 and stored
   as a JPEG (quality 95). That is a little wider than FaceNet's
   ``align_dataset_mtcnn`` (32 px over a 160 px crop), to leave room for the
   training-time random crop and zoom. Frames where the tracker has no face
   (``face_found = 0``) hold the crop of the nearest found box.
3. The sound track is decoded, averaged to mono and resampled to 22 050 Hz
   (SoundNet's rate), stored once per clip, unscaled.

Bad input:

- a missing, corrupt or truncated video (fewer decodable frames than its
  header declares) raises :class:`MediaError` naming the file (with
  ``skip_bad=True`` the build records it in the manifest and goes on);
- a clip in which no face is found is kept: its frames hold the centred square
  of the frame, every ``face_found`` is 0 and a report line says so;
- a clip without a sound track is kept with ``has_audio = 0`` (the pipelines
  then give zero audio with ``audio_mask = 0``) and a report line;
- a clip shorter than ``min_frames`` (16, one C3D slice) is kept with a report
  line; the pipelines stretch it to 16 frames by repeating frames.

:func:`build_clip_dataset` writes ``OUT/<partition>/<partition>-NNNNN.tfrecord``
shards of ``clips_per_shard`` clips (32 by default) in clip-id order. For AFEW
(about 1 800 clips of 1-5 s, ~0.5-1 MB each once cropped) that gives shards of
~20-40 MB: large enough for sequential reads, small enough that a killed build
loses at most a minute or two of work, and 25 + 12 shards for Train and Val to
interleave and shuffle across. One shard per partition would make a
several-hundred-MB file that a kill throws away whole. Shards are written to a
temporary name and renamed; the manifest is rewritten atomically after every
shard, so a rerun skips complete shards (size and SHA-256 checked, same clips,
same options) and rebuilds the rest. Face detections are cached per video
under ``OUT/.cache/faces-native`` (not shared with the windowed datasets'
cache, whose detections are on the 40 ms grid).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from emorec.clips.manifest import (
    CLIP_MANIFEST_NAME,
    ClipInfo,
    ClipManifest,
    ClipShardInfo,
    clip_manifest_path,
    read_clip_manifest,
    write_clip_manifest,
)
from emorec.clips.schema import CLIP_FACE_SIZE, CLIP_SAMPLE_RATE, NO_LABEL, ClipRecord, encode_clip
from emorec.clips.source import ClipSource, check_clip_sources
from emorec.errors import ConfigError, MediaError
from emorec.manifest import default_file_mode, file_sha256
from emorec.schema import NUM_LANDMARKS, PARTITIONS, SchemaError

logger = logging.getLogger(__name__)

CLIP_FACE_MARGIN = 0.15
DEFAULT_CLIPS_PER_SHARD = 32
MIN_SLICE_FRAMES = 16  # one C3D input
DEFAULT_JPEG_QUALITY = 95
SHARD_SUFFIX = ".tfrecord"
CACHE_DIR = ".cache"
FACE_CACHE_DIR = "faces-native"


def default_clip_face_config():
    """The face tracker's settings for clips: its defaults with a 0.15 margin.

    Returns:
        A :class:`emorec.media.faces.FaceConfig` with ``margin`` :data:`CLIP_FACE_MARGIN`.
    """
    from emorec.media.faces import FaceConfig

    return FaceConfig(margin=CLIP_FACE_MARGIN)


@dataclasses.dataclass
class ClipBuildOptions:
    """How clips become records; stored in the manifest (a resume must use the same)."""

    face_size: int = CLIP_FACE_SIZE
    sample_rate: int = CLIP_SAMPLE_RATE
    clips_per_shard: int = DEFAULT_CLIPS_PER_SHARD
    min_frames: int = MIN_SLICE_FRAMES
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    face: object = dataclasses.field(default_factory=default_clip_face_config)

    def __post_init__(self):
        checks = (
            (self.face_size >= 8, f"face_size must be at least 8 pixels, got {self.face_size}"),
            (self.sample_rate >= 1000, f"sample_rate must be at least 1000 Hz, got {self.sample_rate}"),
            (self.clips_per_shard >= 1, f"clips_per_shard must be at least 1, got {self.clips_per_shard}"),
            (self.min_frames >= 1, f"min_frames must be at least 1, got {self.min_frames}"),
            (1 <= self.jpeg_quality <= 100, f"jpeg_quality must be in 1..100, got {self.jpeg_quality}"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"clip build options: {message}")

    def manifest_options(self, source: str, classes: Sequence[str]) -> dict:
        """The ``options`` block of the manifest for a build from adapter ``source``."""
        return json.loads(json.dumps({
            "source": source,
            "classes": list(classes),
            "face_size": int(self.face_size),
            "sample_rate": int(self.sample_rate),
            "clips_per_shard": int(self.clips_per_shard),
            "min_frames": int(self.min_frames),
            "jpeg_quality": int(self.jpeg_quality),
            "face_detection": dataclasses.asdict(self.face),
        }))


@dataclasses.dataclass
class PreparedClip:
    """A clip turned into its record, with the report lines of what was unusual about it."""

    source: ClipSource
    record: ClipRecord
    report: list[str]

    @property
    def num_frames(self) -> int:
        """Decoded video frames."""
        return self.record.num_frames

    @property
    def faces_found(self) -> int:
        """Frames with a face."""
        return self.record.faces_found

    @property
    def has_audio(self) -> bool:
        """Whether the clip has a sound track."""
        return self.record.audio is not None


def _frames(video: Path) -> Iterator[np.ndarray]:
    from emorec.media.video import iter_video_frames

    return (frame for _, frame in iter_video_frames(video))


def _detections(video: Path, config, cache_dir, detector, progress: bool):
    """The video's keyframe detections, read from or written to ``cache_dir`` (None: no cache)."""
    from emorec.media.faces import FaceDetections, cache_path, detect_keyframes

    path = None if cache_dir is None else cache_path(video, config, cache_dir, detector)
    if path is not None and path.is_file():
        try:
            return FaceDetections.load(path)
        except MediaError:
            logger.info("%s: unreadable face cache, detecting again", path)
    detections = detect_keyframes(_frames(video), config, detector, None, progress, str(video))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        detections.save(path)
    return detections


def _centre_box(frame: np.ndarray) -> np.ndarray:
    """The largest centred square of a frame as ``[x0, y0, x1, y1]``."""
    height, width = frame.shape[:2]
    side = min(height, width)
    x0, y0 = (width - side) / 2, (height - side) / 2
    return np.array([x0, y0, x0 + side, y0 + side], np.float64)


def _jpeg(crop: np.ndarray, quality: int, where: str) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(crop[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError(f"{where}: could not JPEG-encode a face crop")
    return data.tobytes()


def prepare_clip(
    source: ClipSource,
    options: ClipBuildOptions | None = None,
    *,
    cache_dir=None,
    detector=None,
    progress: bool = False,
) -> PreparedClip:
    """Decode, track and crop one clip's frames and read its sound (see the module docstring).

    Args:
        source: the clip.
        options: build options (default :class:`ClipBuildOptions`).
        cache_dir: folder of the per-video face detection cache; None detects without caching.
        detector: face detector (default: the process's MTCNN).
        progress: show a progress bar while detecting.

    Returns:
        The clip's record and report lines.

    Raises:
        MediaError: the video is missing, has no video stream, is corrupt or truncated,
            or its sound track cannot be decoded.
    """
    from emorec.media.audio import read_audio
    from emorec.media.faces import build_track, crop_face
    from emorec.media.video import iter_video_frames, probe_media, video_rate

    options = options or ClipBuildOptions()
    video = source.video
    cid = source.clip_id
    if not video.is_file():
        raise MediaError(f"{video}: no such video file (clip {cid})")
    info = probe_media(video)
    if not info.has_video:
        raise MediaError(f"{video}: has no video stream (clip {cid})")
    fps = video_rate(video)

    detections = _detections(video, options.face, cache_dir, detector, progress)
    track = build_track(detections, options.face, str(video)) if detections.ok.any() else None
    size = options.face_size
    faces: list[bytes] = []
    times: list[float] = []
    landmarks = np.zeros((detections.num_frames, NUM_LANDMARKS, 2), np.float32)
    found = np.zeros(detections.num_frames, np.int64)
    for i, (time, frame) in enumerate(iter_video_frames(video)):
        if i >= detections.num_frames:
            break
        if track is None:
            crop, _ = crop_face(frame, _centre_box(frame), np.zeros((NUM_LANDMARKS, 2)), size)
        else:
            crop, points = crop_face(frame, track.boxes[i], track.landmarks[i], size)
            landmarks[i] = np.nan_to_num(points)
            found[i] = track.found[i]
        faces.append(_jpeg(crop, options.jpeg_quality, str(video)))
        times.append(time)
    if len(faces) != detections.num_frames:
        raise MediaError(
            f"{video}: decoded {len(faces)} frames, the face detection saw {detections.num_frames}; "
            "did the file change?"
        )

    report = []
    n = len(faces)
    if track is None:
        report.append(
            f"{cid}: no face found in any of its {n} frames ({video}); kept with centred crops "
            "and face_found 0"
        )
    elif int(found.sum()) < n:
        report.append(f"{cid}: face found in {int(found.sum())} of {n} frames")
    audio = None
    if info.has_audio:
        audio = read_audio(video, options.sample_rate)
    else:
        report.append(f"{cid}: {video} has no sound track; kept with audio_mask 0")
    if n < options.min_frames:
        report.append(
            f"{cid}: {n} frames, fewer than the {options.min_frames} of a C3D slice; kept, "
            "its slices repeat frames"
        )
    record = ClipRecord(
        clip_id=cid,
        partition=source.partition,
        label=NO_LABEL if source.label is None else int(source.label),
        label_name=source.label_name,
        subject_id=source.subject_id,
        fps=float(fps),
        faces=faces,
        face_found=found,
        landmarks=landmarks,
        times=np.asarray(times, np.float32),
        audio=audio,
        face_size=size,
        sample_rate=options.sample_rate,
    )
    return PreparedClip(source, record, report)


def _clip_info(prepared: PreparedClip, shard: str) -> ClipInfo:
    record = prepared.record
    return ClipInfo(
        clip_id=record.clip_id,
        partition=record.partition,
        label=record.label,
        label_name=record.label_name,
        subject_id=record.subject_id,
        video=str(prepared.source.video),
        shard=shard,
        frames=record.num_frames,
        fps=record.fps,
        faces_found=record.faces_found,
        has_audio=record.audio is not None,
        audio_samples=0 if record.audio is None else len(record.audio),
        report=list(prepared.report),
    )


# --- shards -----------------------------------------------------------------------------


@dataclasses.dataclass
class ShardPlan:
    """The clips that go into one shard, in stored order."""

    path: str
    partition: str
    sources: list[ClipSource]


def plan_shards(sources: Sequence[ClipSource], clips_per_shard: int) -> list[ShardPlan]:
    """Cut each partition's clips (in id order) into shards of ``clips_per_shard``.

    Args:
        sources: the clips (any order).
        clips_per_shard: clips per shard (the last of a partition may hold fewer).

    Returns:
        The shards, partition by partition, named ``<partition>/<partition>-NNNNN.tfrecord``.
    """
    plans = []
    for partition in PARTITIONS:
        mine = sorted((s for s in sources if s.partition == partition), key=lambda s: s.clip_id)
        for k, start in enumerate(range(0, len(mine), clips_per_shard)):
            path = f"{partition}/{partition}-{k:05d}{SHARD_SUFFIX}"
            plans.append(ShardPlan(path, partition, mine[start : start + clips_per_shard]))
    return plans


def build_shard(
    plan: ShardPlan,
    options: ClipBuildOptions,
    out: Path,
    cache_dir: Path | None,
    *,
    detector=None,
    skip_bad: bool = False,
    progress: bool = False,
) -> tuple[ClipShardInfo, list[ClipInfo]]:
    """Write one shard (temporary file, then rename); return its manifest entries.

    Args:
        plan: the shard's path and clips.
        options: build options.
        out: the dataset directory.
        cache_dir: the face detection cache (None: none).
        detector: face detector (default MTCNN).
        skip_bad: record a clip that raises MediaError in the shard's ``skipped`` instead of failing.
        progress: progress bars while detecting.

    Returns:
        The shard's entry and its clips' entries.

    Raises:
        MediaError: a clip cannot be read (unless ``skip_bad``).
    """
    import tensorflow as tf

    final = out / plan.path
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    clips: list[ClipInfo] = []
    skipped: dict[str, str] = {}
    try:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for source in plan.sources:
                try:
                    prepared = prepare_clip(
                        source, options, cache_dir=cache_dir, detector=detector, progress=progress
                    )
                except MediaError as exc:
                    if not skip_bad:
                        raise
                    logger.warning("skipped clip %s: %s", source.clip_id, exc)
                    skipped[source.clip_id] = str(exc)
                    continue
                writer.write(encode_clip(prepared.record))
                clips.append(_clip_info(prepared, plan.path))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, default_file_mode())  # mkstemp makes it private; a shard is ordinary data
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    shard = ClipShardInfo(
        path=plan.path,
        partition=plan.partition,
        clip_ids=[c.clip_id for c in clips],
        bytes=final.stat().st_size,
        sha256=file_sha256(final),
        skipped=skipped,
    )
    return shard, clips


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _owned_files(out: Path) -> list[Path]:
    """Files a clip build writes in ``out`` (shards, temporary files, the manifest), cache excluded."""
    files = [p for p in out.iterdir() if p.is_file() and (p.name == CLIP_MANIFEST_NAME or _is_temp(p.name))]
    for partition in PARTITIONS:
        folder = out / partition
        if folder.is_dir():
            files += [p for p in folder.iterdir()
                      if p.is_file() and (p.suffix == SHARD_SUFFIX or _is_temp(p.name))]
    return files


def _check_not_foreign(out: Path) -> None:
    """Refuse an existing, non-empty folder that holds anything but a clip dataset's files."""
    if not out.is_dir() or clip_manifest_path(out).is_file():
        return
    owned = set(_owned_files(out))
    for entry in out.iterdir():
        if entry.name == CACHE_DIR and entry.is_dir():
            continue
        if entry.is_dir() and entry.name in PARTITIONS and all(p in owned for p in entry.iterdir()):
            continue
        if entry not in owned:
            raise ConfigError(
                f"{out}: exists, is not empty and is not a clip dataset (no {CLIP_MANIFEST_NAME}); "
                "choose a new or empty directory (emorec never overwrites other files)"
            )


def _prepare_output(out: Path, options: dict, classes: list[str], force: bool) -> ClipManifest:
    """Create or check the output directory; return the manifest to resume from."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=out, prefix=".write-test.", suffix=".tmp").close()
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the output directory ({exc.strerror or exc})") from exc
    _check_not_foreign(out)
    if force:
        for path in _owned_files(out):
            path.unlink()
        return ClipManifest(options=options, classes=classes)
    for path in _owned_files(out):
        if _is_temp(path.name):
            path.unlink()  # left by a killed build
    if not clip_manifest_path(out).is_file():
        return ClipManifest(options=options, classes=classes)
    try:
        manifest = read_clip_manifest(out)
    except SchemaError as exc:
        raise ConfigError(str(exc)) from exc
    if manifest.options != options:
        changed = sorted(k for k in set(options) | set(manifest.options)
                         if options.get(k) != manifest.options.get(k))
        details = "; ".join(f"{k}: {manifest.options.get(k)!r} -> {options.get(k)!r}" for k in changed)
        raise ConfigError(
            f"{clip_manifest_path(out)}: the dataset was built with other options ({details}); "
            "rerun with --force to rebuild it all, or choose another output directory"
        )
    return manifest


def _shard_is_current(out: Path, manifest: ClipManifest, plan: ShardPlan, skip_bad: bool) -> bool:
    """True if the manifest's shard at ``plan.path`` holds exactly the planned clips, intact."""
    info = manifest.shards.get(plan.path)
    if info is None or info.partition != plan.partition:
        return False
    if info.skipped and not skip_bad:
        return False  # rebuild, so that the bad clip raises its error this time
    stored = list(info.clip_ids) + list(info.skipped)
    if sorted(stored) != sorted(s.clip_id for s in plan.sources):
        return False
    for source in plan.sources:
        clip = manifest.clips.get(source.clip_id)
        if source.clip_id in info.skipped:
            continue
        if clip is None or (clip.video, clip.label, clip.subject_id) != (
            str(source.video), NO_LABEL if source.label is None else source.label, source.subject_id
        ):
            return False
    path = out / info.path
    return path.is_file() and path.stat().st_size == info.bytes and file_sha256(path) == info.sha256


def _forget_shard(manifest: ClipManifest, path: str) -> None:
    info = manifest.shards.pop(path, None)
    if info is not None:
        for clip_id in info.clip_ids:
            manifest.clips.pop(clip_id, None)


def _worker_init() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_clip_dataset(
    sources: Sequence[ClipSource],
    out,
    options: ClipBuildOptions | None = None,
    source_name: str = "clips",
    *,
    force: bool = False,
    jobs: int = 1,
    cache_dir=None,
    detector=None,
    skip_bad: bool = False,
    progress: bool = True,
) -> ClipManifest:
    """Build (or resume) a clip dataset in ``out`` from ``sources``; return its manifest.

    Args:
        sources: the clips (from an adapter); ids unique, one class list.
        out: the dataset directory (created; an unrelated non-empty folder is refused).
        options: build options (default :class:`ClipBuildOptions`).
        source_name: the adapter's name, stored in the options (``afew``, ``clips``, ``demo_clips``).
        force: delete this dataset's shards and manifest first and rebuild everything.
        jobs: shards built in parallel processes.
        cache_dir: face detection cache (default ``OUT/.cache/faces-native``).
        detector: face detector (default MTCNN; must pickle when ``jobs`` > 1).
        skip_bad: skip unreadable clips (listed in the manifest) instead of failing.
        progress: progress bars.

    Returns:
        The manifest as written.

    Raises:
        ConfigError: bad settings, a foreign output folder, or a dataset built with other options.
        MediaError: an unreadable clip (unless ``skip_bad``); the shards finished before it are kept.
    """
    from tqdm import tqdm

    options = options or ClipBuildOptions()
    out = Path(out)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    sources = check_clip_sources(sources, str(out))
    classes = list(sources[0].classes)
    manifest = _prepare_output(out, options.manifest_options(source_name, classes), classes, force)
    cache = Path(cache_dir) if cache_dir is not None else out / CACHE_DIR / FACE_CACHE_DIR

    plans = plan_shards(sources, options.clips_per_shard)
    planned = {p.path for p in plans}
    dirty = False
    for path in list(manifest.shards):
        if path not in planned:
            (out / path).unlink(missing_ok=True)
            _forget_shard(manifest, path)
            dirty = True
            logger.info("removed %s: no longer part of the source", path)
    todo = []
    for plan in plans:
        if _shard_is_current(out, manifest, plan, skip_bad):
            logger.info("skip %s (complete)", plan.path)
            continue
        if plan.path in manifest.shards:
            # Stale or damaged: drop it now so the manifest never lists a bad shard.
            _forget_shard(manifest, plan.path)
            dirty = True
        todo.append(plan)
    if dirty:
        write_clip_manifest(out, manifest)

    def finish(result: tuple[ClipShardInfo, list[ClipInfo]]) -> None:
        shard, clips = result
        manifest.shards[shard.path] = shard
        for clip in clips:
            manifest.clips[clip.clip_id] = clip
        write_clip_manifest(out, manifest)
        bar.update(len(shard.clip_ids) + len(shard.skipped))

    kwargs = dict(detector=detector, skip_bad=skip_bad)
    total = sum(len(p.sources) for p in todo)
    bar = tqdm(total=total, desc="clips", unit="clip", disable=not progress or not todo)
    try:
        if jobs == 1 or len(todo) <= 1:
            for plan in todo:
                finish(build_shard(plan, options, out, cache, progress=False, **kwargs))
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(
                max_workers=min(jobs, len(todo)), mp_context=context, initializer=_worker_init
            ) as pool:
                futures = [pool.submit(build_shard, p, options, out, cache, **kwargs) for p in todo]
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
    return manifest


def summarize_clip_dataset(manifest: ClipManifest) -> str:
    """A per-partition table (clips, frames, faces, clips without face or sound, short, skipped) and the reports.

    Args:
        manifest: a clip dataset's manifest.

    Returns:
        Printable lines.
    """
    lines = [
        f"{'partition':<10}{'clips':>7}{'shards':>8}{'frames':>9}{'faces':>8}{'no face':>9}"
        f"{'no audio':>10}{'short':>7}{'skipped':>9}  labelled"
    ]
    for partition, info in manifest.partition_summary().items():
        faces = f"{100.0 * info['faces_found'] / info['frames']:.1f}%" if info["frames"] else "-"
        lines.append(
            f"{partition:<10}{info['clips']:>7}{info['shards']:>8}{info['frames']:>9}{faces:>8}"
            f"{info['clips_without_face']:>9}{info['clips_without_audio']:>10}"
            f"{info['short_clips']:>7}{info['skipped']:>9}  {info['labelled']}/{info['clips']}"
        )
    lines.append("classes: " + ", ".join(manifest.classes))
    for partition, info in manifest.partition_summary().items():
        counts = ", ".join(f"{k} {v}" for k, v in info["class_counts"].items())
        lines.append(f"  {partition}: {counts}")
    reports = [line for p in PARTITIONS for c in manifest.clips_for(p) for line in c.report]
    reports += [f"skipped {cid}: {msg}" for s in manifest.shards.values() for cid, msg in s.skipped.items()]
    if reports:
        lines.append(f"reports ({len(reports)}):")
        lines += [f"  {line}" for line in reports]
    else:
        lines.append("reports: none (every clip has a face in every frame and a sound track)")
    return "\n".join(lines)

"""Build an emorec TFRecord dataset: ``python -m tfrecords_tools.build {recola,manifest,demo} ...``.

One shard per recording, ``OUT/<partition>/<recording_id>.tfrecord``, each
written to a temporary name and renamed when complete; ``OUT/manifest.json``
is rewritten atomically after every recording, so a killed build keeps its
finished recordings. A rerun skips recordings whose shard matches the
manifest (size and SHA-256) under the same options, removes temporary files
left by a killed run and rebuilds whatever is missing or damaged.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from emorec.errors import ConfigError, EmorecError
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
from emorec.recording import (
    DEFAULT_TOLERANCE_S,
    DEFAULT_WINDOW_S,
    BuildOptions,
    RecordingSource,
    prepare_recording,
)
from emorec.schema import (
    DEFAULT_FACE_SIZE,
    DEFAULT_LABEL_ALIGNMENT,
    LABEL_ALIGNMENTS,
    MODALITIES,
    PARTITIONS,
    SchemaError,
    encode_window,
)
from emorec.windows import iter_windows

SHARD_SUFFIX = ".tfrecord"
CACHE_DIR = ".cache"
# "<rid>: face found in K of N frames (P%)" - always written for video, read back by the summary.
_FACES_LINE = re.compile(r": face found in (\d+) of (\d+) frames")


def shard_relpath(source: RecordingSource) -> str:
    """Path of a recording's shard inside the dataset directory."""
    return f"{source.partition}/{source.recording_id}{SHARD_SUFFIX}"


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _emorec_files(out: Path) -> list[Path]:
    """Files a build writes in ``out`` (shards, temporary files, the manifest), cache excluded."""
    files = [p for p in out.iterdir() if p.is_file() and (p.name == MANIFEST_NAME or _is_temp(p.name))]
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
        if entry.is_dir() and entry.name in PARTITIONS:
            if all(p in owned for p in entry.iterdir()):
                continue
            return False
        if entry not in owned:
            return False
    return True


def check_not_foreign(out: Path) -> None:
    """Refuse an existing, non-empty folder that is not an emorec dataset (never overwrite user files)."""
    if not out.is_dir() or manifest_path(out).is_file() or _only_emorec_files(out):
        return
    raise ConfigError(
        f"{out}: exists, is not empty and is not an emorec dataset (no {MANIFEST_NAME}); "
        "choose a new or empty directory (emorec never overwrites other files)"
    )


def prepare_output(out: Path, options: dict, force: bool) -> DatasetManifest:
    """Create or check the output directory; return the manifest to resume from."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test.", suffix=".tmp")
        probe.close()
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the output directory ({exc.strerror or exc})") from exc
    check_not_foreign(out)
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
) -> ShardResult:
    """Write one recording's shard (temporary file, then rename) and describe it."""
    import tensorflow as tf

    prepared = prepare_recording(source, options, cache_dir=cache_dir, progress=progress)
    relpath = shard_relpath(source)
    final = out / relpath
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    windows = found = 0
    try:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            frames = prepared.frames(progress=progress)
            for record in iter_windows(frames, prepared.info, options.window_frames, options.hop_frames):
                writer.write(encode_window(record))
                windows += 1
                if record.face_found is not None:
                    found += int(record.face_found.sum())
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, default_file_mode())  # mkstemp makes it private; a shard is ordinary data
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report = list(prepared.report)
    video_frames = prepared.num_frames if prepared.faces is not None else 0
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
    )
    return ShardResult(shard, found, video_frames)


def _worker_init() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    log: Callable[[str], None] | None = None,
) -> DatasetManifest:
    """Build (or resume) the dataset in ``out`` from ``sources``; return its manifest."""
    from tqdm import tqdm

    out = Path(out)
    log = log or (lambda _msg: None)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    opts = json.loads(json.dumps(options.manifest_options(source_name)))
    manifest = prepare_output(out, opts, force)
    cache = Path(cache_dir) if cache_dir is not None else out / CACHE_DIR / "faces"

    wanted = {s.recording_id: s for s in sources}
    todo = []
    dirty = False
    for rid, info in list(manifest.shards.items()):
        if rid not in wanted or not _shard_is_current(out, info, wanted[rid]):
            # Stale or damaged: drop it now so the manifest never lists a bad shard.
            (out / info.path).unlink(missing_ok=True)
            del manifest.shards[rid]
            dirty = True
            if rid not in wanted:
                log(f"removed {info.path}: recording {rid} is no longer in the source")
    for source in sources:
        if source.recording_id in manifest.shards:
            log(f"skip {shard_relpath(source)} (complete)")
        else:
            todo.append(source)
    if dirty:
        write_manifest(out, manifest)

    def finish(result: ShardResult) -> None:
        manifest.shards[result.shard.recording_id] = result.shard
        write_manifest(out, manifest)
        bar.update(1)

    bar = tqdm(total=len(todo), desc="recordings", unit="rec", disable=not progress or not todo)
    try:
        if jobs == 1 or len(todo) <= 1:
            for source in todo:
                finish(build_shard(source, options, out, cache, progress))
        else:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(
                max_workers=min(jobs, len(todo)), mp_context=context, initializer=_worker_init
            ) as pool:
                futures = [pool.submit(build_shard, s, options, out, cache, False) for s in todo]
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


def summarize(manifest: DatasetManifest) -> str:
    """Per-partition table (recordings, subjects, windows, frames, faces found) and reports."""
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
        f"modalities {','.join(opts['modalities'])}, audio_norm {opts['audio_norm']}, "
        f"label_alignment {opts['label_alignment']}"
    )
    if reports:
        lines.append(f"reports ({len(reports)}):")
        lines += [f"  {line}" for line in reports]
    else:
        lines.append("reports: none (all lengths matched)")
    return "\n".join(lines)


# --- the embedded demo corpus, built once into a cache (``python -m emorec.train`` without --data) ---

DEMO_CACHE_ENV = "EMOREC_CACHE"
# JSON object of emorec.demo.DemoSpec fields (e.g. {"seconds": 4, "subjects": [["train", 1], ["dev", 1]]}):
# a smaller corpus for tests; it gets its own cache folder.
DEMO_SPEC_ENV = "EMOREC_DEMO_SPEC"
DEMO_SOURCE = "demo"


def demo_cache_root() -> Path:
    """``$EMOREC_CACHE/demo``, else ``~/.cache/emorec/demo``."""
    root = os.environ.get(DEMO_CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "emorec") / "demo"


def demo_spec_from_env():
    """The DemoSpec named by ``$EMOREC_DEMO_SPEC`` (JSON), or None when unset."""
    from emorec.demo import DemoSpec

    text = os.environ.get(DEMO_SPEC_ENV, "").strip()
    if not text:
        return None
    try:
        fields = json.loads(text)
        if "subjects" in fields:
            fields["subjects"] = tuple((str(p), int(n)) for p, n in fields["subjects"])
        return DemoSpec(**fields)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"${DEMO_SPEC_ENV}: not a JSON object of DemoSpec fields ({exc})") from exc


def _demo_tag(spec, seed: int) -> str:
    """Empty for the default corpus, else a short digest of the spec and seed (each its own cache)."""
    from emorec.demo import DemoSpec

    if spec == DemoSpec() and seed == 0:
        return ""
    key = json.dumps({"spec": dataclasses.asdict(spec), "seed": seed}, sort_keys=True)
    return "-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def demo_dataset_dir(window: float, *, cache_dir=None, spec=None, seed: int = 0) -> Path:
    """Where :func:`ensure_demo_dataset` keeps the demo dataset of this window (``<cache>/<window>s[-digest]``)."""
    from emorec.demo import DemoSpec

    root = Path(cache_dir) if cache_dir is not None else demo_cache_root()
    return root / f"{float(window):g}s{_demo_tag(spec or DemoSpec(), seed)}"


def _demo_incomplete(out: Path, options: dict, recording_ids: set[str]) -> str | None:
    """Why the cached dataset cannot be used as it is (None: complete). Sizes only, no checksums: quick."""
    if not manifest_path(out).is_file():
        return "not built yet"
    try:
        manifest = read_manifest(out)
    except (SchemaError, EmorecError, OSError, ValueError) as exc:
        return f"unreadable manifest ({exc})"
    if manifest.options != options:
        return "built with other options"
    if set(manifest.shards) != recording_ids:
        return f"{len(recording_ids & set(manifest.shards))} of {len(recording_ids)} recordings built"
    for shard in manifest.shards.values():
        path = out / shard.path
        if not path.is_file() or path.stat().st_size != shard.bytes:
            return f"{shard.path} is missing or damaged"
    return None


def _demo_media_complete(csv_path: Path) -> bool:
    """True if the media folder's recordings.csv exists and every file it lists is there."""
    if not csv_path.is_file():
        return False
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            for column in ("audio", "video", "labels"):
                if row.get(column) and not (csv_path.parent / row[column]).is_file():
                    return False
    return True


def default_demo_jobs(recordings: int) -> int:
    """Processes for a demo build of ``recordings``: one per core (at most 4), at least two recordings each."""
    # A worker process pays a TensorFlow import (~5 s on 2 cores), which only pays off
    # when it has more than one recording to write or build.
    return max(1, min(os.cpu_count() or 1, 4, recordings // 2))


def ensure_demo_dataset(
    window: float,
    *,
    cache_dir=None,
    spec=None,
    seed: int = 0,
    face_detect_every: int | None = None,
    partitions: Sequence[str] = ("train", "dev"),
    jobs: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The demo dataset for ``window`` seconds, built into the cache on first use; returns its directory.

    Cache: ``cache_dir`` or ``$EMOREC_CACHE/demo`` or ``~/.cache/emorec/demo``,
    holding ``<window>s/`` (the dataset), ``media/seed<SEED>/`` (the demo media,
    shared by every window) and ``faces/`` (face detections, shared). A complete
    dataset (manifest readable, same options, every recording's shard present
    with its recorded size) is reused at once; otherwise the build resumes
    (checksums verified) or, if the manifest is unreadable or was built with
    other options, starts again. ``spec`` (default ``$EMOREC_DEMO_SPEC`` or
    ``DemoSpec()``) and ``seed`` pick the corpus; a non-default one gets its
    own folder. Only ``partitions`` are built (the demo flow needs train and
    dev; ``build demo OUT`` builds all three); another choice is another folder.
    ``jobs`` processes write the media and build the shards (default:
    :func:`default_demo_jobs`); the result does not depend on it.
    """
    from emorec.demo import DemoSpec, make_subjects, write_demo_media
    from emorec.media.faces import FaceConfig
    from tfrecords_tools.adapters.demo import CSV_NAME
    from tfrecords_tools.adapters.manifest_csv import read_recordings_csv

    log = log or (lambda msg: print(msg, file=sys.stderr))
    spec = spec or demo_spec_from_env() or DemoSpec()
    root = Path(cache_dir) if cache_dir is not None else demo_cache_root()
    out = demo_dataset_dir(window, cache_dir=root, spec=spec, seed=seed)
    face = FaceConfig()
    if face_detect_every is not None:
        face = dataclasses.replace(face, detect_every=int(face_detect_every))
    options = BuildOptions(window=float(window), face=face)
    expected = json.loads(json.dumps(options.manifest_options(DEMO_SOURCE)))
    partitions = tuple(p for p in PARTITIONS if p in partitions)
    if not partitions:
        raise ConfigError(f"ensure_demo_dataset: partitions must be drawn from {', '.join(PARTITIONS)}")
    out = out.with_name(out.name + ("" if partitions == ("train", "dev") else "-" + "-".join(partitions)))
    subjects = make_subjects(spec, seed)
    wanted = {s.recording_id for s in subjects if s.partition in partitions}
    reason = _demo_incomplete(out, expected, wanted)
    if reason is None:
        log(f"demo corpus: using {out}")
        return out
    log(f"demo corpus: building {out} ({reason})")
    media = root / "media" / f"seed{seed}{_demo_tag(spec, seed)}"
    if not _demo_media_complete(media / CSV_NAME):
        shutil.rmtree(media, ignore_errors=True)
        write_demo_media(media, seed=seed, spec=spec, progress=progress,
                         jobs=jobs or default_demo_jobs(len(subjects)))
    sources = [s for s in read_recordings_csv(media / CSV_NAME) if s.partition in partitions]
    kwargs = dict(cache_dir=root / "faces", progress=progress, log=lambda _msg: None,
                  jobs=jobs or default_demo_jobs(len(sources)))
    try:
        manifest = build_dataset(sources, out, options, DEMO_SOURCE, **kwargs)
    except ConfigError:
        # An unreadable manifest or other options: this folder is ours alone, start again.
        manifest = build_dataset(sources, out, options, DEMO_SOURCE, force=True, **kwargs)
    if progress:
        log(summarize(manifest))
    return out


def _modalities(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in parts if p not in MODALITIES]
    if bad or not parts:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a comma-separated subset of {','.join(MODALITIES)}"
        )
    return parts


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--window", type=float, default=DEFAULT_WINDOW_S,
                        help="window length in seconds, a multiple of 0.04 (default 6.0 = 150 frames)")
    common.add_argument("--hop", type=float, default=None,
                        help="seconds between window starts (default: the window, no overlap)")
    common.add_argument("--face-size", type=int, default=DEFAULT_FACE_SIZE,
                        help="face crop side in pixels (default %(default)s)")
    common.add_argument("--audio-norm", choices=("none", "recording"), default="none",
                        help="none = raw waveform as the original code (default); "
                             "recording = zero mean, unit variance per recording as the paper")
    common.add_argument("--label-alignment", choices=LABEL_ALIGNMENTS, default=DEFAULT_LABEL_ALIGNMENT,
                        help="end = label at the frame's end time as the original code (default); "
                             "start = at its start time as End2You")
    common.add_argument("--modalities", type=_modalities, default=MODALITIES,
                        help="audio,video (default), audio or video")
    common.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_S,
                        help="largest length difference (s) between audio, video and labels that "
                             "is trimmed or padded rather than an error (default %(default)s)")
    common.add_argument("--jobs", type=int, default=1,
                        help="recordings built in parallel processes (default 1)")
    common.add_argument("--force", action="store_true",
                        help="delete this dataset's shards and manifest and rebuild everything")
    common.add_argument("--cache-dir", type=Path, default=None,
                        help="face detection cache (default OUT/.cache/faces)")
    common.add_argument("--face-detect-every", type=int, default=None,
                        help="run the face detector every K frames, interpolating between "
                             "(default: the face tracker's own)")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")

    parser = argparse.ArgumentParser(
        prog="python -m tfrecords_tools.build",
        description="Build an emorec TFRecord dataset (one shard per recording, manifest.json).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    recola = sub.add_parser("recola", parents=[common], help="RECOLA as distributed for AVEC 2016")
    recola.add_argument("src", type=Path, help="RECOLA folder (recordings_audio/, recordings_video/, "
                                               "ratings_gold_standard/)")
    recola.add_argument("out", type=Path)
    recola.add_argument("--split", choices=("avec", "paper"), default="avec",
                        help="avec: partitions from the file names (default); paper: from --subject-map")
    recola.add_argument("--subject-map", type=Path, default=None,
                        help="CSV recording,subject[,partition]")
    manifest = sub.add_parser("manifest", parents=[common],
                              help="recordings listed in a CSV (recording,partition,subject,audio,video,labels)")
    manifest.add_argument("csv", type=Path)
    manifest.add_argument("out", type=Path)
    demo = sub.add_parser("demo", parents=[common], help="the synthetic demo corpus (written first)")
    demo.add_argument("out", type=Path)
    demo.add_argument("--media-dir", type=Path, default=None,
                      help="where the demo media are written (default OUT/.cache/demo_media/seed<SEED>)")
    demo.add_argument("--seed", type=int, default=0)
    return parser


def options_from_args(args) -> BuildOptions:
    """BuildOptions from parsed arguments."""
    from emorec.media.faces import FaceConfig

    face = FaceConfig()
    if args.face_detect_every is not None:
        face = dataclasses.replace(face, detect_every=args.face_detect_every)
    return BuildOptions(
        window=args.window,
        hop=args.hop,
        face_size=args.face_size,
        audio_norm=args.audio_norm,
        label_alignment=args.label_alignment,
        modalities=args.modalities,
        tolerance_s=args.tolerance,
        face=face,
    )


def sources_from_args(args, options: BuildOptions) -> tuple[list[RecordingSource], str]:
    """The recordings named on the command line, and the adapter's name."""
    if args.command == "recola":
        from tfrecords_tools.adapters.recola import recola_sources

        return recola_sources(args.src, args.split, args.subject_map, options.modalities), "recola"
    if args.command == "manifest":
        from tfrecords_tools.adapters.manifest_csv import read_recordings_csv

        return read_recordings_csv(args.csv), "manifest"
    from tfrecords_tools.adapters.demo import default_media_dir, demo_sources

    check_not_foreign(Path(args.out))  # before writing the demo media into it
    media = args.media_dir or default_media_dir(args.out, args.seed)
    return demo_sources(media, seed=args.seed, progress=not args.no_progress, jobs=args.jobs), "demo"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad input or settings)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
        sources, name = sources_from_args(args, options)
        from tfrecords_tools.adapters import subjects_across_partitions

        for subject, parts in subjects_across_partitions(sources).items():
            print(f"warning: subject {subject} is in partitions {', '.join(parts)}", file=sys.stderr)
        manifest = build_dataset(
            sources,
            args.out,
            options,
            name,
            force=args.force,
            jobs=args.jobs,
            cache_dir=args.cache_dir,
            progress=not args.no_progress,
            log=lambda msg: print(msg, file=sys.stderr),
        )
    except EmorecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"dataset: {Path(args.out).resolve()}")
    print(summarize(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())

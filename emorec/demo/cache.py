"""The embedded demo corpus built once into a cache, for ``emorec train`` without ``--data``.

The cache (``$EMOREC_CACHE/demo``, default ``~/.cache/emorec/demo``) holds
``<window>s/`` (one dataset per training window), ``media/seed<SEED>/`` (the
demo media, shared by every window) and ``faces/`` (face detections, shared).
A dataset of feature sets extracted from the demo media (``feature_lstm``'s
main job) is ``<window>s-feat-<set>+<set>...`` (``-nomedia`` when it stores
neither audio nor faces).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from emorec.corpus.build import build_dataset, summarize
from emorec.errors import ConfigError, EmorecError
from emorec.manifest import manifest_path, read_manifest
from emorec.recording import BuildOptions
from emorec.schema import MODALITIES, PARTITIONS, SchemaError

logger = logging.getLogger(__name__)

DEMO_CACHE_ENV = "EMOREC_CACHE"
# JSON object of emorec.demo.DemoSpec fields (e.g. {"seconds": 4, "subjects": [["train", 1], ["dev", 1]]}):
# a smaller corpus for tests; it gets its own cache folder.
DEMO_SPEC_ENV = "EMOREC_DEMO_SPEC"
DEMO_SOURCE = "demo"


def demo_cache_root() -> Path:
    """``$EMOREC_CACHE/demo``, else ``~/.cache/emorec/demo``.

    Returns:
        The folder (``~`` expanded; not created).
    """
    root = os.environ.get(DEMO_CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "emorec") / "demo"


def demo_spec_from_env():
    """The DemoSpec named by ``$EMOREC_DEMO_SPEC`` (JSON), or None when unset.

    Returns:
        The :class:`~emorec.demo.DemoSpec`, or None.

    Raises:
        ConfigError: the variable holds no JSON object of DemoSpec fields.
    """
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
    """Where :func:`ensure_demo_dataset` keeps the demo dataset of this window (``<cache>/<window>s[-digest]``).

    Args:
        window: the stored window in seconds.
        cache_dir: the cache folder (None: :func:`demo_cache_root`).
        spec: the demo corpus spec (None: ``DemoSpec()``).
        seed: the corpus seed.

    Returns:
        The folder; the digest suffix appears only for a non-default spec or seed.
    """
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
    """Processes writing the demo media (or feature shards) of ``recordings``: one per core, <= 4.

    Args:
        recordings: how many recordings the build writes.

    Returns:
        ``min(cores, 4, recordings // 2)``, at least 1.
    """
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
    extract: Sequence[str] = (),
    modalities: Sequence[str] = MODALITIES,
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
    ``jobs`` processes write the media (default: :func:`default_demo_jobs`)
    and as many build the shards: threads of this process when the dataset
    stores media only (default: one per core, at most 4), processes when it
    extracts feature sets. The result does not depend on it.
    ``extract`` names feature sets computed from the demo media
    (:data:`emorec.features.sets.EXTRACTED_SETS`, with the build's default
    settings) and ``modalities`` what media the dataset stores (``()``: the
    feature sets alone); each choice is its own folder.

    Args:
        window: the stored window in seconds.
        cache_dir: the cache folder (None: as above).
        spec: the demo corpus spec.
        seed: the corpus seed.
        face_detect_every: run the face detector every this many frames (None: the default).
        partitions: the partitions to build.
        jobs: workers for the media and the build.
        progress: show progress bars.
        extract: feature sets to compute from the media.
        modalities: the media stored.

    Returns:
        The dataset directory.

    Raises:
        ConfigError: no known partition in ``partitions``, an invalid window or option, or a
            malformed ``$EMOREC_DEMO_SPEC``.
    """
    from emorec.corpus.adapters.demo import CSV_NAME
    from emorec.corpus.adapters.manifest_csv import read_recordings_csv
    from emorec.demo import DemoSpec, make_subjects, write_demo_media
    from emorec.media.faces import FaceConfig

    spec = spec or demo_spec_from_env() or DemoSpec()
    root = Path(cache_dir) if cache_dir is not None else demo_cache_root()
    out = demo_dataset_dir(window, cache_dir=root, spec=spec, seed=seed)
    face = FaceConfig()
    if face_detect_every is not None:
        face = dataclasses.replace(face, detect_every=int(face_detect_every))
    from emorec.features.sets import FeatureOptions

    features = FeatureOptions(extract=tuple(extract))
    options = BuildOptions(window=float(window), face=face, modalities=tuple(modalities), features=features)
    expected = json.loads(json.dumps(options.manifest_options(DEMO_SOURCE)))
    partitions = tuple(p for p in PARTITIONS if p in partitions)
    if not partitions:
        raise ConfigError(f"ensure_demo_dataset: partitions must be drawn from {', '.join(PARTITIONS)}")
    out = out.with_name(out.name + ("" if partitions == ("train", "dev") else "-" + "-".join(partitions)))
    if features.extract:
        out = out.with_name(out.name + "-feat-" + "+".join(features.extract)
                            + ("" if options.modalities else "-nomedia"))
    elif options.modalities != MODALITIES:
        out = out.with_name(out.name + "-" + "-".join(options.modalities))
    subjects = make_subjects(spec, seed)
    wanted = {s.recording_id for s in subjects if s.partition in partitions}
    reason = _demo_incomplete(out, expected, wanted)
    if reason is None:
        logger.info("demo corpus: using %s", out)
        return out
    logger.info("demo corpus: building %s (%s)", out, reason)
    media = root / "media" / f"seed{seed}{_demo_tag(spec, seed)}"
    if not _demo_media_complete(media / CSV_NAME):
        shutil.rmtree(media, ignore_errors=True)
        write_demo_media(media, seed=seed, spec=spec, progress=progress,
                         jobs=jobs or default_demo_jobs(len(subjects)))
    sources = [s for s in read_recordings_csv(media / CSV_NAME) if s.partition in partitions]
    if features.extract:
        parallel, build_jobs = "processes", jobs or default_demo_jobs(len(sources))
    else:
        # Media only: threads share this process's TensorFlow and traced MTCNN, where worker
        # processes would each import and trace them again (measured: 10-11 s against 16 s for
        # the main job's six recordings on 2 cores, 14 s in one thread).
        parallel, build_jobs = "threads", jobs or max(1, min(os.cpu_count() or 1, 4, len(sources)))
    kwargs = dict(cache_dir=root / "faces", progress=progress, jobs=build_jobs, parallel=parallel)
    try:
        manifest = build_dataset(sources, out, options, DEMO_SOURCE, **kwargs)
    except ConfigError:
        # An unreadable manifest or other options: this folder is ours alone, start again.
        manifest = build_dataset(sources, out, options, DEMO_SOURCE, force=True, **kwargs)
    logger.info("%s", summarize(manifest))
    return out

"""Clip datasets for the command line and the demo: the embedded demo clip corpus, built once into a cache.

:func:`ensure_demo_clip_dataset` is the clip counterpart of
``emorec.demo.cache.ensure_demo_dataset``: the first call writes the demo
clips and builds their dataset under ``$EMOREC_CACHE/demo_clips`` (default
``~/.cache/emorec/demo_clips``); later calls find it complete and return at
once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from emorec.clips.build import ClipBuildOptions, build_clip_dataset, summarize_clip_dataset
from emorec.clips.manifest import clip_manifest_path, read_clip_manifest
from emorec.demo.cache import DEMO_CACHE_ENV
from emorec.errors import ConfigError, EmorecError
from emorec.schema import SchemaError

logger = logging.getLogger(__name__)

DEMO_CLIPS_SOURCE = "demo_clips"
# JSON object of emorec.demo.clips.ClipSpec fields (e.g. {"train_per_class": 2, "val_per_class": 1}):
# a smaller clip corpus for tests; it gets its own cache folders.
DEMO_CLIP_SPEC_ENV = "EMOREC_DEMO_CLIP_SPEC"


def demo_clips_cache_root() -> Path:
    """``$EMOREC_CACHE/demo_clips``, else ``~/.cache/emorec/demo_clips``.

    Returns:
        The folder (``~`` expanded; not created).
    """
    root = os.environ.get(DEMO_CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "emorec") / "demo_clips"


def demo_clip_spec_from_env():
    """The ClipSpec named by ``$EMOREC_DEMO_CLIP_SPEC`` (JSON), or None when unset.

    Returns:
        The :class:`~emorec.demo.clips.ClipSpec`, or None.

    Raises:
        ConfigError: the variable holds no JSON object of ClipSpec fields.
    """
    from emorec.demo.clips import ClipSpec

    text = os.environ.get(DEMO_CLIP_SPEC_ENV, "").strip()
    if not text:
        return None
    try:
        fields = json.loads(text)
        if "classes" in fields:
            fields["classes"] = tuple(fields["classes"])
        return ClipSpec(**fields)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"${DEMO_CLIP_SPEC_ENV}: not a JSON object of ClipSpec fields ({exc})") from exc


def _tag(spec, seed: int) -> str:
    """Empty for the default corpus, else a short digest of the spec and seed (each its own folders)."""
    from emorec.demo.clips import ClipSpec

    if spec == ClipSpec() and seed == 0:
        return ""
    key = json.dumps({"spec": dataclasses.asdict(spec), "seed": seed}, sort_keys=True)
    return "-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def _incomplete(out: Path, options: dict, clip_ids: set[str]) -> str | None:
    """Why the cached dataset cannot be used as it is (None: complete); sizes only, no checksums."""
    if not clip_manifest_path(out).is_file():
        return "not built yet"
    try:
        manifest = read_clip_manifest(out)
    except (SchemaError, EmorecError, OSError, ValueError) as exc:
        return f"unreadable manifest ({exc})"
    if manifest.options != options:
        return "built with other options"
    if set(manifest.clips) != clip_ids:
        return f"{len(clip_ids & set(manifest.clips))} of {len(clip_ids)} clips built"
    for shard in manifest.shards.values():
        path = out / shard.path
        if not path.is_file() or path.stat().st_size != shard.bytes:
            return f"{shard.path} is missing or damaged"
    return None


def ensure_demo_clip_dataset(
    *,
    cache_dir=None,
    spec=None,
    seed: int = 0,
    options: ClipBuildOptions | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> Path:
    """The demo clip dataset, written and built into the cache on first use; returns its directory.

    Args:
        cache_dir: cache root (default :func:`demo_clips_cache_root`); holds ``media/seed<SEED>[-tag]/``
            (the clips), ``faces/`` (face detections) and ``dataset[-tag]/`` (the clip dataset).
        spec: :class:`emorec.demo.clips.ClipSpec` (default ``$EMOREC_DEMO_CLIP_SPEC``, else its
            defaults); another spec or seed gets its own folders.
        seed: the corpus seed.
        options: build options (default :class:`ClipBuildOptions`); a dataset built with other
            options is rebuilt.
        jobs: processes writing the media and building shards (default: one per core, at most 4).
        progress: progress bars and a summary.

    Returns:
        The dataset directory (holding ``clips_manifest.json``).
    """
    from emorec.corpus.adapters.demo_clips import demo_clip_sources
    from emorec.demo.clips import ClipSpec, plan_clips

    spec = spec or demo_clip_spec_from_env() or ClipSpec()
    options = options or ClipBuildOptions()
    jobs = jobs or max(1, min(os.cpu_count() or 1, 4))
    root = Path(cache_dir) if cache_dir is not None else demo_clips_cache_root()
    tag = _tag(spec, seed)
    out = root / f"dataset{tag}"
    expected = options.manifest_options(DEMO_CLIPS_SOURCE, spec.classes)
    wanted = {c.clip_id for c in plan_clips(spec, seed)}
    reason = _incomplete(out, expected, wanted)
    if reason is None:
        logger.info("demo clips: using %s", out)
        return out
    logger.info("demo clips: building %s (%s)", out, reason)
    media = root / "media" / f"seed{seed}{tag}"
    csv_path = media / "clips.csv"
    if not csv_path.is_file():
        shutil.rmtree(media, ignore_errors=True)  # a killed write: start the media again
    sources = demo_clip_sources(media, spec=spec, seed=seed, jobs=jobs, progress=progress)
    kwargs = dict(cache_dir=root / "faces", jobs=jobs, progress=progress)
    try:
        manifest = build_clip_dataset(sources, out, options, DEMO_CLIPS_SOURCE, **kwargs)
    except ConfigError:
        # An unreadable manifest or other options: this folder is ours alone, start again.
        manifest = build_clip_dataset(sources, out, options, DEMO_CLIPS_SOURCE, force=True, **kwargs)
    if progress:
        logger.info("%s", summarize_clip_dataset(manifest))
    return out

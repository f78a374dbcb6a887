"""A clip dataset's ``clips_manifest.json``: build options, classes, shards and one entry per clip.

Kept apart from the windowed datasets' ``manifest.json`` (whose shards are one
recording each and whose options are windows): a clip dataset has shards of
several clips, a class list and per-clip face and audio statistics. The file
has its own ``format`` tag and ``clip_schema_version``; it is the source of
truth (a shard not listed in it, or whose size or checksum differs, is not part
of the dataset) and is always replaced atomically.

Layout::

    {
      "format": "emorec-clips",
      "clip_schema_version": 1,
      "options": {...},            # build options; a resume must match them
      "classes": ["Angry", ...],   # label index -> name
      "partitions": {"train": {"clips", "shards", "labelled", "class_counts",
                               "frames", "faces_found", "clips_without_face",
                               "clips_without_audio", "short_clips", "skipped"}, ...},
      "shards": [{"path", "partition", "clip_ids", "bytes", "sha256", "skipped"}, ...],
      "clips": [{"clip_id", "partition", "label", "label_name", "subject_id",
                 "video", "shard", "frames", "fps", "faces_found", "has_audio",
                 "audio_samples", "report"}, ...]
    }
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from emorec.clips.schema import CLIP_SCHEMA_VERSION
from emorec.manifest import atomic_write_bytes
from emorec.schema import PARTITIONS, SchemaError

CLIP_MANIFEST_NAME = "clips_manifest.json"
CLIP_MANIFEST_FORMAT = "emorec-clips"


@dataclasses.dataclass
class ClipInfo:
    """One stored clip: its source, label, shard and what the build found in it."""

    clip_id: str
    partition: str
    label: int  # NO_LABEL (-1) when unlabelled
    label_name: str
    subject_id: str
    video: str
    shard: str  # relative path of the shard holding it
    frames: int
    fps: float
    faces_found: int
    has_audio: bool
    audio_samples: int
    report: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ClipShardInfo:
    """One shard: its clips in stored order, size and checksum, and clips skipped as unreadable."""

    path: str  # relative to the dataset directory, e.g. "train/train-00000.tfrecord"
    partition: str
    clip_ids: list[str]
    bytes: int
    sha256: str
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # clip id -> error message


@dataclasses.dataclass
class ClipManifest:
    """Options, classes, shards and clips of a clip dataset."""

    options: dict
    classes: list[str]
    shards: dict[str, ClipShardInfo] = dataclasses.field(default_factory=dict)  # by path
    clips: dict[str, ClipInfo] = dataclasses.field(default_factory=dict)  # by clip id

    def shards_for(self, partition: str) -> list[ClipShardInfo]:
        """Shards of one partition, sorted by path."""
        if partition not in PARTITIONS:
            raise ValueError(f"unknown partition {partition!r} (expected one of {PARTITIONS})")
        return sorted((s for s in self.shards.values() if s.partition == partition), key=lambda s: s.path)

    def clips_for(self, partition: str) -> list[ClipInfo]:
        """Clips of one partition in stored order (shard by shard)."""
        return [self.clips[c] for s in self.shards_for(partition) for c in s.clip_ids]

    def is_labelled(self, partition: str) -> bool:
        """True if the partition has clips and every one of them is labelled."""
        clips = self.clips_for(partition)
        return bool(clips) and all(c.label >= 0 for c in clips)

    def class_counts(self, partition: str) -> list[int]:
        """Labelled clips per class (in class order) in one partition."""
        counts = [0] * len(self.classes)
        for clip in self.clips_for(partition):
            if clip.label >= 0:
                counts[clip.label] += 1
        return counts

    def partition_summary(self) -> dict:
        """Per-partition counts (see the module docstring)."""
        summary = {}
        for partition in PARTITIONS:
            shards = self.shards_for(partition)
            if not shards:
                continue
            clips = self.clips_for(partition)
            counts = self.class_counts(partition)
            summary[partition] = {
                "clips": len(clips),
                "shards": len(shards),
                "labelled": sum(c.label >= 0 for c in clips),
                "class_counts": dict(zip(self.classes, counts)),
                "frames": sum(c.frames for c in clips),
                "faces_found": sum(c.faces_found for c in clips),
                "clips_without_face": sum(c.faces_found == 0 for c in clips),
                "clips_without_audio": sum(not c.has_audio for c in clips),
                "short_clips": sum(c.frames < int(self.options.get("min_frames", 0)) for c in clips),
                "skipped": sum(len(s.skipped) for s in shards),
            }
        return summary

    def to_json(self) -> dict:
        """The JSON document written to ``clips_manifest.json``."""
        shards = sorted(self.shards.values(), key=lambda s: (PARTITIONS.index(s.partition), s.path))
        return {
            "format": CLIP_MANIFEST_FORMAT,
            "clip_schema_version": CLIP_SCHEMA_VERSION,
            "options": self.options,
            "classes": list(self.classes),
            "partitions": self.partition_summary(),
            "shards": [dataclasses.asdict(s) for s in shards],
            "clips": [dataclasses.asdict(self.clips[c]) for s in shards for c in s.clip_ids],
        }


def clip_manifest_path(data_dir: str | os.PathLike) -> Path:
    """Path of the clip manifest inside a dataset directory.

    Args:
        data_dir: the dataset directory.

    Returns:
        ``data_dir`` / :data:`CLIP_MANIFEST_NAME` (not checked to exist).

    >>> clip_manifest_path("data/afew").as_posix()
    'data/afew/clips_manifest.json'
    """
    return Path(data_dir) / CLIP_MANIFEST_NAME


def read_clip_manifest(data_dir: str | os.PathLike) -> ClipManifest:
    """Load and check a clip dataset's manifest.

    Args:
        data_dir: the dataset directory.

    Returns:
        The manifest.

    Raises:
        FileNotFoundError: there is no clips_manifest.json.
        SchemaError: not JSON, another format or version, or malformed entries (the message names the file).
    """
    path = clip_manifest_path(data_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no clip dataset manifest here; build a clip dataset first")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != CLIP_MANIFEST_FORMAT:
        raise SchemaError(f"{path}: not a clip dataset manifest (format {CLIP_MANIFEST_FORMAT!r})")
    version = doc.get("clip_schema_version")
    if version != CLIP_SCHEMA_VERSION:
        raise SchemaError(
            f"{path}: clip dataset has schema version {version}, this emorec reads version "
            f"{CLIP_SCHEMA_VERSION}; rebuild it with --force"
        )
    try:
        shards = {s["path"]: ClipShardInfo(**s) for s in doc["shards"]}
        clips = {c["clip_id"]: ClipInfo(**c) for c in doc["clips"]}
        manifest = ClipManifest(options=doc["options"], classes=list(doc["classes"]),
                                shards=shards, clips=clips)
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: malformed clip manifest ({exc!r})") from exc
    for shard in shards.values():
        missing = [c for c in shard.clip_ids if c not in clips]
        if shard.partition not in PARTITIONS or missing:
            raise SchemaError(f"{path}: shard {shard.path} lists unknown clips or partition")
    return manifest


def write_clip_manifest(data_dir: str | os.PathLike, manifest: ClipManifest) -> Path:
    """Write the manifest atomically (temporary file, then rename); returns its path.

    Args:
        data_dir: the dataset directory (created if missing).
        manifest: the manifest to store, as JSON (``manifest.to_json()``).

    Returns:
        The path written (:func:`clip_manifest_path`).
    """
    path = clip_manifest_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(manifest.to_json(), indent=2) + "\n").encode())
    return path

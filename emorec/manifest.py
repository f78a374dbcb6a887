"""The dataset directory's ``manifest.json``: build options and one shard per recording.

A dataset directory holds ``manifest.json`` and one TFRecord shard per
recording under ``train/``, ``dev/`` or ``test/``. The manifest is the source
of truth: a shard that is not listed in it (or whose size or checksum differs)
is not part of the dataset. It is always replaced atomically, so a killed
build leaves either the old manifest or the new one.

A build rewrites the manifest after every recording; until the last one is
written it says ``"complete": false`` and lists the recordings still to come
under ``"missing"``, so that a build stopped by an error, a full disk or a
kill is never mistaken for a finished dataset. Manifests written before these
fields existed lack them and read as complete (the schema version is
unchanged: the fields are optional and the records are the same).

Feature sets (``feature_sets``: name, dimension, feature names, where they
came from) are listed at the top level; each shard keeps the count, mean and
standard deviation of its real frames per set (``feature_stats``) so that
per-speaker and training-partition z-scores are applied when the data is read.
Manifests without them hold no feature sets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

from emorec.errors import DatasetError
from emorec.schema import MODALITIES, PARTITIONS, SCHEMA_VERSION, SchemaError

MANIFEST_NAME = "manifest.json"
# The range the labels of a dataset lie in unless its options say otherwise (RECOLA's gold standard).
DEFAULT_LABEL_RANGE = (-1.0, 1.0)


@dataclasses.dataclass
class ShardInfo:
    """One recording's shard: where it is, what it holds and its checksum."""

    recording_id: str
    partition: str
    subject_id: str
    path: str  # relative to the dataset directory, e.g. "train/train_1.tfrecord"
    windows: int
    frames: int  # real (valid) frames of the recording
    has_labels: bool
    bytes: int
    sha256: str
    report: list[str] = dataclasses.field(default_factory=list)  # trims, pads, face gaps
    # Mean and standard deviation of the stored audio's real frames (for read-time normalisation);
    # None in datasets built before emorec stored them (then computed when first needed).
    audio_mean: float | None = None
    audio_std: float | None = None
    # Per feature set: {"count": real frames, "mean": [D floats], "std": [D floats]} (population std).
    feature_stats: dict[str, dict] | None = None


@dataclasses.dataclass
class FeatureSetInfo:
    """One stored feature set: its name, dimension, column names and origin.

    ``source`` says where it came from: ``released`` (an ARFF folder of the
    corpus, ``path`` relative to the corpus) or the extractor that computed it
    at build time (``audio_lld``, ``audio_functionals``, ``video_geometric``,
    ``video_appearance``); ``model`` names a file fitted on the training
    partition and stored with the dataset (PCA, mean shape), relative to it.
    """

    name: str
    dim: int
    source: str
    names: list[str] = dataclasses.field(default_factory=list)
    path: str | None = None
    model: str | None = None


@dataclasses.dataclass
class DatasetManifest:
    """Build options plus the shards of every recording, keyed by recording id."""

    options: dict
    shards: dict[str, ShardInfo] = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    # False while a build is under way or after it stopped early; ``missing`` = recordings not yet written.
    complete: bool = True
    missing: list[str] = dataclasses.field(default_factory=list)
    feature_sets: dict[str, FeatureSetInfo] = dataclasses.field(default_factory=dict)

    @property
    def is_complete(self) -> bool:
        """True when the build that wrote this manifest finished every recording it was given."""
        return self.complete and not self.missing

    def incomplete_reason(self, data_dir: str | os.PathLike) -> str | None:
        """Why this dataset is unfinished and how to finish it, or None when it is complete."""
        if self.is_complete:
            return None
        total = len(self.shards) + len(self.missing)
        listed = ", ".join(self.missing[:8]) + (", ..." if len(self.missing) > 8 else "")
        which = f" ({listed})" if self.missing else ""
        return (
            f"{manifest_path(data_dir)}: incomplete dataset: the build stopped with "
            f"{len(self.missing)} of {total} recordings not written{which}; rerun the same "
            f"`emorec build {self.options.get('source', '...')} ...` command into {Path(data_dir)} "
            "to finish it (finished recordings are kept, only the missing ones are built)"
        )

    @property
    def label_range(self) -> tuple[float, float]:
        """The range the labels were checked against at build time (default [-1, 1])."""
        low, high = self.options.get("label_range", DEFAULT_LABEL_RANGE)
        return float(low), float(high)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities stored in this dataset, e.g. ``("audio", "video")``."""
        return tuple(self.options["modalities"])

    @property
    def feature_dims(self) -> dict[str, int]:
        """``{feature set: dimension}`` in the order the manifest lists them."""
        return {name: info.dim for name, info in self.feature_sets.items()}

    @property
    def window_frames(self) -> int:
        """Frames per stored window (150 for 6 s windows)."""
        return int(self.options["window_frames"])

    def shards_for(self, partition: str) -> list[ShardInfo]:
        """Shards of one partition, sorted by recording id."""
        if partition not in PARTITIONS:
            raise ValueError(f"unknown partition {partition!r} (expected one of {PARTITIONS})")
        return sorted(
            (s for s in self.shards.values() if s.partition == partition),
            key=lambda s: s.recording_id,
        )

    def has_labels(self, partition: str) -> bool:
        """True if every recording of the partition carries labels."""
        shards = self.shards_for(partition)
        return bool(shards) and all(s.has_labels for s in shards)

    def partition_summary(self) -> dict:
        """Per-partition recordings, subjects, window and frame counts."""
        summary = {}
        for partition in PARTITIONS:
            shards = self.shards_for(partition)
            if not shards:
                continue
            summary[partition] = {
                "recordings": [s.recording_id for s in shards],
                "subjects": sorted({s.subject_id for s in shards}),
                "windows": sum(s.windows for s in shards),
                "frames": sum(s.frames for s in shards),
                "has_labels": all(s.has_labels for s in shards),
            }
        return summary

    def to_json(self) -> dict:
        """The JSON document written to ``manifest.json``."""
        return {
            "schema_version": self.schema_version,
            "complete": self.is_complete,
            "missing": sorted(self.missing),
            "options": self.options,
            "feature_sets": [dataclasses.asdict(f) for f in self.feature_sets.values()],
            "partitions": self.partition_summary(),
            "shards": [dataclasses.asdict(s) for s in sorted(
                self.shards.values(), key=lambda s: (s.partition, s.recording_id))],
        }


def manifest_path(data_dir: str | os.PathLike) -> Path:
    """Path of the manifest file inside a dataset directory.

    Args:
        data_dir: the dataset directory.

    Returns:
        ``data_dir`` / :data:`MANIFEST_NAME` (not checked to exist).

    >>> manifest_path("data/demo").as_posix()
    'data/demo/manifest.json'
    """
    return Path(data_dir) / MANIFEST_NAME


def read_manifest(data_dir: str | os.PathLike) -> DatasetManifest:
    """Load and check a dataset directory's manifest; errors name the file.

    Args:
        data_dir: the dataset directory.

    Returns:
        The manifest: options, shards by recording id, feature sets by name, and whether the
        build completed (``complete`` true and no ``missing`` ids when the file predates them).

    Raises:
        DatasetError: no manifest file in ``data_dir``.
        SchemaError: invalid JSON, another schema version, missing or malformed entries, or
            unknown or no modalities (without feature sets).
    """
    path = manifest_path(data_dir)
    if not path.is_file():
        raise DatasetError(f"{path}: no dataset manifest here; build one with `emorec build`")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from exc
    version = doc.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"{path}: dataset has schema version {version}, this emorec reads version "
            f"{SCHEMA_VERSION}; rebuild it with `emorec build ... --force`"
        )
    try:
        options = doc["options"]
        shards = {s["recording_id"]: ShardInfo(**s) for s in doc["shards"]}
        feature_sets = {f["name"]: FeatureSetInfo(**f) for f in doc.get("feature_sets", [])}
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: malformed manifest ({exc!r})") from exc
    # Absent in manifests written before builds recorded their progress: those read as complete.
    complete = doc.get("complete", True)
    missing = doc.get("missing", [])
    if not isinstance(complete, bool) or not (
        isinstance(missing, list) and all(isinstance(m, str) for m in missing)
    ):
        raise SchemaError(
            f"{path}: malformed manifest (complete must be true or false, missing a list of "
            f"recording ids; got {complete!r} and {missing!r})"
        )
    modalities = options.get("modalities")
    unknown = set(modalities or []) - set(MODALITIES)
    # Feature sets alone are a dataset too (e.g. RECOLA's released features without the media).
    if unknown or not isinstance(modalities, list) or not (modalities or feature_sets):
        raise SchemaError(f"{path}: bad modalities {modalities!r}")
    return DatasetManifest(options=options, shards=shards, schema_version=version,
                           complete=complete, missing=list(missing), feature_sets=feature_sets)


def write_manifest(data_dir: str | os.PathLike, manifest: DatasetManifest) -> Path:
    """Write the manifest atomically (temporary file, then rename).

    Args:
        data_dir: the dataset directory (created if missing).
        manifest: the manifest to store, as JSON (:meth:`DatasetManifest.to_json`).

    Returns:
        The path written (:func:`manifest_path`).
    """
    path = manifest_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest.to_json(), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(path, text.encode())
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    Readers see the old file or the new one, never a partial one; the new file gets the
    permissions of :func:`default_file_mode` and is fsynced before the rename.

    Args:
        path: the file to write (replaced if it exists); its directory must exist.
        data: the whole content.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     atomic_write_bytes(Path(tmp) / "a.txt", b"abc")
    ...     file_sha256(Path(tmp) / "a.txt")[:16]
    'ba7816bf8f01cfea'
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, default_file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def default_file_mode() -> int:
    """Permission bits a plain ``open(path, "w")`` would give a new file (0666 minus umask).

    Returns:
        The mode bits, e.g. ``0o644`` under the usual umask ``022``.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks.

    Args:
        path: the file to hash.
        chunk: bytes read at a time.

    Returns:
        The 64-character lowercase hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()

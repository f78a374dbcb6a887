"""Checking an emorec dataset directory (``emorec validate OUT``, ``python -m tfrecords_tools.validate OUT``).

Checks the manifest's schema version, every shard's presence, size and
SHA-256, and every record: schema version, recording/partition/subject,
modalities and labels as the manifest says, window length, the start_frame
sequence (0, hop, 2 hop, ...), the validity mask (real frames first, as many
as the recording has left), NaN/inf in audio, landmarks and labels, labels
outside the dataset's label range ([-1, 1] unless built with --label-range; a
warning), face JPEGs that decode to face_size x face_size. A build that
stopped early (the manifest says ``complete: false``) is an error naming the
missing recordings and how to finish it.
The command exits 0 when clean, 1 with one ``error:`` line per fault (file,
window, problem), 2 when the manifest itself cannot be read.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from emorec.corpus.lock import lock_path
from emorec.manifest import DatasetManifest, ShardInfo, file_sha256, read_manifest
from emorec.schema import PARTITIONS, SchemaError, WindowRecord, decode_window
from emorec.windows import valid_frames, window_starts


@dataclasses.dataclass
class ValidationResult:
    """Faults (``errors``), oddities (``warnings``) and what was checked."""

    errors: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    shards: int = 0
    windows: int = 0
    frames: int = 0

    @property
    def ok(self) -> bool:
        """True when no error was found."""
        return not self.errors


def _iter_records(path: Path):
    """Serialized records of a TFRecord file; a truncated or corrupt file raises at its end."""
    import tensorflow as tf

    for record in tf.data.TFRecordDataset(str(path)):
        yield record.numpy()


def _check_record(
    window: WindowRecord, index: int, shard: ShardInfo, manifest: DatasetManifest, where: str
) -> tuple[list[str], list[str]]:
    """Errors and warnings of one decoded window."""
    import cv2

    opts = manifest.options
    size = int(opts["face_size"])
    errors: list[str] = []
    warnings: list[str] = []
    at = f"{where}: window {index} (start_frame {window.start_frame})"
    for name, got, want in (
        ("recording_id", window.recording_id, shard.recording_id),
        ("partition", window.partition, shard.partition),
        ("subject_id", window.subject_id, shard.subject_id),
        ("frames", window.num_frames, int(opts["window_frames"])),
        ("audio", window.audio is not None, "audio" in opts["modalities"]),
        ("video", window.faces is not None, "video" in opts["modalities"]),
        ("labels", window.labels is not None, shard.has_labels),
        ("feature sets", {k: v.shape[1] for k, v in (window.features or {}).items()}, manifest.feature_dims),
    ):
        if got != want:
            errors.append(f"{at}: {name} is {got!r}, the manifest says {want!r}")
    valid = np.asarray(window.valid)
    real = int(valid.sum())
    expected = valid_frames(shard.frames, window.start_frame, int(opts["window_frames"]))
    if not np.array_equal(valid, (np.arange(len(valid)) < real).astype(valid.dtype)) or real != expected:
        errors.append(
            f"{at}: validity mask has {real} real frames {valid.tolist()[:3]}..., "
            f"expected the first {expected} (recording of {shard.frames} frames)"
        )
    if window.audio is not None and not np.all(np.isfinite(window.audio)):
        frame = int(np.argmax(~np.isfinite(window.audio).all(axis=1)))
        errors.append(f"{at}: NaN or inf in the audio of frame {window.start_frame + frame}")
    if window.labels is not None:
        low, high = manifest.label_range
        outside = (window.labels[:real] < low) | (window.labels[:real] > high)
        if outside.any():
            frame = int(np.argmax(outside.any(axis=1)))
            warnings.append(
                f"{at}: {int(outside.sum())} label value(s) outside [{low:g}, {high:g}], "
                f"first at frame {window.start_frame + frame}: {window.labels[frame].tolist()}"
            )
    if window.faces is not None:
        if window.face_size != size:
            errors.append(f"{at}: face_size {window.face_size}, the manifest says {size}")
        if not np.all(np.isfinite(window.landmarks)):
            errors.append(f"{at}: NaN or inf in the landmarks")
        if not np.isin(window.face_found, (0, 1)).all():
            errors.append(f"{at}: face_found holds values other than 0 and 1")
        for k, jpeg in enumerate(window.faces):
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None or image.shape != (size, size, 3):
                shape = None if image is None else image.shape
                errors.append(
                    f"{at}: face of frame {window.start_frame + k} does not decode to "
                    f"({size}, {size}, 3) (got {shape})"
                )
                break
    return errors, warnings


def check_shard(data_dir: Path, shard: ShardInfo, manifest: DatasetManifest, bar=None) -> ValidationResult:
    """Check one shard file and all its records against the manifest.

    Faults are collected, not raised: a missing, resized or altered file, records that do not
    decode, a wrong ``start_frame`` sequence, a record disagreeing with the manifest, and a
    truncated or corrupt file all become ``errors`` entries naming the file and window.

    Args:
        data_dir: the dataset directory (``shard.path`` is relative to it).
        shard: the manifest's entry for the shard (recording, partition, frames, windows,
            bytes, SHA-256).
        manifest: the dataset's manifest (its options give window, hop, face size, modalities).
        bar: a progress bar advanced by one per record checked (``tqdm``-like ``update``), or None.

    Returns:
        The shard's :class:`ValidationResult` (``shards`` 1, its frames, the windows read).
    """
    result = ValidationResult(shards=1, frames=shard.frames)
    path = data_dir / shard.path
    where = str(path)
    if shard.partition not in PARTITIONS or Path(shard.path).parts[0] != shard.partition:
        result.errors.append(f"{where}: listed under partition {shard.partition!r}")
    if not path.is_file():
        result.errors.append(f"{where}: shard listed in the manifest is missing")
        return result
    size = path.stat().st_size
    if size != shard.bytes:
        result.errors.append(f"{where}: {size} bytes, the manifest says {shard.bytes} (truncated or rewritten)")
    elif file_sha256(path) != shard.sha256:
        result.errors.append(f"{where}: SHA-256 differs from the manifest's")
    window_frames = int(manifest.options["window_frames"])
    starts = window_starts(shard.frames, window_frames, int(manifest.options["hop_frames"]))
    count = 0
    try:
        for count, serialized in enumerate(_iter_records(path), start=1):
            index = count - 1
            try:
                window = decode_window(serialized)
            except (SchemaError, KeyError, IndexError, ValueError) as exc:
                result.errors.append(f"{where}: window {index}: cannot decode ({exc})")
                continue
            expected = starts[index] if index < len(starts) else None
            if window.start_frame != expected:
                result.errors.append(
                    f"{where}: window {index}: start_frame {window.start_frame}, expected {expected} "
                    f"(windows start every {manifest.options['hop_frames']} frames)"
                )
            errors, warnings = _check_record(window, index, shard, manifest, where)
            result.errors += errors
            result.warnings += warnings
            if bar is not None:
                bar.update(1)
    except Exception as exc:  # tf.errors.DataLossError and friends: a damaged file
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        message = re.sub(r"\{\{[^}]*\}\}\s*", "", text).split(" [Op:")[0].strip()
        result.errors.append(f"{where}: window {count}: unreadable record, truncated or corrupt file ({message})")
    result.windows = count
    if count != shard.windows or count != len(starts):
        result.errors.append(
            f"{where}: {count} windows, the manifest says {shard.windows} and {shard.frames} frames "
            f"need {len(starts)}"
        )
    return result


def validate_dataset(data_dir, progress: bool = False) -> ValidationResult:
    """Check a whole dataset directory.

    Args:
        data_dir: the dataset directory (holds ``manifest.json``).
        progress: show a progress bar over the windows.

    Returns:
        The faults and oddities found, with counts of what was checked.

    Raises:
        DatasetError: the manifest is missing or unreadable.
    """
    from tqdm import tqdm

    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    result = ValidationResult()
    for key in ("window_frames", "hop_frames", "face_size", "modalities"):
        if key not in manifest.options:
            result.errors.append(f"{data_dir / 'manifest.json'}: options lack {key!r}")
    if result.errors:
        return result
    reason = manifest.incomplete_reason(data_dir)
    if reason is not None:
        result.errors.append(reason)
    if lock_path(data_dir).exists():
        result.warnings.append(
            f"{lock_path(data_dir)}: a build is writing this dataset, or one was killed "
            "(the next build takes over a dead one's lock)"
        )
    listed = {data_dir / s.path for s in manifest.shards.values()}
    for partition in PARTITIONS:
        folder = data_dir / partition
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.name.endswith(".tmp"):
                    result.warnings.append(f"{path}: temporary file left by a killed build (a rebuild removes it)")
                elif path not in listed:
                    result.warnings.append(f"{path}: not listed in the manifest (not part of the dataset)")
    shards = sorted(manifest.shards.values(), key=lambda s: (s.partition, s.recording_id))
    with tqdm(total=sum(s.windows for s in shards), unit="window", desc="validate",
              disable=not progress) as bar:
        for shard in shards:
            part = check_shard(data_dir, shard, manifest, bar)
            result.errors += part.errors
            result.warnings += part.warnings
            result.shards += part.shards
            result.windows += part.windows
            result.frames += part.frames
    return result

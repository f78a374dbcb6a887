"""A dataset directory opened once: its manifest, partitions, modalities and label status, shared by every stage.

The trainer, the evaluator, the exporter and the pictures all take a
:class:`DatasetHandle` (or a path, which :func:`open_dataset` opens), so a run
reads ``manifest.json`` once rather than at every stage.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from emorec.errors import DatasetError
from emorec.manifest import DatasetManifest, ShardInfo, read_manifest
from emorec.schema import DEFAULT_LABEL_ALIGNMENT, MODALITIES, PARTITIONS


@dataclasses.dataclass(frozen=True)
class DatasetHandle:
    """An opened dataset directory (see the module docstring)."""

    path: Path
    manifest: DatasetManifest
    # Things computed from the shards once per opened dataset (e.g. audio statistics of old datasets).
    cache: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike, allow_incomplete: bool = False) -> DatasetHandle:
        """Read ``PATH/manifest.json``.

        A dataset whose build stopped early (its manifest says ``complete: false``)
        is refused: training or evaluating on part of a corpus would give numbers
        that look right and are not. Manifests older than the field read as complete.

        Args:
            path: the dataset directory.
            allow_incomplete: open an unfinished build anyway (its finished recordings only).

        Raises:
            DatasetError: no manifest, another schema version, a malformed one, or an
                incomplete build (naming the file, the missing recordings and how to finish it).
        """
        path = Path(path)
        manifest = read_manifest(path)
        reason = manifest.incomplete_reason(path)
        if reason is not None and not allow_incomplete:
            raise DatasetError(reason)
        return cls(path=path, manifest=manifest)

    def __fspath__(self) -> str:
        return str(self.path)

    # -- what the build stored -------------------------------------------------------------

    @property
    def options(self) -> dict:
        """The manifest's build options."""
        return self.manifest.options

    @property
    def modalities(self) -> tuple[str, ...]:
        """Stored modalities, e.g. ``("audio", "video")``."""
        return self.manifest.modalities

    @property
    def feature_dims(self) -> dict[str, int]:
        """Stored feature sets and their dimensions, e.g. ``{"audio_lld": 76}`` (empty when there are none)."""
        return self.manifest.feature_dims

    @property
    def window_frames(self) -> int:
        """Frames per stored window."""
        return self.manifest.window_frames

    @property
    def hop_frames(self) -> int:
        """Frames between stored window starts."""
        return int(self.options.get("hop_frames", self.window_frames))

    @property
    def face_size(self) -> int:
        """Side of the stored face crops."""
        return int(self.options["face_size"])

    @property
    def label_alignment(self) -> str:
        """``end`` or ``start`` (see :mod:`emorec.schema`)."""
        return self.options.get("label_alignment", DEFAULT_LABEL_ALIGNMENT)

    @property
    def audio_norm(self) -> str:
        """The audio normalisation applied at build time."""
        return self.options.get("audio_norm", "none")

    # -- partitions ------------------------------------------------------------------------

    def shards(self, partition: str) -> list[ShardInfo]:
        """Shards of ``partition`` sorted by recording id (empty when it has none).

        Raises:
            DatasetError: an unknown partition name.
        """
        if partition not in PARTITIONS:
            raise DatasetError(f"{self.path}: unknown partition {partition!r} (expected one of {PARTITIONS})")
        return self.manifest.shards_for(partition)

    def has_partition(self, partition: str) -> bool:
        """True if ``partition`` holds at least one recording."""
        return bool(self.shards(partition))

    def has_labels(self, partition: str) -> bool:
        """True if every recording of the partition carries labels."""
        return self.manifest.has_labels(partition)

    def check_labels(self, partition: str, required: bool = False) -> bool:
        """Whether ``partition`` is labelled; a partition mixing labelled and unlabelled recordings is an error.

        Args:
            partition: the partition.
            required: an unlabelled partition is an error too (training).

        Returns:
            True if every recording has labels, False if none has.

        Raises:
            DatasetError: naming the recordings without labels.
        """
        shards = self.shards(partition)
        unlabelled = [s.recording_id for s in shards if not s.has_labels]
        if shards and (required or len(unlabelled) < len(shards)) and unlabelled:
            raise DatasetError(
                f"{self.path}: partition {partition} has recordings without labels: {', '.join(unlabelled)} "
                f"({len(shards) - len(unlabelled)} of {len(shards)} are labelled); every recording of a "
                "partition that is trained on or scored needs its labels (fix the labels column of the "
                "recordings CSV and rebuild)")
        return bool(shards) and not unlabelled

    def summary(self) -> dict:
        """Modalities, feature sets, window/hop frames, face size and per-partition counts."""
        return {
            "modalities": list(self.modalities),
            "feature_sets": self.feature_dims,
            "window_frames": self.window_frames,
            "hop_frames": self.hop_frames,
            "face_size": self.face_size,
            "partitions": self.manifest.partition_summary(),
        }

    def require_modalities(self, wanted: Sequence[str] | None, reader: str = "the model") -> tuple[str, ...]:
        """``wanted`` in canonical order (None = all stored), checked against what is stored.

        Raises:
            DatasetError: an unknown modality, or one the dataset does not hold.
        """
        chosen = self.modalities if wanted is None else tuple(dict.fromkeys(wanted))
        unknown = [m for m in chosen if m not in MODALITIES]
        if unknown or not chosen:
            raise DatasetError(f"{self.path}: bad modalities {list(chosen)!r} (expected some of {MODALITIES})")
        missing = [m for m in chosen if m not in self.modalities]
        if missing:
            raise DatasetError(
                f"{self.path}: {reader} needs modalities {missing} that the dataset does not hold "
                f"(it has {list(self.modalities)}); rebuild it with those modalities"
            )
        return tuple(m for m in MODALITIES if m in chosen)

    def require_features(self, wanted: Sequence[str], reader: str = "the model") -> dict[str, int]:
        """``{name: dim}`` of the feature sets ``wanted``, in that order, checked against what is stored.

        Raises:
            DatasetError: a feature set the dataset does not hold (listing those it does).
        """
        stored = self.feature_dims
        missing = [name for name in wanted if name not in stored]
        if missing:
            held = ", ".join(f"{k} ({v})" for k, v in stored.items()) or "none"
            raise DatasetError(
                f"{self.path}: {reader} reads feature set(s) {', '.join(missing)}, which the dataset does not "
                f"hold (it holds: {held}); rebuild it with `emorec build ... --features/--extract`"
            )
        return {name: stored[name] for name in wanted}


def open_dataset(data):
    """``data`` itself if it is already a handle, else the directory opened.

    A directory holding ``clips_manifest.json`` and no ``manifest.json`` is a clip
    dataset (Pini et al.) and opens as a :class:`~emorec.clips.dataset.ClipDatasetHandle`;
    any other as a :class:`DatasetHandle`.

    Args:
        data: a dataset directory (``str`` or path), or an already opened handle.

    Returns:
        The handle (``data`` itself when it is one).

    Raises:
        DatasetError: the directory holds no readable manifest.
    """
    from emorec.clips.dataset import ClipDatasetHandle, is_clip_dataset
    from emorec.clips.manifest import clip_manifest_path
    from emorec.manifest import MANIFEST_NAME

    if isinstance(data, DatasetHandle) or is_clip_dataset(data):
        return data
    path = Path(data)
    if clip_manifest_path(path).is_file() and not (path / MANIFEST_NAME).is_file():
        return ClipDatasetHandle.open(path)
    return DatasetHandle.open(path)

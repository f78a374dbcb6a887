"""A clip dataset directory opened once (``clips_manifest.json``), shared by the stages like :class:`~emorec.dataset.DatasetHandle`.

:func:`emorec.dataset.open_dataset` returns a :class:`ClipDatasetHandle` for a
directory holding ``clips_manifest.json`` (and no ``manifest.json``), so
``emorec train``, ``evaluate`` and ``export`` take either kind of dataset.
The clip task (:mod:`emorec.tasks.clip_classification`) reads its partitions
through :meth:`ClipDatasetHandle.selection`, which a k-fold run replaces
(:meth:`ClipDatasetHandle.with_partitions`): fold ``i``'s ``train`` is Train plus
the other folds of Val, its ``dev`` the fold itself.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from emorec.clips.folds import ClipSelection, as_selection, kfold_partitions, selected_clips
from emorec.clips.manifest import ClipManifest, read_clip_manifest
from emorec.errors import DatasetError
from emorec.schema import PARTITIONS

KIND = "clips"


@dataclasses.dataclass(frozen=True)
class ClipDatasetHandle:
    """An opened clip dataset (see the module docstring); ``partitions`` overrides stored partitions."""

    path: Path
    manifest: ClipManifest
    partitions: Mapping[str, ClipSelection] = dataclasses.field(default_factory=dict)
    label: str = ""  # e.g. "fold 2 of 5", for messages and records
    kind = KIND

    @classmethod
    def open(cls, path: str | os.PathLike) -> ClipDatasetHandle:
        """Read ``PATH/clips_manifest.json``.

        Raises:
            DatasetError: no clip manifest, or an unreadable one (``SchemaError``, naming the file).
        """
        path = Path(path)
        try:
            manifest = read_clip_manifest(path)
        except FileNotFoundError as exc:
            raise DatasetError(str(exc)) from None
        return cls(path=path, manifest=manifest)

    def __fspath__(self) -> str:
        return str(self.path)

    # -- what the build stored ------------------------------------------------------------

    @property
    def options(self) -> dict:
        """The manifest's build options."""
        return self.manifest.options

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in label-index order."""
        return tuple(self.manifest.classes)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.manifest.classes)

    @property
    def face_size(self) -> int:
        """Side of the stored face crops."""
        return int(self.options["face_size"])

    @property
    def sample_rate(self) -> int:
        """Rate of the stored sound."""
        return int(self.options["sample_rate"])

    # -- partitions ------------------------------------------------------------------------

    def selection(self, partition: str) -> ClipSelection:
        """What the pipelines read for ``partition`` (the stored one unless overridden).

        Raises:
            DatasetError: an unknown partition name.
        """
        if partition in self.partitions:
            return self.partitions[partition]
        if partition not in PARTITIONS:
            raise DatasetError(f"{self.path}: unknown partition {partition!r} (expected one of {PARTITIONS})")
        return as_selection(partition)

    def clips(self, partition: str) -> list:
        """The :class:`~emorec.clips.manifest.ClipInfo` of a partition, in stored order."""
        return selected_clips(self.manifest, self.selection(partition))

    def has_partition(self, partition: str) -> bool:
        """True if ``partition`` holds at least one clip."""
        return bool(self.clips(partition))

    def has_labels(self, partition: str) -> bool:
        """True if the partition has clips and every one is labelled."""
        clips = self.clips(partition)
        return bool(clips) and all(c.label >= 0 for c in clips)

    def check_labels(self, partition: str, required: bool = False) -> bool:
        """Whether ``partition`` is labelled; a partition mixing labelled and unlabelled clips is an error.

        Raises:
            DatasetError: naming unlabelled clips of a partition that needs labels.
        """
        clips = self.clips(partition)
        unlabelled = [c.clip_id for c in clips if c.label < 0]
        if clips and unlabelled and (required or len(unlabelled) < len(clips)):
            shown = ", ".join(unlabelled[:5]) + (" ..." if len(unlabelled) > 5 else "")
            raise DatasetError(
                f"{self.path}: partition {partition} has {len(unlabelled)} unlabelled clips ({shown}) of "
                f"{len(clips)}; every clip of a partition that is trained on or scored needs its class")
        return bool(clips) and not unlabelled

    def class_counts(self, partition: str) -> np.ndarray:
        """Labelled clips per class ``(K,)`` in a partition."""
        counts = np.zeros(self.num_classes, np.int64)
        for clip in self.clips(partition):
            if clip.label >= 0:
                counts[clip.label] += 1
        return counts

    def frame_count(self, partition: str, with_face: bool = False) -> int:
        """Frames of a partition's clips (only those with a face when ``with_face``)."""
        return sum(c.faces_found if with_face else c.frames for c in self.clips(partition))

    def summary(self) -> dict:
        """Classes, face size, sample rate and per-partition clip counts."""
        parts = {}
        for partition in PARTITIONS:
            clips = self.clips(partition)
            if clips:
                parts[partition] = {
                    "clips": len(clips),
                    "class_counts": dict(zip(self.classes, self.class_counts(partition).tolist())),
                    "clips_without_face": sum(c.faces_found == 0 for c in clips),
                    "clips_without_audio": sum(not c.has_audio for c in clips),
                }
        return {"kind": KIND, "classes": list(self.classes), "face_size": self.face_size,
                "sample_rate": self.sample_rate, "partitions": parts, "folds": self.label or None}

    # -- views -------------------------------------------------------------------------------

    def with_partitions(self, partitions: Mapping[str, ClipSelection], label: str) -> ClipDatasetHandle:
        """The same dataset read with other partitions (e.g. a fold's ``train`` and ``dev``)."""
        return dataclasses.replace(self, partitions=dict(partitions), label=label)

    def folds(self, k: int, seed: int = 0) -> list[ClipDatasetHandle]:
        """Pini et al.'s k folds (:func:`emorec.clips.folds.kfold_partitions`), one view each.

        Raises:
            ConfigError: too few validation clips or subjects for ``k`` folds.
        """
        return [self.with_partitions(parts, f"fold {i + 1} of {k}")
                for i, parts in enumerate(kfold_partitions(self.manifest, k, seed))]


def is_clip_dataset(data) -> bool:
    """True for a :class:`ClipDatasetHandle` (or a handle of the same kind).

    Args:
        data: any object.

    Returns:
        Whether ``data.kind`` is :data:`KIND` (``"clips"``).
    """
    return getattr(data, "kind", None) == KIND

"""Subsets of a clip dataset's clips (:class:`ClipSelection`) and Pini et al.'s k-fold split of the validation set.

A *selection* is what a pipeline of :mod:`emorec.clips.data` reads in place
of a stored partition: clips of one or more stored partitions, optionally
restricted to a set of clip ids. The k-fold runs (§4.3.2: "the validation
set of the AFEW dataset was split in five folds and the models are trained
five times ... maintaining the train and the validation fold
subject-independent") train fold ``i`` on Train plus the other folds of Val
and validate on fold ``i``.

How :func:`kfold_partitions` makes the folds (deterministic for a seed):

1. Val clips are grouped by subject; a clip whose subject is unknown (AFEW
   gives none) is a group of its own.
2. Groups of known subjects go first, largest first (ties in a seeded random
   order), each to the fold holding the fewest clips so far (lowest index on
   ties), so no subject is in two folds.
3. Clips of unknown subject then go one by one, ordered by class (then
   seeded at random within the class), each to the fold holding the fewest
   clips: dealt round-robin, every fold gets the same share of each class.
4. Training clips whose (known) subject also appears in the validation fold
   are left out of that fold's training set, so training and validation
   share no subject.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

from emorec.errors import ConfigError
from emorec.schema import PARTITIONS


@dataclasses.dataclass(frozen=True)
class ClipSelection:
    """Clips of the stored ``partitions`` (all of them, or only ``clip_ids``), read as one partition ``name``."""

    name: str
    partitions: tuple[str, ...]
    clip_ids: frozenset[str] | None = None

    def __post_init__(self):
        unknown = [p for p in self.partitions if p not in PARTITIONS]
        if unknown or not self.partitions:
            raise ConfigError(f"clip selection {self.name}: unknown partitions {list(self.partitions)}")

    def contains(self, clip_id: str, partition: str) -> bool:
        """Whether the stored clip ``clip_id`` of ``partition`` belongs to the selection."""
        return partition in self.partitions and (self.clip_ids is None or clip_id in self.clip_ids)


def as_selection(partition: str | ClipSelection) -> ClipSelection:
    """A stored partition name as the selection of all its clips (a selection is returned as it is).

    Args:
        partition: a partition name, or a :class:`ClipSelection`.

    Returns:
        The selection.

    Raises:
        ConfigError: an unknown partition name.

    >>> as_selection("dev")
    ClipSelection(name='dev', partitions=('dev',), clip_ids=None)
    """
    if isinstance(partition, ClipSelection):
        return partition
    if partition not in PARTITIONS:
        raise ConfigError(f"unknown partition {partition!r} (expected one of {', '.join(PARTITIONS)})")
    return ClipSelection(partition, (partition,))


def assign_folds(groups: Sequence[tuple[str, Sequence[int]]], labels: Sequence[int], k: int,
                 seed: int = 0) -> list[int]:
    """Fold index of each item (steps 2-3 of the module docstring).

    Args:
        groups: ``(subject, item indices)``; subject ``""`` = unknown (each item on its own).
        labels: class of each item (for dealing the items of unknown subject).
        k: number of folds.
        seed: order of ties.

    Returns:
        ``fold[i]`` for every item.

    >>> assign_folds([("a", [0, 1]), ("b", [2]), ("", [3, 4, 5])], [0, 0, 1, 0, 1, 1], 2)
    [0, 0, 1, 1, 1, 0]
    """
    rng = random.Random(seed)
    known = [(s, list(items)) for s, items in groups if s]
    unknown = [i for s, items in groups if not s for i in items]
    rng.shuffle(known)
    known.sort(key=lambda g: -len(g[1]))
    order = list(unknown)
    rng.shuffle(order)
    order.sort(key=lambda i: labels[i])
    sizes = [0] * k
    fold = [0] * len(labels)
    for _, items in known:
        target = sizes.index(min(sizes))
        for i in items:
            fold[i] = target
        sizes[target] += len(items)
    for i in order:
        target = sizes.index(min(sizes))
        fold[i] = target
        sizes[target] += 1
    return fold


def kfold_partitions(manifest, k: int, seed: int = 0, source: str = "dev",
                     train: str = "train") -> list[dict[str, ClipSelection]]:
    """Pini et al.'s k folds: ``[{"train": selection, "dev": selection}, ...]`` (module docstring).

    Args:
        manifest: the dataset's :class:`~emorec.clips.manifest.ClipManifest`.
        k: number of folds (at least 2).
        seed: order of ties.
        source: the labelled partition split into folds (AFEW's Val, emorec's ``dev``).
        train: the partition every fold also trains on.

    Returns:
        One mapping per fold.

    Raises:
        ConfigError: fewer than 2 folds, or fewer labelled ``source`` clips (or subjects) than folds.
    """
    if k < 2:
        raise ConfigError(f"--folds must be at least 2, got {k}")
    clips = [c for c in manifest.clips_for(source) if c.label >= 0]
    if len(clips) < k:
        raise ConfigError(f"{source}: {len(clips)} labelled clips cannot make {k} folds")
    by_subject: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        by_subject.setdefault(clip.subject_id, []).append(i)
    groups = [(s, items) for s, items in by_subject.items() if s] + [("", by_subject.get("", []))]
    fold = assign_folds(groups, [c.label for c in clips], k, seed)
    if len(set(fold)) < k:
        raise ConfigError(f"{source}: its clips belong to {len(set(fold))} subjects, fewer than {k} folds")
    train_clips = [c for c in manifest.clips_for(train) if c.label >= 0]
    out = []
    for f in range(k):
        held = [c for c, g in zip(clips, fold) if g == f]
        held_subjects = {c.subject_id for c in held if c.subject_id}
        rest = [c.clip_id for c, g in zip(clips, fold) if g != f]
        kept = [c.clip_id for c in train_clips if c.subject_id not in held_subjects]
        out.append({
            "train": ClipSelection(f"fold{f + 1}-train", (train, source), frozenset(kept + rest)),
            "dev": ClipSelection(f"fold{f + 1}-dev", (source,), frozenset(c.clip_id for c in held)),
        })
    return out


def selected_clips(manifest, selection: ClipSelection) -> list:
    """The manifest's clips of a selection, in stored order (partition by partition).

    Args:
        manifest: the clip manifest.
        selection: the partitions and clip ids to keep.

    Returns:
        The manifest's clip entries in the selection.
    """
    return [c for p in selection.partitions for c in manifest.clips_for(p) if selection.contains(c.clip_id, p)]


def subjects_of(clips: Iterable) -> set[str]:
    """The known subjects of some clips.

    Args:
        clips: clip entries (with ``subject_id``).

    Returns:
        Their non-empty subject ids.

    >>> from types import SimpleNamespace as Clip
    >>> sorted(subjects_of([Clip(subject_id="s2"), Clip(subject_id=""), Clip(subject_id="s1")]))
    ['s1', 's2']
    """
    return {c.subject_id for c in clips if c.subject_id}

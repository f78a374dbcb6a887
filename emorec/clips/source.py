"""One labelled video clip to classify (AFEW-style), as the clip adapters list them.

A clip's id must be unique within a corpus. AFEW reuses file names across its
Train and Val folders, so its adapter prefixes the partition
(``train_000046280``); a clips CSV gives its own ids. ``classes`` is the whole
corpus's class list, the same tuple for every clip, so that ``label`` (an index
into it) means the same class everywhere; an unlabelled clip (a test set) has
``label = None``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

from emorec.errors import ConfigError
from emorec.schema import PARTITIONS

# The seven classes of EmotiW / AFEW in the order the challenge lists its folders.
EMOTIONS = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")

# Clip ids go into messages, manifests and cache file names.
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_clip_id(clip_id: str, where: str) -> str:
    """Return ``clip_id`` if it is a usable id, else raise ConfigError naming ``where``.

    Args:
        clip_id: the id to check.
        where: the file (and line) it comes from, for the message.

    Returns:
        The id, unchanged.

    Raises:
        ConfigError: the id is empty or holds characters other than letters,
            digits, ``_``, ``.`` and ``-`` (or starts with one of the last three).
    """
    if not _ID_PATTERN.match(clip_id or ""):
        raise ConfigError(
            f"{where}: clip id {clip_id!r} must start with a letter or digit and hold only "
            "letters, digits, '_', '.' and '-'"
        )
    return clip_id


@dataclasses.dataclass
class ClipSource:
    """Where one clip is and what it is labelled.

    ``subject_id`` is ``""`` where the corpus does not say (AFEW).
    """

    clip_id: str
    partition: str
    video: Path
    classes: tuple[str, ...]
    label: int | None = None
    subject_id: str = ""

    def __post_init__(self):
        self.video = Path(self.video)
        self.classes = tuple(self.classes)
        if self.partition not in PARTITIONS:
            raise ConfigError(
                f"clip {self.clip_id}: unknown partition {self.partition!r} "
                f"(expected one of {', '.join(PARTITIONS)})"
            )
        if (not self.classes or len(set(self.classes)) != len(self.classes)
                or not all(isinstance(c, str) and c for c in self.classes)):
            raise ConfigError(f"clip {self.clip_id}: classes must be distinct, non-empty names, got {self.classes!r}")
        if self.label is not None and not 0 <= self.label < len(self.classes):
            raise ConfigError(
                f"clip {self.clip_id}: label {self.label} is not an index into {len(self.classes)} classes"
            )

    @property
    def label_name(self) -> str:
        """The class name, ``""`` when unlabelled."""
        return "" if self.label is None else self.classes[self.label]


def check_clip_sources(sources: Iterable[ClipSource], where: str) -> list[ClipSource]:
    """Check a corpus's clips: unique ids, one shared class list; return them sorted.

    Args:
        sources: the clips.
        where: the corpus's path, for messages.

    Returns:
        The clips in partition order (train, dev, test), then by id.

    Raises:
        ConfigError: no clips, an id listed twice, or clips with different class lists.
    """
    seen: dict[str, ClipSource] = {}
    classes = None
    for source in sources:
        if source.clip_id in seen:
            raise ConfigError(
                f"{where}: clip id {source.clip_id!r} is listed twice "
                f"({seen[source.clip_id].video} and {source.video})"
            )
        if classes is None:
            classes = source.classes
        elif source.classes != classes:
            raise ConfigError(
                f"{where}: clip {source.clip_id} has classes {source.classes!r}, others {classes!r}"
            )
        seen[source.clip_id] = source
    if not seen:
        raise ConfigError(f"{where}: no clips found")
    return sorted(seen.values(), key=lambda s: (PARTITIONS.index(s.partition), s.clip_id))

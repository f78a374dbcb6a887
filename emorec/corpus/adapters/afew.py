"""The AFEW adapter: EmotiW's Acted Facial Expressions in the Wild as distributed, one class per folder.

Layout read (folder names case-insensitive)::

    SRC/Train_AFEW/<Class>/<name>.avi     (or SRC/Train/<Class>/...)  -> partition train
    SRC/Val_AFEW/<Class>/<name>.avi       (or SRC/Val/<Class>/...)    -> partition dev
    SRC/Test_AFEW/<name>.avi              (or SRC/Test/; optional)    -> partition test, unlabelled

Class folders are matched to the class list (default the seven EmotiW
classes) without regard to case, and a clip's label is the index of its
folder's class in that list. A test folder may also hold class folders, whose
clips are then labelled. AFEW reuses file names between Train and Val, so a
clip's id is its partition and name (``train_000046280``). AFEW gives no
subject ids: ``subject_id`` is empty.

Errors name the path: an unknown class folder or an ambiguous partition
folder (``Train_AFEW`` and ``Train`` both present) raise ConfigError; a class
folder without clips, an empty test folder or a folder with neither a train
nor a validation folder raise MediaError.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from emorec.clips.source import EMOTIONS, ClipSource, check_clip_id, check_clip_sources
from emorec.errors import ConfigError, MediaError

PARTITION_FOLDERS = {
    "train": ("Train_AFEW", "Train"),
    "dev": ("Val_AFEW", "Val"),
    "test": ("Test_AFEW", "Test"),
}
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _videos(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]


def partition_folders(root: Path) -> dict[str, Path]:
    """The partition folders present in ``root``: ``{"train": .../Train_AFEW, ...}``.

    Args:
        root: the AFEW folder; names are matched case-insensitively (:data:`PARTITION_FOLDERS`),
            hidden entries and files ignored.

    Returns:
        ``{partition: folder}`` for the partitions found (possibly none).

    Raises:
        ConfigError: two folders name the same partition (e.g. ``Train_AFEW`` and ``Train``).
    """
    found: dict[str, Path] = {}
    names = {name.lower(): partition for partition, names in PARTITION_FOLDERS.items() for name in names}
    for entry in _visible(root):
        partition = names.get(entry.name.lower())
        if partition is None or not entry.is_dir():
            continue
        if partition in found:
            raise ConfigError(
                f"{root}: both {found[partition].name}/ and {entry.name}/ hold the {partition} "
                "partition; keep one"
            )
        found[partition] = entry
    return found


def _class_clips(folder: Path, partition: str, classes: Sequence[str]) -> list[ClipSource]:
    """The clips of every class folder in a partition folder."""
    index = {name.lower(): k for k, name in enumerate(classes)}
    sources = []
    for entry in _visible(folder):
        if not entry.is_dir():
            continue
        label = index.get(entry.name.lower())
        if label is None:
            raise ConfigError(
                f"{entry}: unknown class folder {entry.name!r} (expected one of {', '.join(classes)}, "
                "any case); move it out of the AFEW folder"
            )
        videos = _videos(entry)
        if not videos:
            raise MediaError(
                f"{entry}: class folder holds no video clips ({', '.join(VIDEO_SUFFIXES)})"
            )
        for video in videos:
            clip_id = check_clip_id(f"{partition}_{video.stem}", str(video))
            sources.append(ClipSource(clip_id, partition, video, tuple(classes), label))
    return sources


def afew_sources(root, classes: Sequence[str] = EMOTIONS) -> list[ClipSource]:
    """The clips of an AFEW folder with their partitions and labels (see the module docstring).

    Args:
        root: the folder holding ``Train_AFEW/``, ``Val_AFEW/`` and optionally ``Test_AFEW/``.
        classes: the class list; folder names must match one of them (any case).

    Returns:
        The clips, train then dev then test, each by id.

    Raises:
        MediaError: no such folder, no train or validation folder, an empty class or test folder.
        ConfigError: an unknown class folder, two folders for one partition, an unusable
            file name, a clip listed twice.
    """
    root = Path(root)
    if not root.is_dir():
        raise MediaError(f"{root}: no such AFEW folder")
    folders = partition_folders(root)
    if "train" not in folders and "dev" not in folders:
        raise MediaError(
            f"{root}: no Train_AFEW/ or Val_AFEW/ folder (nor Train/, Val/); is it AFEW?"
        )
    sources: list[ClipSource] = []
    for partition in ("train", "dev"):
        if partition in folders:
            clips = _class_clips(folders[partition], partition, classes)
            if not clips:
                raise MediaError(f"{folders[partition]}: no class folders with clips")
            sources += clips
    if "test" in folders:
        folder = folders["test"]
        clips = [
            ClipSource(check_clip_id(f"test_{video.stem}", str(video)), "test", video, tuple(classes))
            for video in _videos(folder)
        ]
        clips += _class_clips(folder, "test", classes)
        if not clips:
            raise MediaError(f"{folder}: test folder holds no video clips ({', '.join(VIDEO_SUFFIXES)})")
        sources += clips
    return check_clip_sources(sources, str(root))

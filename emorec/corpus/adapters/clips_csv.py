"""The clips CSV adapter: one row per clip, for any clip-classification corpus.

Columns ``clip,partition,subject,video,label`` (header names any case, extra
columns ignored). ``partition`` is ``train``, ``dev`` or ``test``; ``video``
is resolved against the CSV's own folder when relative; ``subject`` may be
empty (unknown); ``label`` is a class name and may be empty only in the test
partition (unlabelled). The classes are, unless given, the distinct label
names sorted alphabetically (for the seven EmotiW classes, the AFEW order),
and a clip's label is its name's index among them.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from emorec.clips.source import ClipSource, check_clip_id, check_clip_sources
from emorec.errors import ConfigError, LabelError, MediaError
from emorec.schema import PARTITIONS

COLUMNS = ("clip", "partition", "subject", "video", "label")


def read_clips_csv(csv_path, classes: Sequence[str] | None = None) -> list[ClipSource]:
    """Read a clips CSV into clip sources; errors name the CSV and its line.

    Args:
        csv_path: the CSV.
        classes: the class list (labels must be among them); default: the sorted label names.

    Returns:
        The clips, train then dev then test, each by id.

    Raises:
        ConfigError: no such CSV, missing columns, an unknown partition, a bad or repeated clip id.
        MediaError: a video that does not exist.
        LabelError: a train or dev clip without a label, or a label not in ``classes``.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ConfigError(f"{csv_path}: no such clips CSV")
    base = csv_path.resolve().parent
    rows = []
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [(h or "").strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ConfigError(
                f"{csv_path}: missing column(s) {', '.join(missing)} (expected {','.join(COLUMNS)})"
            )
        reader.fieldnames = header
        for row in reader:
            where = f"{csv_path}: line {reader.line_num}"
            row = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if not any(row.values()):
                continue
            clip_id = check_clip_id(row["clip"], where)
            if row["partition"] not in PARTITIONS:
                raise ConfigError(
                    f"{where}: unknown partition {row['partition']!r} for clip {clip_id} "
                    f"(expected one of {', '.join(PARTITIONS)})"
                )
            if not row["label"] and row["partition"] != "test":
                raise LabelError(f"{where}: clip {clip_id} in partition {row['partition']} has no label")
            if not row["video"]:
                raise ConfigError(f"{where}: clip {clip_id} has no video")
            video = Path(row["video"]).expanduser()
            video = video if video.is_absolute() else base / video
            if not video.is_file():
                raise MediaError(f"{video}: no such video ({where}, clip {clip_id})")
            rows.append((where, clip_id, row["partition"], row["subject"], video, row["label"]))
    names = tuple(classes) if classes is not None else tuple(sorted({r[5] for r in rows if r[5]}))
    if not names:
        raise LabelError(f"{csv_path}: no labelled clip, so no classes")
    index = {name: k for k, name in enumerate(names)}
    sources = []
    for where, clip_id, partition, subject, video, label in rows:
        if label and label not in index:
            raise LabelError(
                f"{where}: clip {clip_id} has label {label!r}, not one of the classes {', '.join(names)}"
            )
        sources.append(ClipSource(clip_id, partition, video, names, index[label] if label else None, subject))
    return check_clip_sources(sources, str(csv_path))

"""The manifest CSV adapter: one row per recording, naming its files.

Columns ``recording,partition,subject,audio,video,labels``. ``audio`` or
``video`` may be empty (not both); ``labels`` names a ``time,arousal,valence``
CSV and may be empty for an unlabelled recording (e.g. a test partition);
``subject`` defaults to the recording id. Relative paths are resolved against
the CSV's own directory.
"""

from __future__ import annotations

import csv
from pathlib import Path

from emorec.corpus.adapters import check_recording_id, check_sources
from emorec.errors import ConfigError, MediaError
from emorec.media.files import file_problem
from emorec.recording import RecordingSource
from emorec.schema import PARTITIONS

COLUMNS = ("recording", "partition", "subject", "audio", "video", "labels")


def _resolve(base: Path, text: str, where: str, column: str) -> Path | None:
    text = text.strip()
    if not text:
        return None
    path = Path(text).expanduser()
    path = path if path.is_absolute() else base / path
    # An empty label file gets its own message from the label reader.
    problem = file_problem(path, allow_empty=column == "labels")
    if problem is not None:
        raise MediaError(f"{where}: {column} file {path} {problem}")
    return path


def read_recordings_csv(csv_path) -> list[RecordingSource]:
    """Read a manifest CSV into recording sources; errors name the CSV line.

    Header names are matched case-insensitively; blank rows are skipped; relative paths are
    resolved against the CSV's folder; an empty ``subject`` means the recording id.

    Args:
        csv_path: the CSV with the columns of :data:`COLUMNS`.

    Returns:
        The recordings, sorted by (partition, id).

    Raises:
        ConfigError: the CSV is missing, lacks a column, or a row has a bad id, an unknown
            partition, neither audio nor video, or an id listed twice; or no rows at all.
        MediaError: a named audio, video or label file is missing or unreadable (or empty,
            for audio and video).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ConfigError(f"{csv_path}: no such recordings CSV")
    base = csv_path.resolve().parent
    sources = []
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ConfigError(
                f"{csv_path}: missing column(s) {', '.join(missing)} "
                f"(expected {','.join(COLUMNS)})"
            )
        reader.fieldnames = header
        for row in reader:
            where = f"{csv_path}: line {reader.line_num}"
            row = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if not any(row.values()):
                continue
            rid = check_recording_id(row["recording"], where)
            if row["partition"] not in PARTITIONS:
                raise ConfigError(
                    f"{where}: unknown partition {row['partition']!r} for recording {rid} "
                    f"(expected one of {', '.join(PARTITIONS)})"
                )
            audio = _resolve(base, row["audio"], where, "audio")
            video = _resolve(base, row["video"], where, "video")
            if audio is None and video is None:
                raise ConfigError(f"{where}: recording {rid} has neither an audio nor a video file")
            labels = _resolve(base, row["labels"], where, "labels")
            sources.append(
                RecordingSource(
                    recording_id=rid,
                    partition=row["partition"],
                    subject_id=row["subject"] or rid,
                    audio=audio,
                    video=video,
                    labels=labels,
                )
            )
    return check_sources(sources, str(csv_path))

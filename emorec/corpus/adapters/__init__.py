"""Adapters: each turns one corpus layout into a list of :class:`RecordingSource`.

* ``manifest_csv``: a CSV listing every recording's files (the generic way in).
* ``recola``: RECOLA as distributed for AVEC 2016.
* ``demo``: writes the synthetic demo media, then reads them as a manifest CSV.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from emorec.errors import ConfigError
from emorec.recording import RecordingSource

# Recording ids become file names (<partition>/<id>.tfrecord).
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_recording_id(recording_id: str, where: str) -> str:
    """Return the id if it is usable as a shard file name, else raise ConfigError naming ``where``.

    Args:
        recording_id: the recording id (becomes ``<partition>/<id>.tfrecord``): a letter or
            digit, then letters, digits, ``_``, ``.`` and ``-``.
        where: the file (and line) the id came from, to start the error message.

    Returns:
        ``recording_id`` unchanged.

    Raises:
        ConfigError: the id is empty or holds other characters.

    >>> check_recording_id("dev_1", "recordings.csv: line 2")
    'dev_1'
    """
    if not _ID_PATTERN.match(recording_id or ""):
        raise ConfigError(
            f"{where}: recording id {recording_id!r} must start with a letter or digit and hold "
            "only letters, digits, '_', '.' and '-'"
        )
    return recording_id


def check_sources(sources: Iterable[RecordingSource], where: str) -> list[RecordingSource]:
    """Check ids are unique; return the sources sorted by (partition, id).

    Args:
        sources: the recordings an adapter found.
        where: the corpus file or folder they came from, to start error messages.

    Returns:
        The sources as a list sorted by ``(partition, recording_id)``.

    Raises:
        ConfigError: a recording id appears twice, or there are no recordings.
    """
    seen: dict[str, RecordingSource] = {}
    for source in sources:
        if source.recording_id in seen:
            raise ConfigError(f"{where}: recording id {source.recording_id!r} is listed twice")
        seen[source.recording_id] = source
    if not seen:
        raise ConfigError(f"{where}: no recordings found")
    return sorted(seen.values(), key=lambda s: (s.partition, s.recording_id))


def subjects_across_partitions(sources: Iterable[RecordingSource]) -> dict[str, list[str]]:
    """Subjects that appear in more than one partition, with their partitions.

    Args:
        sources: the recordings of a corpus.

    Returns:
        ``{subject_id: sorted partition names}`` for every subject found in two or more
        partitions (empty when the partitions are subject-independent).
    """
    partitions: dict[str, set[str]] = {}
    for source in sources:
        partitions.setdefault(source.subject_id, set()).add(source.partition)
    return {s: sorted(p) for s, p in partitions.items() if len(p) > 1}

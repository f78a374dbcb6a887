"""The RECOLA adapter, for the corpus as distributed for AVEC 2016.

Layout read (other folders, e.g. individual ratings, are ignored)::

    SRC/recordings_audio/{train,dev,test}_N.wav
    SRC/recordings_video/{train,dev,test}_N.mp4
    SRC/ratings_gold_standard/arousal/<recording>.arff
    SRC/ratings_gold_standard/valence/<recording>.arff
    SRC/features_<name>/[<sub-folder>/]<recording>.arff   (only the sets asked for)

Released feature sets (``features=("audio", "ECG", ...)``, ``emorec build
recola --features``) are read from ``features_<name>/`` (see
:mod:`emorec.features.arff`); with them the recordings may come from the
feature files alone (no ``recordings_*`` folder), for a dataset of features.

``split="avec"`` takes the partition from the file name (``train_1`` ->
train) and, unless a subject map says otherwise, uses the recording id as the
subject id. ``split="paper"`` takes the partition of every recording from the
subject map instead, for the paper's 16/15/15 subject split of the full
corpus. A recording without gold standard is unlabelled; only the test
partition may be.

Subject map: a CSV with header ``recording,subject,partition``; ``partition``
may be left out (or empty) with the AVEC split, where it must otherwise agree
with the file name.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from emorec.corpus.adapters import check_recording_id, check_sources, subjects_across_partitions
from emorec.errors import ConfigError, LabelError, MediaError
from emorec.media.labels import read_recola_gold
from emorec.recording import RecordingSource
from emorec.schema import MODALITIES, PARTITIONS

AUDIO_DIR = "recordings_audio"
VIDEO_DIR = "recordings_video"
GOLD_DIR = "ratings_gold_standard"
SPLITS = ("avec", "paper")
AUDIO_SUFFIXES = (".wav", ".flac")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
_AVEC_NAME = re.compile(r"^(train|dev|test)_\d+$")


def read_subject_map(path) -> dict[str, tuple[str, str | None]]:
    """Read a ``recording,subject,partition`` CSV into ``{recording: (subject, partition or None)}``.

    Args:
        path: the CSV; header ``recording,subject`` and optionally ``partition`` (any case, any
            column order); blank lines skipped.

    Returns:
        ``{recording id: (subject, partition or None)}``.

    Raises:
        ConfigError: no such file, missing columns, a recording listed twice or without subject,
            a bad recording id, or an unknown partition (naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such subject map")
    out: dict[str, tuple[str, str | None]] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        if "recording" not in header or "subject" not in header:
            raise ConfigError(f"{path}: needs the columns recording,subject[,partition]")
        reader.fieldnames = header
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            row = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if not any(row.values()):
                continue
            rid = check_recording_id(row["recording"], where)
            if rid in out:
                raise ConfigError(f"{where}: recording {rid} is listed twice")
            if not row["subject"]:
                raise ConfigError(f"{where}: recording {rid} has no subject")
            partition = row.get("partition") or None
            if partition is not None and partition not in PARTITIONS:
                raise ConfigError(
                    f"{where}: unknown partition {partition!r} for recording {rid} "
                    f"(expected one of {', '.join(PARTITIONS)})"
                )
            out[rid] = (row["subject"], partition)
    return out


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def recola_sources(
    root,
    split: str = "avec",
    subject_map=None,
    modalities: tuple[str, ...] = MODALITIES,
    features: tuple[str, ...] = (),
    reads_audio: bool | None = None,
) -> list[RecordingSource]:
    """The recordings of a RECOLA folder with their partitions, subjects, gold standard and feature files.

    Args:
        root: the RECOLA folder.
        split: ``avec`` or ``paper`` (see the module docstring).
        subject_map: the subject map CSV, or None.
        modalities: the modalities stored (their files must exist).
        features: released feature folders to attach (``source.features``).
        reads_audio: the audio is read (stored, or by a feature extractor); default: ``audio`` stored.

    Returns:
        One :class:`RecordingSource` per recording, in name order; test recordings without
        gold standard are unlabelled.

    Raises:
        ConfigError: an unknown split, ``paper`` without a subject map or with unmapped
            recordings, a file name that is not AVEC's under ``avec``, a map that disagrees
            with the names, or (``paper``) a subject in two partitions.
        MediaError: no RECOLA folder or recordings, a mapped recording without files, or a
            missing file of a stored modality.
        LabelError: a missing gold standard outside the test partition, or an unusable one.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ConfigError(f"unknown RECOLA split {split!r} (expected one of {', '.join(SPLITS)})")
    if not root.is_dir():
        raise MediaError(f"{root}: no such RECOLA folder")
    reads_audio = "audio" in modalities if reads_audio is None else reads_audio
    audio = _files(root / AUDIO_DIR, AUDIO_SUFFIXES)
    video = _files(root / VIDEO_DIR, VIDEO_SUFFIXES)
    released = {}
    if features:
        from emorec.corpus.features import discover_released

        released = {stem: path for files in discover_released(root, features).values()
                    for stem, path in files.items()}
    if not audio and not video and not (released and not modalities):
        raise MediaError(f"{root}: no recordings in {AUDIO_DIR}/ or {VIDEO_DIR}/ (is it RECOLA?)")
    if split == "paper" and subject_map is None:
        raise ConfigError("--split paper needs --subject-map CSV (recording,subject,partition)")
    mapping = read_subject_map(subject_map) if subject_map is not None else {}
    names = sorted(set(audio) | set(video) | (set(released) if not modalities else set()))
    if split == "paper":
        unmapped = [n for n in names if n not in mapping or mapping[n][1] is None]
        if unmapped:
            raise ConfigError(
                f"{subject_map}: no partition for recording(s) {', '.join(unmapped[:10])}"
            )
    absent = sorted(set(mapping) - set(names))
    if absent:
        raise MediaError(
            f"{subject_map}: recording(s) {', '.join(absent[:10])} have no file in "
            f"{root / AUDIO_DIR} or {root / VIDEO_DIR}"
        )

    sources = []
    for name in names:
        rid = check_recording_id(name, str(audio.get(name) or video.get(name)))
        subject, mapped_partition = mapping.get(name, (rid, None))
        if split == "paper":
            partition = mapped_partition
        else:
            match = _AVEC_NAME.match(name)
            if match is None:
                raise ConfigError(
                    f"{audio.get(name) or video.get(name)}: not an AVEC 2016 file name "
                    "(<train|dev|test>_N); use --split paper with a subject map"
                )
            partition = match.group(1)
            if mapped_partition is not None and mapped_partition != partition:
                raise ConfigError(
                    f"{subject_map}: recording {name} is in partition {partition} by its name "
                    f"but {mapped_partition} in the map"
                )
        if "video" in modalities and name not in video:
            raise MediaError(f"{root / VIDEO_DIR / (name + '.mp4')}: no such video (recording {name})")
        if "audio" in modalities and name not in audio and name not in video:
            raise MediaError(f"{root / AUDIO_DIR / (name + '.wav')}: no such audio (recording {name})")
        arousal = root / GOLD_DIR / "arousal" / f"{name}.arff"
        valence = root / GOLD_DIR / "valence" / f"{name}.arff"
        labels = None
        if arousal.is_file() and valence.is_file():
            labels = read_recola_gold(arousal, valence)
        elif arousal.is_file() or valence.is_file() or partition != "test":
            missing = valence if arousal.is_file() else arousal
            raise LabelError(
                f"{missing}: no gold standard for recording {name} (only the test partition "
                "may be unlabelled)"
            )
        sources.append(
            RecordingSource(
                recording_id=rid,
                partition=partition,
                subject_id=subject,
                audio=audio.get(name) if reads_audio else None,
                video=video.get(name),
                labels=labels,
                label_source=f"{arousal.parent.parent}/{{arousal,valence}}/{name}.arff",
            )
        )
    sources = check_sources(sources, str(root))
    if features:
        from emorec.corpus.features import attach_released_files

        attach_released_files(sources, root, features)
    if split == "paper":
        spanning = subjects_across_partitions(sources)
        if spanning:
            subject, parts = next(iter(spanning.items()))
            raise ConfigError(
                f"{subject_map}: subject {subject} is in partitions {', '.join(parts)}; "
                "the paper's split is subject-independent"
            )
    return sources

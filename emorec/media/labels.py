"""Continuous arousal/valence label tracks: CSV and AVEC 2016 ARFF readers, and the frame pairing.

Frame ``i`` covers ``[0.04 i, 0.04 (i + 1))``. With ``alignment="end"`` (the
original code) it gets the track linearly interpolated at ``0.04 (i + 1)``;
with ``"start"`` (End2You) at ``0.04 i``. Outside the track the edge value is
held; whether the track is long enough is the build's tolerance check.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from emorec.arff import read_arff_table
from emorec.errors import ConfigError, LabelError
from emorec.media.files import file_problem
from emorec.schema import DEFAULT_LABEL_ALIGNMENT, FRAME_PERIOD, LABEL_ALIGNMENTS

CSV_COLUMNS = ("time", "arousal", "valence")
ARFF_COLUMNS = ("frameTime", "GoldStandard")


@dataclasses.dataclass
class LabelTrack:
    """Label samples: ``times`` (N,) float64 seconds, ``values`` (N, 2) float32 [arousal, valence].

    Raises:
        ValueError: on creation, when ``times`` is not 1-D or ``values`` is not ``(N, 2)``.
    """

    times: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        self.times = np.asarray(self.times, dtype=np.float64)
        self.values = np.asarray(self.values, dtype=np.float32)
        n = len(self.times)
        if self.times.ndim != 1 or self.values.shape != (n, 2):
            raise ValueError(
                f"LabelTrack needs times (N,) and values (N, 2), got {self.times.shape} "
                f"and {self.values.shape}"
            )

    @property
    def duration(self) -> float:
        """Time of the last label sample in seconds (tracks start at the recording's start)."""
        return float(self.times[-1]) if len(self.times) else 0.0

    def __len__(self) -> int:
        return len(self.times)


def _check_series(path: Path, times: np.ndarray, values: np.ndarray, names, lines) -> None:
    """Raise LabelError for empty, non-finite or non-increasing label data.

    ``lines`` holds each data row's line number in the file, so errors can name it.
    """
    if len(times) == 0:
        raise LabelError(f"{path}: no label rows")
    columns = [("time", times)] + [(name, values[:, j]) for j, name in enumerate(names)]
    for name, column in columns:
        bad = np.flatnonzero(~np.isfinite(column))
        if bad.size:
            raise LabelError(f"{path}: line {lines[bad[0]]}: {name} is not a finite number")
    steps = np.flatnonzero(np.diff(times) <= 0)
    if steps.size:
        k = steps[0] + 1
        raise LabelError(
            f"{path}: line {lines[k]}: time {times[k]:g} does not increase "
            f"(previous {times[k - 1]:g})"
        )


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")  # reported by _check_series with its row


def read_label_csv(path) -> LabelTrack:
    """Read a ``time,arousal,valence`` CSV (extra columns ignored) into a LabelTrack.

    Header names are matched case-insensitively; blank rows are skipped.

    Args:
        path: the label CSV (times in seconds, strictly increasing).

    Returns:
        The :class:`LabelTrack`.

    Raises:
        LabelError: the file is missing, unreadable or empty, lacks a column, or has a short
            row, a value that is not a finite number, or a time that does not increase
            (naming the line).
    """
    path = Path(path)
    problem = file_problem(path, allow_empty=True)
    if problem is not None:
        raise LabelError(f"{path}: {'no such label file' if problem == 'does not exist' else problem}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise LabelError(
                f"{path}: empty label file (expected a header {','.join(CSV_COLUMNS)})"
            )
        names = [h.strip().lower() for h in header]
        missing = [c for c in CSV_COLUMNS if c not in names]
        if missing:
            raise LabelError(
                f"{path}: missing column(s) {', '.join(missing)} (header: {','.join(header)})"
            )
        index = [names.index(c) for c in CSV_COLUMNS]
        rows, lines = [], []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) <= max(index):
                raise LabelError(
                    f"{path}: line {reader.line_num}: {len(row)} fields, header has {len(names)}"
                )
            rows.append([_to_float(row[i]) for i in index])
            lines.append(reader.line_num)
    data = np.array(rows, dtype=np.float64).reshape(-1, 3)
    _check_series(path, data[:, 0], data[:, 1:], CSV_COLUMNS[1:], lines)
    return LabelTrack(data[:, 0], data[:, 1:])


def read_arff(path) -> tuple[np.ndarray, np.ndarray]:
    """Read an AVEC 2016 gold-standard ARFF: ``(times (N,) float64, values (N,) float32)``.

    Parsing is :func:`emorec.arff.read_arff_table`'s; a ``?`` rating is
    reported as not a finite number with its line.

    Args:
        path: the ARFF file with numeric ``frameTime`` (seconds) and ``GoldStandard`` attributes.

    Returns:
        ``(times, values)``: ``frameTime`` float64 and ``GoldStandard`` float32, both ``(N,)``.

    Raises:
        LabelError: an unreadable file, a missing or non-numeric attribute, no rows, a value
            that is not a finite number, or times that do not increase.
    """
    path = Path(path)
    table = read_arff_table(path, LabelError)
    columns = {name: table.find(name) for name in ARFF_COLUMNS}
    missing = [name for name, index in columns.items() if index is None]
    if missing:
        raise LabelError(f"{path}: missing attribute(s) {', '.join(missing)}")
    for index in columns.values():
        if not table.numeric_kind[index]:
            raise LabelError(f"{path}: attribute {table.names[index]} is not numeric")
    t = table.numeric[:, table.numeric_index(columns["frameTime"])]
    v = table.numeric[:, table.numeric_index(columns["GoldStandard"])].reshape(-1, 1)
    _check_series(path, t, v, ("GoldStandard",), table.lines)
    return t, v[:, 0].astype(np.float32)


def read_recola_gold(arousal_arff, valence_arff) -> LabelTrack:
    """Combine a recording's AVEC 2016 arousal and valence gold-standard ARFFs into a LabelTrack.

    Args:
        arousal_arff: the recording's arousal gold-standard ARFF.
        valence_arff: the recording's valence gold-standard ARFF.

    Returns:
        The :class:`LabelTrack` at the arousal file's times.

    Raises:
        LabelError: either file is unusable (see :func:`read_arff`), or their frame times
            differ (in count or by more than 1 µs).
    """
    t_a, arousal = read_arff(arousal_arff)
    t_v, valence = read_arff(valence_arff)
    if len(t_a) != len(t_v) or not np.allclose(t_a, t_v, rtol=0.0, atol=1e-6):
        raise LabelError(
            f"{arousal_arff} and {valence_arff}: frame times differ "
            f"({len(t_a)} rows up to {t_a[-1]:g} s vs {len(t_v)} rows up to {t_v[-1]:g} s)"
        )
    return LabelTrack(t_a, np.stack([arousal, valence], axis=1))


def label_times(num_frames: int, alignment: str = DEFAULT_LABEL_ALIGNMENT) -> np.ndarray:
    """Times (s) at which frames ``0 .. num_frames - 1`` take their labels under ``alignment``.

    Args:
        num_frames: number of 40 ms grid frames.
        alignment: ``"end"`` (the original code: frame ``i`` at ``0.04 (i + 1)``) or
            ``"start"`` (End2You: at ``0.04 i``).

    Returns:
        The ``(num_frames,)`` float64 times in seconds.

    Raises:
        ConfigError: an unknown ``alignment``.

    >>> label_times(3), label_times(3, "start")
    (array([0.04, 0.08, 0.12]), array([0.  , 0.04, 0.08]))
    """
    if alignment not in LABEL_ALIGNMENTS:
        raise ConfigError(
            f"unknown label_alignment {alignment!r} (expected one of {', '.join(LABEL_ALIGNMENTS)})"
        )
    offset = 1 if alignment == "end" else 0
    return (np.arange(num_frames, dtype=np.float64) + offset) * FRAME_PERIOD


def labels_for_frames(
    track: LabelTrack, num_frames: int, alignment: str = DEFAULT_LABEL_ALIGNMENT
) -> np.ndarray:
    """Labels ``(num_frames, 2)`` float32 for grid frames, interpolated at the aligned times.

    Outside the track the edge values are held (no extrapolation).

    Args:
        track: the recording's label samples.
        num_frames: number of 40 ms grid frames to label.
        alignment: ``"end"`` or ``"start"`` (see :func:`label_times`).

    Returns:
        The ``(num_frames, 2)`` float32 arousal and valence, linearly interpolated.

    Raises:
        ConfigError: an unknown ``alignment``.
        LabelError: an empty track.

    >>> track = LabelTrack([0.0, 0.08], [[0.0, 1.0], [0.8, -1.0]])
    >>> labels_for_frames(track, 3)  # times 0.04, 0.08, 0.12; the last holds the edge
    array([[ 0.4,  0. ],
           [ 0.8, -1. ],
           [ 0.8, -1. ]], dtype=float32)
    """
    times = label_times(num_frames, alignment)
    if len(track) == 0:
        raise LabelError("empty label track")
    out = np.empty((num_frames, 2), dtype=np.float32)
    for j in range(2):
        out[:, j] = np.interp(times, track.times, track.values[:, j].astype(np.float64))
    return out

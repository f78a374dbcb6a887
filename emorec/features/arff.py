"""The feature sets RECOLA ships for AVEC 2016, read from their ARFF files and put on emorec's frames.

Layout: ``SRC/features_<name>/`` holds either one ARFF per recording
(``train_1.arff`` …) or sub-folders of them. ``features_audio`` has
``arousal/`` and ``valence/`` sub-folders because its functionals use a
different window per dimension; each sub-folder is a set of its own, named
``<name>_<sub-folder>`` (``audio_arousal``, ``audio_valence``).

Each file has the attributes ``Instance_name`` (string, optional),
``frameTime`` (numeric, seconds) and then the numeric features, one row per
40 ms. A last attribute called ``class`` (Weka's place for a target) is not a
feature and is dropped.

Frames without a face have no features in the release's sense; Chen & Jin
pad such frames with zeros. Released rows holding NaN or inf are an error
unless ``fill="zero"`` asks for that padding.

:func:`align_features` pairs feature rows with emorec's frames by
``frameTime``: frame ``i`` takes the row at the time its label is taken
(:func:`emorec.media.labels.label_times`: ``0.04 (i + 1)`` with
``label_alignment = "end"``, ``0.04 i`` with ``"start"``), because the
released features share the gold standard's time grid. The length rules are
the labels' (:func:`emorec.alignment.reconcile`): a file that covers fewer
or more frames than the recording by at most ``tolerance_s`` is padded by
holding its last row, or trimmed, with a line in the report; a larger
difference raises :class:`~emorec.errors.AlignmentError`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from emorec.arff import read_arff_table
from emorec.errors import AlignmentError, ConfigError, MediaError
from emorec.schema import FRAME_PERIOD

log = logging.getLogger(__name__)

FOLDER_PREFIX = "features_"
TIME_ATTRIBUTE = "frameTime"
NAME_ATTRIBUTE = "Instance_name"
CLASS_ATTRIBUTE = "class"
FILL_MODES = ("error", "zero")
# Row spacing (relative to FRAME_PERIOD) beyond which a file is not on the 40 ms grid.
_PERIOD_TOLERANCE = 0.01
_RUNS_SHOWN = 4


@dataclasses.dataclass
class FeatureTable:
    """One recording's released features.

    ``names`` the feature attributes (after ``frameTime``), ``times`` ``(N,)``
    float64 seconds, ``values`` ``(N, D)`` float32, ``instance_names`` one per
    row (empty when the file has no ``Instance_name``), ``filled`` ``(N,)``
    bool: rows where ``fill="zero"`` replaced NaN or inf by zeros.
    """

    path: Path
    names: tuple[str, ...]
    times: np.ndarray
    values: np.ndarray
    instance_names: tuple[str, ...]
    filled: np.ndarray

    @property
    def dim(self) -> int:
        """Number of features per row."""
        return len(self.names)

    def __len__(self) -> int:
        return len(self.times)


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` of every run of consecutive values in sorted ``rows``."""
    breaks = np.flatnonzero(np.diff(rows) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(rows) - 1]])
    return [(int(rows[a]), int(rows[b])) for a, b in zip(starts, ends)]


def describe_frames(rows: np.ndarray, times: np.ndarray) -> str:
    """``"frames 3-5 (0.12-0.20 s), 9 (0.36 s)"`` for row indices ``rows``, the first few runs.

    Args:
        rows: sorted row (frame) indices.
        times: the time of every row, in seconds.

    Returns:
        ``"frames "`` and the runs of consecutive indices with their times, the first four
        of them, then how many more.

    >>> describe_frames(np.array([3, 4, 5, 9]), np.arange(12) * 0.04)
    'frames 3-5 (0.12-0.20 s), 9 (0.36 s)'
    """
    runs = _runs(np.asarray(rows))
    parts = [
        f"{a} ({times[a]:.2f} s)" if a == b else f"{a}-{b} ({times[a]:.2f}-{times[b]:.2f} s)"
        for a, b in runs[:_RUNS_SHOWN]
    ]
    more = f" and {len(runs) - _RUNS_SHOWN} more runs" if len(runs) > _RUNS_SHOWN else ""
    return "frames " + ", ".join(parts) + more


def read_feature_arff(path, fill: str = "error") -> FeatureTable:
    """Read one released feature file.

    Args:
        path: an ARFF file with ``frameTime`` and numeric feature attributes.
        fill: ``"error"`` (default) rejects NaN and inf in the features;
            ``"zero"`` replaces them by zeros (the paper's padding of frames
            without a face) and marks those rows in ``filled``.

    Returns:
        FeatureTable.

    Raises:
        MediaError: the parser's errors (see :func:`emorec.arff.read_arff_table`:
            malformed header, a value that is not a number with its line and
            column…), no ``frameTime``, an attribute before ``frameTime`` other
            than ``Instance_name``, a feature that is not numeric, no features
            or no rows, a ``frameTime`` that is not finite or does not
            increase, NaN or inf in the features (naming the frames) with
            ``fill="error"``.
        ConfigError: an unknown ``fill``.
    """
    if fill not in FILL_MODES:
        raise ConfigError(f"unknown fill {fill!r} (expected one of {', '.join(FILL_MODES)})")
    path = Path(path)
    table = read_arff_table(path, MediaError)
    t_col = table.find(TIME_ATTRIBUTE)
    if t_col is None:
        raise MediaError(f"{path}: no {TIME_ATTRIBUTE} attribute (attributes: {', '.join(table.names)})")
    name_col = table.find(NAME_ATTRIBUTE)
    for i, name in enumerate(table.names[:t_col]):
        if i != name_col:
            raise MediaError(
                f"{path}: attribute {name} comes before {TIME_ATTRIBUTE}; only {NAME_ATTRIBUTE} may"
            )
    if not table.numeric_kind[t_col]:
        raise MediaError(f"{path}: attribute {TIME_ATTRIBUTE} is not numeric")
    feature_cols = list(range(t_col + 1, len(table.names)))
    if feature_cols and table.names[feature_cols[-1]].lower() == CLASS_ATTRIBUTE:
        feature_cols.pop()
    for i in feature_cols:
        if not table.numeric_kind[i]:
            raise MediaError(f"{path}: feature attribute {table.names[i]} is not numeric")
    if not feature_cols:
        raise MediaError(f"{path}: no feature attributes after {TIME_ATTRIBUTE}")
    if len(table) == 0:
        raise MediaError(f"{path}: no data rows")

    times = table.numeric[:, table.numeric_index(t_col)]
    bad = np.flatnonzero(~np.isfinite(times))
    if bad.size:
        raise MediaError(f"{path}: line {table.lines[bad[0]]}: {TIME_ATTRIBUTE} is not a finite number")
    steps = np.flatnonzero(np.diff(times) <= 0)
    if steps.size:
        k = steps[0] + 1
        raise MediaError(
            f"{path}: line {table.lines[k]}: {TIME_ATTRIBUTE} {times[k]:g} does not increase "
            f"(previous {times[k - 1]:g})"
        )
    values = table.numeric[:, [table.numeric_index(i) for i in feature_cols]]
    finite = np.isfinite(values)
    filled = ~finite.all(axis=1)
    if filled.any():
        rows = np.flatnonzero(filled)
        columns = [table.names[feature_cols[j]] for j in np.flatnonzero(~finite.all(axis=0))]
        where = (
            f"NaN or inf in {rows.size} frames: {describe_frames(rows, times)}; first at line "
            f"{table.lines[rows[0]]}; feature(s) {', '.join(columns[:5])}"
            + (f" and {len(columns) - 5} more" if len(columns) > 5 else "")
        )
        if fill == "error":
            raise MediaError(f"{path}: {where} (--fill zero, fill='zero', pads them with zeros as the paper does)")
        log.warning("%s: %s; set to zero", path, where)
        values = np.where(finite, values, 0.0)
    names = tuple(table.names[i] for i in feature_cols)
    if name_col is None:
        instance_names: tuple[str, ...] = ()
    elif table.numeric_kind[name_col]:
        instance_names = tuple(f"{v:g}" for v in table.numeric[:, table.numeric_index(name_col)])
    else:
        instance_names = tuple(table.text[table.names[name_col]])
    return FeatureTable(path, names, times, values.astype(np.float32), instance_names, filled)


def _arff_files(folder: Path) -> dict[str, Path]:
    return {
        p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() == ".arff"
    }


def _sets_in(folder: Path, name: str) -> dict[str, dict[str, Path]]:
    files = _arff_files(folder)
    subs = {d.name: _arff_files(d) for d in sorted(folder.iterdir()) if d.is_dir()}
    subs = {k: v for k, v in subs.items() if v}
    if files and subs:
        raise ConfigError(
            f"{folder}: holds ARFF files and sub-folders of them ({', '.join(subs)}); "
            "expected one or the other"
        )
    if files:
        return {name: files}
    if subs:
        return {f"{name}_{sub}": found for sub, found in subs.items()}
    raise ConfigError(f"{folder}: no ARFF files, nor sub-folders with ARFF files")


def discover_feature_sets(src, requested: list[str]) -> dict[str, dict[str, Path]]:
    """Find the released feature sets ``requested`` under ``src``.

    A name ``N`` means ``src/features_N/``: its ARFF files are set ``N``; if
    it has sub-folders of ARFF files instead, each sub-folder ``S`` is set
    ``N_S``. ``N_S`` may also be asked for directly (``audio_arousal`` finds
    ``features_audio/arousal/``).

    Args:
        src: the corpus folder (RECOLA as released for AVEC 2016).
        requested: feature folder names without the ``features_`` prefix.

    Returns:
        ``{set name: {recording id (file stem): path}}`` in request order.

    Raises:
        ConfigError: ``src`` is not a folder, a requested feature folder does
            not exist (listing those that do), or one holds no ARFF files.
    """
    src = Path(src)
    if not src.is_dir():
        raise ConfigError(f"{src}: no such folder")
    available = sorted(
        p.name for p in src.iterdir() if p.is_dir() and p.name.startswith(FOLDER_PREFIX)
    )
    out: dict[str, dict[str, Path]] = {}
    for name in requested:
        folder = src / f"{FOLDER_PREFIX}{name}"
        base, _, sub = name.rpartition("_")
        if folder.is_dir():
            sets = _sets_in(folder, name)
        elif base and (src / f"{FOLDER_PREFIX}{base}" / sub).is_dir():
            files = _arff_files(src / f"{FOLDER_PREFIX}{base}" / sub)
            if not files:
                raise ConfigError(f"{src / f'{FOLDER_PREFIX}{base}' / sub}: no ARFF files")
            sets = {name: files}
        else:
            raise ConfigError(
                f"{folder}: no such feature folder (feature folders in {src}: "
                f"{', '.join(available) or 'none'})"
            )
        for set_name, files in sets.items():
            out.setdefault(set_name, files)
    return out


def read_feature_set(name: str, files: dict[str, Path], fill: str = "error") -> dict[str, FeatureTable]:
    """Read every recording's file of one set and check that they all have the same features.

    Args:
        name: the set's name (for messages).
        files: ``{recording id: path}`` as :func:`discover_feature_sets` gives.
        fill: as in :func:`read_feature_arff`.

    Returns:
        ``{recording id: FeatureTable}``.

    Raises:
        MediaError: a file's errors, or a file whose feature count or names
            differ from the first file's.
    """
    tables: dict[str, FeatureTable] = {}
    first: FeatureTable | None = None
    for recording_id, path in files.items():
        table = read_feature_arff(path, fill=fill)
        if first is None:
            first = table
        elif table.dim != first.dim:
            raise MediaError(
                f"{table.path}: {table.dim} features, but {first.path} has {first.dim} "
                f"(every recording of feature set {name} must have the same)"
            )
        elif table.names != first.names:
            k = next(i for i, (a, b) in enumerate(zip(table.names, first.names)) if a != b)
            raise MediaError(
                f"{table.path}: feature {k + 1} is {table.names[k]!r}, {first.path} has "
                f"{first.names[k]!r} there (feature set {name})"
            )
        tables[recording_id] = table
    return tables


def align_features(
    table: FeatureTable,
    num_frames: int,
    label_alignment: str,
    tolerance_s: float,
    recording_id: str | None = None,
    reference: tuple[str, str] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Feature rows for emorec's frames ``0 .. num_frames - 1``, matched by ``frameTime``.

    Frame ``i`` takes the row whose ``frameTime`` is nearest to its label
    time. Frames before the first row hold it, frames past the last row hold
    the last one; a frame inside the file with no row within half a frame
    (rows missing from the file) gets zeros. Each of these goes into the
    report.

    Args:
        table: the recording's features.
        num_frames: the recording's frame count (the reference length).
        label_alignment: ``"end"`` or ``"start"`` (see the module docstring).
        tolerance_s: largest length difference that is padded or trimmed.
        recording_id: for messages (default: the file's stem).
        reference: ``(stream name, path)`` of what ``num_frames`` was counted
            from, for messages (default: the recording).

    Returns:
        ``(values (num_frames, D) float32, report lines)``.

    Raises:
        AlignmentError: the rows start later than the first frame needs, or
            cover a length that differs from ``num_frames`` frames by more
            than ``tolerance_s``.
        MediaError: rows that are not ``FRAME_PERIOD`` apart.
    """
    from emorec.alignment import Stream, label_frames, reconcile
    from emorec.media.labels import label_times

    rid = recording_id or table.path.stem
    path = table.path
    times = np.asarray(table.times, dtype=np.float64)
    if len(times) >= 2:
        period = float(np.median(np.diff(times)))
        if abs(period - FRAME_PERIOD) > _PERIOD_TOLERANCE * FRAME_PERIOD:
            raise MediaError(
                f"{path}: rows are {period:g} s apart, emorec's frames {FRAME_PERIOD} s"
            )
    need = label_times(num_frames, label_alignment)
    if times[0] - need[0] > tolerance_s + 1e-9:
        raise AlignmentError(
            f"{path}: features start at {times[0]:.2f} s, the first frame needs a row at "
            f"{need[0]:.2f} s; more than the {tolerance_s} s tolerance (recording {rid})"
        )
    name, ref_path = reference or ("recording", rid)
    report = []
    line = reconcile(
        Stream(name, ref_path, num_frames),
        Stream("features", str(path), label_frames(times, label_alignment)),
        tolerance_s,
        rid,
    )
    if line is not None:
        report.append(line)

    after = np.clip(np.searchsorted(times, need), 0, len(times) - 1)
    before = np.clip(after - 1, 0, len(times) - 1)
    row = np.where(np.abs(times[before] - need) <= np.abs(times[after] - need), before, after)
    half = FRAME_PERIOD / 2 + 1e-6
    early = need < times[0] - half
    gap = (np.abs(times[row] - need) > half) & (need >= times[0]) & (need <= times[-1])
    values = table.values[row].astype(np.float32, copy=True)
    values[gap] = 0.0
    if early.any():
        report.append(
            f"{rid}: features {path} start at {times[0]:.2f} s; the first {int(early.sum())} "
            "frame(s) hold its first row"
        )
    if gap.any():
        report.append(
            f"{rid}: features {path} have no row within half a frame of "
            f"{describe_frames(np.flatnonzero(gap), need)}; those frames are zeros"
        )
    return values, report

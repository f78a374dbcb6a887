"""Face boxes and landmarks for every 40 ms frame of a video, and square face crops.

How :func:`track_faces` avoids running MTCNN on every full-size frame:

1. Each frame is shrunk so its longer side is at most ``detect_max_side``;
   the small copy is kept only until its chunk of frames is settled.
2. Every ``detect_every``-th frame (and the last one) is a *keyframe*.
   Keyframes are detected ``detect_batch`` at a time: MTCNN 1.0 runs a batch
   through its networks in one call per pyramid scale, so a batch of 8
   small frames costs about as much as 2-3 single calls.
3. Where one keyframe has a face and the next has none (or the reverse), the
   frames between them are detected too (``refine_edges``), so a stretch
   without a face starts and ends on the right frame instead of somewhere
   within ``detect_every`` frames.
4. The largest face of a detection is kept and made square (its longer side
   plus ``margin`` on each side). Centre, side and landmarks are interpolated
   linearly between consecutive detections; frames between two detections
   have ``found = 1``. Runs of failed detections up to ``max_gap`` frames long
   are bridged the same way (a detector missing a visible face for a frame or
   two); longer runs keep the nearest found box and landmarks with
   ``found = 0``, so no frame is ever dropped.
5. Box centre and side are smoothed with a centred moving average of
   ``smoothing`` frames within each run of found frames. The window shrinks
   symmetrically at the run's ends, so constant-velocity motion is left
   exactly as it is and only detection jitter is averaged out. Landmarks are
   interpolated but not smoothed: they are features, their motion is signal.

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` covers
``[j, j + 1) x [i, i + 1)``, so scaling an image by ``s`` scales every
coordinate by ``s``.

The detections (not the smoothed track) are cached per recording by
:func:`load_or_track_faces`, keyed by the video's content and the settings
that change detections (``detect_every``, ``detect_max_side``,
``min_confidence``, ``refine_edges``, the detector); margin, smoothing,
max_gap and the crop size are applied afterwards, so changing them does not
run the detector again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from emorec.errors import ConfigError, MediaError
from emorec.manifest import atomic_write_bytes
from emorec.schema import DEFAULT_FACE_SIZE, FRAME_PERIOD, NUM_LANDMARKS

logger = logging.getLogger(__name__)

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
TRACK_FORMAT_VERSION = 1
DETECTIONS_FORMAT_VERSION = 1
# Bytes read from each end of a video for its cache fingerprint.
FINGERPRINT_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class FaceConfig:
    """Settings of the face pipeline; the defaults are tuned in ``benchmarks/faces.py``.

    - ``detect_every`` (5): frames between keyframes. At 25 fps that is one
      detection per 0.2 s; a talking head barely moves in 0.2 s, and with
      ``detect_max_side = 320`` and batching the pipeline runs well above
      real time on 2 CPU cores.
    - ``detect_max_side`` (320): the longer side of the frame MTCNN sees.
      MTCNN's smallest face is 20 pixels at that scale, i.e. 40 pixels in a
      640 x 480 frame, far below a face in an emotion corpus.
    - ``detect_batch`` (8): keyframes per MTCNN call (speed only; results are
      the same as one call per frame, so it is not part of the cache key).
    - ``min_confidence`` (0.7): MTCNN's last-stage (ONet) threshold and the
      minimum confidence kept from any detector. The package default is 0.8;
      0.7 leaves headroom for the demo corpus's drawn cartoon faces, which
      MTCNN scores around 0.8, while blurred noise and plain backgrounds give
      no detection even at 0.5.
    - ``margin`` (0.2): fraction of the detected box's longer side added on
      every side of the square crop box (side = 1.4 x the face box), so the
      chin, forehead and cheeks are in the crop when the face moves between
      keyframes.
    - ``smoothing`` (5): frames in the centred moving average of box centre
      and side, one keyframe interval: it rounds off the corners linear
      interpolation leaves at keyframes and averages a keyframe's jitter with
      its neighbours'. Longer windows lag on a turning head: on the test
      video (a head drifting up to 4 px per frame) 11 frames raised the
      largest centre error from 2.7 to 4.1 px. 1 turns smoothing off.
    - ``max_gap`` (5): longest run of frames without a detection, between two
      detections, that still counts as face found (interpolated).
    - ``refine_edges`` (True): detect the frames between a keyframe with a
      face and one without, to place the edge of a face-less run exactly.

    Raises:
        ConfigError: on creation, for a setting out of its range.
    """

    detect_every: int = 5
    detect_max_side: int = 320
    detect_batch: int = 8
    min_confidence: float = 0.7
    margin: float = 0.2
    smoothing: int = 5
    max_gap: int = 5
    refine_edges: bool = True

    def __post_init__(self):
        checks = (
            (self.detect_every >= 1, "detect_every must be >= 1"),
            (self.detect_max_side >= 24, "detect_max_side must be >= 24 pixels"),
            (self.detect_batch >= 1, "detect_batch must be >= 1"),
            (0.0 <= self.min_confidence <= 1.0, "min_confidence must be in [0, 1]"),
            (self.margin >= 0.0, "margin must be >= 0"),
            (self.smoothing >= 1, "smoothing must be >= 1 frame"),
            (self.max_gap >= 0, "max_gap must be >= 0"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"face settings: {message}")

    def to_dict(self) -> dict:
        """The settings as a JSON-serialisable dict.

        Returns:
            ``{setting: value}`` for every field.
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FaceConfig:
        """Settings from a dict such as :meth:`to_dict` wrote; unknown keys are an error.

        Args:
            values: ``{setting: value}``; missing settings take their defaults.

        Returns:
            The checked :class:`FaceConfig`.

        Raises:
            ConfigError: an unknown key, or a value out of range.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"face settings: unknown key(s) {', '.join(unknown)} "
                f"(expected some of {', '.join(sorted(known))})"
            )
        return cls(**values)

    def detection_key(self) -> dict:
        """The settings that change what the detector returns (the cache key's part).

        Returns:
            ``detect_every``, ``detect_max_side``, ``min_confidence`` and ``refine_edges`` by name.

        >>> FaceConfig().detection_key()["detect_every"]
        5
        """
        return {
            "detect_every": self.detect_every,
            "detect_max_side": self.detect_max_side,
            "min_confidence": self.min_confidence,
            "refine_edges": self.refine_edges,
        }


def _npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _read_npz(path: Path, what: str, version: int) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise MediaError(f"{path}: {what} file does not exist") from None
    except Exception as exc:  # zip, pickle and value errors all mean "corrupt"
        raise MediaError(f"{path}: unreadable {what} file ({exc})") from exc
    found_version = int(arrays.get("format_version", -1))
    if found_version != version:
        raise MediaError(f"{path}: {what} format version {found_version}, expected {version}")
    return arrays


@dataclasses.dataclass
class FaceTrack:
    """Per-frame face boxes and landmarks of one video.

    ``boxes (N, 4)`` float32 square ``[x0, y0, x1, y1]`` in frame pixels (margin
    included), ``landmarks (N, 5, 2)`` float32 frame pixels in
    :data:`LANDMARK_NAMES` order, ``found (N,)`` int8 (0 = no face: box and
    landmarks are the nearest found frame's).

    Raises:
        ValueError: on creation, when the arrays' shapes disagree.
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float32)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
        self.found = np.asarray(self.found, dtype=np.int8)
        n = len(self.found)
        if (
            self.found.shape != (n,)
            or self.boxes.shape != (n, 4)
            or self.landmarks.shape != (n, NUM_LANDMARKS, 2)
        ):
            raise ValueError(
                f"face track shapes disagree: boxes {self.boxes.shape}, "
                f"landmarks {self.landmarks.shape}, found {self.found.shape}"
            )

    def __len__(self) -> int:
        return len(self.found)

    def missing_runs(self) -> list[tuple[int, int]]:
        """``(first, last)`` frame of every run of frames without a face (inclusive).

        Returns:
            The runs in frame order; empty when every frame has a face.

        >>> track = FaceTrack(np.zeros((5, 4)), np.zeros((5, 5, 2)), [1, 0, 0, 1, 0])
        >>> track.missing_runs()
        [(1, 2), (4, 4)]
        """
        missing = np.concatenate([[0], (self.found == 0).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(missing))
        return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]

    def save(self, path) -> None:
        """Write the track to an ``.npz`` file atomically.

        Args:
            path: the file to write (its folder must exist).
        """
        atomic_write_bytes(
            path,
            _npz_bytes(
                format_version=np.int64(TRACK_FORMAT_VERSION),
                boxes=self.boxes,
                landmarks=self.landmarks,
                found=self.found,
            ),
        )

    @classmethod
    def load(cls, path) -> FaceTrack:
        """Read a track written by :meth:`save`; a corrupt file raises :class:`MediaError`.

        Args:
            path: the ``.npz`` file.

        Returns:
            The :class:`FaceTrack`.

        Raises:
            MediaError: the file is missing, unreadable, of another format version, or holds
                arrays that are missing or disagree.
        """
        path = Path(path)
        arrays = _read_npz(path, "face track", TRACK_FORMAT_VERSION)
        try:
            return cls(arrays["boxes"], arrays["landmarks"], arrays["found"])
        except (KeyError, ValueError) as exc:
            raise MediaError(f"{path}: corrupt face track ({exc})") from exc


@dataclasses.dataclass
class FaceDetections:
    """The raw detector results of one video: what :func:`load_or_track_faces` caches.

    ``index (M,)`` frames that were detected (sorted), ``ok (M,)`` whether a
    face was kept, ``boxes (M, 4)`` the largest face's ``[x0, y0, x1, y1]``
    (not square, no margin) and ``landmarks (M, 5, 2)``, both in full-frame
    pixels (zeros where ``ok`` is 0), out of ``num_frames`` frames.
    """

    num_frames: int
    index: np.ndarray
    ok: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray

    def save(self, path) -> None:
        """Write the detections to an ``.npz`` file atomically.

        Args:
            path: the file to write (its folder must exist).
        """
        atomic_write_bytes(
            path,
            _npz_bytes(
                format_version=np.int64(DETECTIONS_FORMAT_VERSION),
                num_frames=np.int64(self.num_frames),
                index=np.asarray(self.index, dtype=np.int64),
                ok=np.asarray(self.ok, dtype=np.int8),
                boxes=np.asarray(self.boxes, dtype=np.float32),
                landmarks=np.asarray(self.landmarks, dtype=np.float32),
            ),
        )

    @classmethod
    def load(cls, path) -> FaceDetections:
        """Read detections written by :meth:`save`; a corrupt file raises :class:`MediaError`.

        Args:
            path: the ``.npz`` file.

        Returns:
            The checked :class:`FaceDetections`.

        Raises:
            MediaError: the file is missing, unreadable, of another format version, or its arrays
                are missing, inconsistent (shapes, frame indices not increasing or out of range)
                or hold NaN or inf for a kept face.
        """
        path = Path(path)
        arrays = _read_npz(path, "face detections", DETECTIONS_FORMAT_VERSION)
        try:
            detections = cls(
                int(arrays["num_frames"]),
                arrays["index"].astype(np.int64),
                arrays["ok"].astype(np.int8),
                arrays["boxes"].astype(np.float32),
                arrays["landmarks"].astype(np.float32),
            )
        except KeyError as exc:
            raise MediaError(f"{path}: corrupt face detections (missing {exc})") from exc
        m = len(detections.index)
        if (
            detections.ok.shape != (m,)
            or detections.boxes.shape != (m, 4)
            or detections.landmarks.shape != (m, NUM_LANDMARKS, 2)
            or (m and (detections.index[0] < 0 or detections.index[-1] >= detections.num_frames))
            or np.any(np.diff(detections.index) <= 0)
        ):
            raise MediaError(f"{path}: corrupt face detections (inconsistent arrays)")
        bad = detections.first_non_finite()
        if bad is not None:
            raise MediaError(f"{path}: corrupt face detections (NaN or inf at frame {bad})")
        return detections

    def first_non_finite(self) -> int | None:
        """The first frame whose kept face has a NaN or infinite box or landmark, or None.

        Returns:
            The frame index (of the video, not of the detections), or None when all are finite.
        """
        ok = self.ok.astype(bool)
        finite = np.isfinite(self.boxes).all(axis=1) & np.isfinite(self.landmarks).all(axis=(1, 2))
        bad = np.flatnonzero(ok & ~finite)
        return int(self.index[bad[0]]) if bad.size else None


# --- the detector -----------------------------------------------------------

_DETECTOR = None
_DETECTOR_LOCK = threading.Lock()


def default_detector():
    """The process-wide MTCNN detector, built on first use (loading it imports TensorFlow).

    Its networks run as traced graphs (:mod:`emorec.media.mtcnn_graph`): the
    same detections, about 3x faster than mtcnn's eager calls.

    Returns:
        The shared ``mtcnn.MTCNN`` instance (thread-safe creation).
    """
    global _DETECTOR
    with _DETECTOR_LOCK:
        if _DETECTOR is None:
            from mtcnn import MTCNN

            from emorec.media.mtcnn_graph import trace_mtcnn_networks

            detector = MTCNN()
            trace_mtcnn_networks(detector)
            _DETECTOR = detector
        return _DETECTOR


def _is_mtcnn(detector) -> bool:
    return type(detector).__module__.split(".")[0] == "mtcnn"


def detector_name(detector) -> str:
    """A name for the detector's kind and version, part of the cache key.

    Args:
        detector: the detector object, or None for the default MTCNN.

    Returns:
        ``mtcnn-<version>`` for MTCNN, else the detector's ``module.QualifiedClassName``.
    """
    if detector is None or _is_mtcnn(detector):
        from importlib.metadata import version

        return f"mtcnn-{version('mtcnn')}"
    kind = type(detector)
    return f"{kind.__module__}.{kind.__qualname__}"


def _largest(rows: np.ndarray, min_confidence: float) -> np.ndarray | None:
    """The largest-area row of ``(n, 15)`` ``[x0, y0, x1, y1, conf, 10 landmark coords]``."""
    rows = rows[rows[:, 4] >= min_confidence]
    if len(rows) == 0:
        return None
    area = (rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1])
    return rows[int(np.argmax(area))]


def _rows_from_dicts(faces) -> np.ndarray:
    rows = []
    for face in faces:
        x, y, w, h = (float(v) for v in face["box"])
        points = [face["keypoints"][name] for name in LANDMARK_NAMES]
        rows.append([x, y, x + w, y + h, float(face["confidence"])] + [float(v) for p in points for v in p])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5 + 2 * NUM_LANDMARKS)


def detect_largest(detector, images: list[np.ndarray], config: FaceConfig) -> list[np.ndarray | None]:
    """The largest face of each image as a 15-value row in that image's pixels, or None.

    Args:
        detector: an MTCNN instance (one batched call), or any object whose
            ``detect_faces(image)`` returns MTCNN-style dicts (``box`` as x, y, w, h,
            ``confidence``, ``keypoints``).
        images: RGB uint8 ``(H, W, 3)`` images.
        config: the face settings (``min_confidence`` drops weaker faces).

    Returns:
        Per image, the largest-area face above ``min_confidence`` as
        ``[x0, y0, x1, y1, confidence, x, y of the 5 landmarks]`` (float64), or None.
    """
    if not images:
        return []
    if _is_mtcnn(detector):
        # Unclipped boxes (fit_to_image=False): a face leaving the frame keeps
        # its size and centre, and crop_face pads instead.
        result = detector.detect_faces(
            list(images),
            output_type="numpy",
            box_format="xyxy",
            fit_to_image=False,
            threshold_onet=config.min_confidence,
        )
        result = np.asarray(result, dtype=np.float64).reshape(-1, 16)
        # MTCNN's rows are [image, x0, y0, x1, y1, conf, 5 x's, 5 y's] (landmarks
        # in LANDMARK_NAMES order); interleave the landmarks as (x, y) pairs.
        result = np.concatenate(
            [result[:, :6], np.stack([result[:, 6:11], result[:, 11:16]], axis=2).reshape(-1, 10)],
            axis=1,
        )
        return [
            _largest(result[result[:, 0] == i, 1:], config.min_confidence)
            for i in range(len(images))
        ]
    return [_largest(_rows_from_dicts(detector.detect_faces(image)), config.min_confidence) for image in images]


# --- detection over a stream ------------------------------------------------


def _shrink(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float, float]:
    """The frame scaled so its longer side is <= ``max_side``, and the x and y scales."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise MediaError(f"expected RGB uint8 (H, W, 3) frames, got {frame.dtype} {frame.shape}")
    height, width = frame.shape[:2]
    if max(height, width) <= max_side:
        return frame, 1.0, 1.0
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return small, size[0] / width, size[1] / height


class _Detections:
    """Streaming keyframe detection: holds the small copies of one chunk of frames."""

    def __init__(self, detector, config: FaceConfig):
        self.detector = detector
        self.config = config
        self.pending: list[tuple[int, np.ndarray, float, float]] = []
        self.pending_keys = 0
        self.last_key: int | None = None  # the last detected keyframe of earlier chunks
        self.results: dict[int, np.ndarray | None] = {}

    def add(self, index: int, frame: np.ndarray) -> None:
        small, sx, sy = _shrink(frame, self.config.detect_max_side)
        if small is frame:
            small = small.copy()  # the caller may reuse its frame buffer
        self.pending.append((index, small, sx, sy))
        if index % self.config.detect_every == 0:
            self.pending_keys += 1
            if self.pending_keys >= self.config.detect_batch:
                self.flush(final=False)

    def _run(self, entries) -> None:
        batch = self.config.detect_batch
        for start in range(0, len(entries), batch):
            chunk = entries[start : start + batch]
            rows = detect_largest(self.detector, [e[1] for e in chunk], self.config)
            for (index, _, sx, sy), row in zip(chunk, rows):
                if row is not None:
                    row = row.copy()
                    row[[0, 2, 5, 7, 9, 11, 13]] /= sx
                    row[[1, 3, 6, 8, 10, 12, 14]] /= sy
                self.results[index] = row

    def flush(self, final: bool) -> None:
        """Detect the pending keyframes (and the last frame if ``final``), then refine edges."""
        if not self.pending:
            return
        last_index = self.pending[-1][0]
        keys = [
            e for e in self.pending
            if e[0] % self.config.detect_every == 0 or (final and e[0] == last_index)
        ]
        self._run(keys)
        if self.config.refine_edges:
            bounds = ([] if self.last_key is None else [self.last_key]) + [e[0] for e in keys]
            between = []
            for a, b in zip(bounds, bounds[1:]):
                if (self.results[a] is None) != (self.results[b] is None):
                    between += [e for e in self.pending if a < e[0] < b]
            self._run(between)
        if keys:
            self.last_key = keys[-1][0]
            self.pending = [e for e in self.pending if e[0] > keys[-1][0]]
        self.pending_keys = 0

    def finish(self, num_frames: int) -> FaceDetections:
        index = np.array(sorted(self.results), dtype=np.int64)
        ok = np.array([self.results[i] is not None for i in index], dtype=np.int8)
        rows = np.zeros((len(index), 15), dtype=np.float64)
        for j, i in enumerate(index):
            if ok[j]:
                rows[j] = self.results[i]
        return FaceDetections(
            num_frames=num_frames,
            index=index,
            ok=ok,
            boxes=rows[:, :4].astype(np.float32),
            landmarks=rows[:, 5:].reshape(-1, NUM_LANDMARKS, 2).astype(np.float32),
        )


def detect_keyframes(
    frames: Iterable[np.ndarray],
    config: FaceConfig = FaceConfig(),
    detector=None,
    num_frames: int | None = None,
    progress: bool = True,
    source: str | None = None,
) -> FaceDetections:
    """Run the detector over a frame stream on keyframes (and gap edges) only.

    Args:
        frames: RGB uint8 ``(H, W, 3)`` frames, in order.
        config: the face settings (keyframe spacing, detection size, batch, threshold,
            edge refinement).
        detector: the detector (see :func:`detect_largest`); None for :func:`default_detector`.
        num_frames: read at most this many frames (also the progress bar's total); None
            reads the stream to its end.
        progress: show a progress bar.
        source: the video's name, for messages.

    Returns:
        The :class:`FaceDetections` of the detected frames, out of the frames read.

    Raises:
        MediaError: a frame that is not RGB uint8 (naming the frame), or no frames at all.
    """
    from tqdm import tqdm

    if detector is None:
        detector = default_detector()
    state = _Detections(detector, config)
    stream = frames if num_frames is None else itertools.islice(frames, num_frames)
    count = 0
    bar = tqdm(
        stream, total=num_frames, unit="frame", desc=f"faces {source}" if source else "faces",
        disable=not progress, leave=False,
    )
    try:
        for count, frame in enumerate(bar, start=1):
            try:
                state.add(count - 1, frame)
            except MediaError as exc:
                where = f"{source}: " if source else ""
                raise MediaError(f"{where}frame {count - 1}: {exc}") from None
        state.flush(final=True)
    finally:
        bar.close()
    if count == 0:
        raise MediaError(f"{source or 'video'}: no video frames to look for faces in")
    return state.finish(count)


# --- from detections to a per-frame track -----------------------------------


def square_boxes(boxes: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``(M, 2)`` and sides ``(M,)`` of the square boxes with ``margin`` on every side.

    Args:
        boxes: ``(M, 4)`` detected boxes ``[x0, y0, x1, y1]`` in pixels.
        margin: fraction of each box's longer side added on every side.

    Returns:
        ``(centres, sides)``: box centres ``(M, 2)`` as ``(x, y)`` and square sides ``(M,)``,
        ``longer side * (1 + 2 * margin)``.

    >>> centres, sides = square_boxes(np.array([[10.0, 20.0, 30.0, 60.0]]), 0.25)
    >>> centres.tolist(), sides.tolist()
    ([[20.0, 40.0]], [60.0])
    """
    centre = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + 2 * margin)
    return centre, side


def _run_mean(values: np.ndarray, radius: int) -> np.ndarray:
    """Centred moving average along axis 0 whose window shrinks symmetrically at the ends."""
    n = len(values)
    if radius == 0 or n < 3:
        return values
    j = np.arange(n)
    r = np.minimum(radius, np.minimum(j, n - 1 - j))
    sums = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    width = (2 * r + 1).reshape((-1,) + (1,) * (values.ndim - 1))
    return (sums[j + r + 1] - sums[j - r]) / width


def build_track(detections: FaceDetections, config: FaceConfig = FaceConfig(), source: str | None = None) -> FaceTrack:
    """Interpolate, bridge and smooth keyframe detections into one box per frame.

    See the module docstring for the rules (steps 4 and 5).

    Args:
        detections: the detector's results for the video.
        config: the face settings (``margin``, ``max_gap``, ``smoothing``).
        source: the video's name, for messages.

    Returns:
        The :class:`FaceTrack` of all ``detections.num_frames`` frames.

    Raises:
        MediaError: a kept face with NaN or inf, or no face in any searched frame.
    """
    n = detections.num_frames
    bad = detections.first_non_finite()
    if bad is not None:
        # A box or landmark that is not a number would become a black crop or zero landmarks.
        raise MediaError(
            f"{source or 'video'}: the face detector returned NaN or inf for the face of frame "
            f"{bad} ({bad * FRAME_PERIOD:.2f} s)"
        )
    good = detections.ok.astype(bool)
    if not good.any():
        raise MediaError(
            f"{source or 'video'}: no detectable face in any of its {n} frames "
            f"({len(detections.index)} frames searched, min_confidence {config.min_confidence})"
        )
    good_index = detections.index[good]
    failed_index = detections.index[~good]
    centre, side = square_boxes(detections.boxes[good].astype(np.float64), config.margin)
    points = detections.landmarks[good].astype(np.float64)

    frames = np.arange(n)
    # Nearest good detection at or before (p) and at or after (q) every frame.
    p = np.searchsorted(good_index, frames, side="right") - 1
    q = np.searchsorted(good_index, frames, side="left")
    bracketed = (p >= 0) & (q < len(good_index))
    p, q = np.clip(p, 0, None), np.minimum(q, len(good_index) - 1)
    p_frame, q_frame = good_index[p], good_index[q]
    failures = np.searchsorted(failed_index, q_frame) - np.searchsorted(failed_index, p_frame, side="right")
    found = bracketed & ((failures == 0) | (q_frame - p_frame - 1 <= config.max_gap))

    span = np.maximum(q_frame - p_frame, 1)
    t = np.where(q_frame > p_frame, (frames - p_frame) / span, 0.0)
    track_centre = centre[p] + (centre[q] - centre[p]) * t[:, None]
    track_side = side[p] + (side[q] - side[p]) * t
    track_points = points[p] + (points[q] - points[p]) * t[:, None, None]

    # Smooth inside every run of found frames.
    radius = config.smoothing // 2
    edges = np.flatnonzero(np.diff(np.concatenate([[0], found.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2]):
        track_centre[a:b] = _run_mean(track_centre[a:b], radius)
        track_side[a:b] = _run_mean(track_side[a:b], radius)

    # Frames without a face copy the nearest found frame (the earlier one on a tie).
    found_frames = np.flatnonzero(found)
    k = np.searchsorted(found_frames, frames)
    before = found_frames[np.clip(k - 1, 0, len(found_frames) - 1)]
    later = found_frames[np.clip(k, 0, len(found_frames) - 1)]
    nearest = np.where(
        (k == 0) | ((k < len(found_frames)) & (later - frames < frames - before)), later, before
    )
    source_frame = np.where(found, frames, nearest)
    track_centre, track_side = track_centre[source_frame], track_side[source_frame]
    track_points = track_points[source_frame]

    half = track_side[:, None] / 2
    boxes = np.concatenate([track_centre - half, track_centre + half], axis=1)
    return FaceTrack(boxes, track_points, found)


def track_faces(
    frames: Iterable[np.ndarray],
    config: FaceConfig = FaceConfig(),
    detector=None,
    num_frames: int | None = None,
    progress: bool = True,
    source: str | None = None,
) -> FaceTrack:
    """Face box and landmarks for every frame of a stream (see the module docstring).

    Args:
        frames: RGB uint8 ``(H, W, 3)`` frames, in order.
        config: the face settings.
        detector: the detector; None for :func:`default_detector`.
        num_frames: read at most this many frames; None reads the stream to its end.
        progress: show a progress bar.
        source: the video's name, for messages.

    Returns:
        The :class:`FaceTrack`, one entry per frame read.

    Raises:
        MediaError: see :func:`detect_keyframes` and :func:`build_track`.
    """
    detections = detect_keyframes(frames, config, detector, num_frames, progress, source)
    return build_track(detections, config, source)


# --- crops ------------------------------------------------------------------


def crop_face(
    frame: np.ndarray, box, landmarks, size: int = DEFAULT_FACE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Square ``(size, size, 3)`` uint8 crop of ``box`` and the landmarks in crop pixels.

    The box is rounded to whole pixels; parts outside the frame are black (padded, not
    shifted, so the landmarks keep their place); the region is resized with area
    (shrinking) or bilinear (enlarging) interpolation.

    Args:
        frame: the RGB uint8 ``(H, W, 3)`` frame.
        box: square ``[x0, y0, x1, y1]`` in frame pixels (only ``x1 - x0`` gives the side).
        landmarks: ``(5, 2)`` ``(x, y)`` in frame pixels.
        size: side of the crop in pixels.

    Returns:
        ``(crop, points)``: the ``(size, size, 3)`` uint8 crop and the ``(5, 2)`` float32
        landmarks in crop pixels.

    >>> frame = np.full((4, 4, 3), 200, np.uint8)
    >>> crop, points = crop_face(frame, [2.0, 2.0, 6.0, 6.0], np.full((5, 2), 3.0), size=8)
    >>> crop.shape, crop[0, 0].tolist(), crop[-1, -1].tolist(), points[0].tolist()
    ((8, 8, 3), [200, 200, 200], [0, 0, 0], [2.0, 2.0])
    """
    box = np.asarray(box, dtype=np.float64)
    x0, y0 = int(np.floor(box[0] + 0.5)), int(np.floor(box[1] + 0.5))
    side = max(1, int(np.floor(box[2] - box[0] + 0.5)))
    height, width = frame.shape[:2]
    ax0, ay0 = max(x0, 0), max(y0, 0)
    ax1, ay1 = min(x0 + side, width), min(y0 + side, height)
    if ax0 == x0 and ay0 == y0 and ax1 == x0 + side and ay1 == y0 + side:
        region = frame[y0 : y0 + side, x0 : x0 + side]
    else:
        # Pad rather than shift the box, so the landmarks keep their place.
        region = np.zeros((side, side, 3), dtype=np.uint8)
        if ax1 > ax0 and ay1 > ay0:
            region[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = frame[ay0:ay1, ax0:ax1]
    if side == size:
        crop = np.ascontiguousarray(region)
    else:
        method = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        crop = cv2.resize(region, (size, size), interpolation=method)
    scale = size / side
    points = (np.asarray(landmarks, dtype=np.float64) - [x0, y0]) * scale
    return crop, points.astype(np.float32)


# --- the per-recording cache ------------------------------------------------


def default_cache_dir() -> Path:
    """``$EMOREC_FACE_CACHE``, else ``$XDG_CACHE_HOME/emorec/faces`` (``~/.cache/emorec/faces``).

    Returns:
        The folder for cached face detections (not created here).
    """
    if os.environ.get("EMOREC_FACE_CACHE"):
        return Path(os.environ["EMOREC_FACE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "emorec" / "faces"


def video_fingerprint(path) -> str:
    """SHA-256 of a video's size and its first and last MiB.

    Reading 2 MiB is instant even for hour-long recordings, while any re-encode
    changes the header and the index at the end (mp4 ``moov``, mkv cues).
    Modification times are left out so that a copied corpus keeps its cache.

    Args:
        path: the video file.

    Returns:
        The hex digest (64 characters).

    Raises:
        MediaError: the file cannot be read.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        digest = hashlib.sha256(str(size).encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(FINGERPRINT_CHUNK))
            if size > FINGERPRINT_CHUNK:
                handle.seek(max(FINGERPRINT_CHUNK, size - FINGERPRINT_CHUNK))
                digest.update(handle.read(FINGERPRINT_CHUNK))
    except OSError as exc:
        raise MediaError(f"{path}: cannot read video ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def cache_path(video_path, config: FaceConfig = FaceConfig(), cache_dir=None, detector=None) -> Path:
    """Where :func:`load_or_track_faces` keeps the detections of ``video_path``.

    Args:
        video_path: the video file (read for its fingerprint).
        config: the face settings (only :meth:`FaceConfig.detection_key` enters the name).
        cache_dir: the cache folder; None for :func:`default_cache_dir`.
        detector: the detector (its :func:`detector_name` enters the name); None for MTCNN.

    Returns:
        ``<cache_dir>/<stem>.<fingerprint[:20]>.<settings hash[:12]>.faces.npz``.

    Raises:
        MediaError: the video cannot be read.
    """
    video_path = Path(video_path)
    settings = dict(config.detection_key(), detector=detector_name(detector))
    settings_hash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return directory / (
        f"{video_path.stem}.{video_fingerprint(video_path)[:20]}.{settings_hash[:12]}.faces.npz"
    )


def load_or_track_faces(
    video_path,
    config: FaceConfig = FaceConfig(),
    cache_dir=None,
    frames_factory: Callable[[], Iterator[np.ndarray]] | None = None,
    progress: bool = True,
    detector=None,
) -> FaceTrack:
    """The video's face track, detecting only when no cached detections match it.

    The cache matches on the video's content and the settings that change detections.

    A corrupt cache file is ignored (with a warning) and rewritten.

    Args:
        video_path: the video file.
        config: the face settings.
        cache_dir: the cache folder; None for :func:`default_cache_dir`.
        frames_factory: a callable returning a fresh iterator of RGB uint8 frames; None reads
            the video's 40 ms grid frames (``iter_grid_frames``).
        progress: show a progress bar while detecting.
        detector: the detector; None for :func:`default_detector`.

    Returns:
        The :class:`FaceTrack` (margin, smoothing and gap bridging applied to the detections).

    Raises:
        MediaError: the video cannot be read or decoded, or has no detectable face.
    """
    video_path = Path(video_path)
    path = cache_path(video_path, config, cache_dir, detector)
    detections = None
    if path.exists():
        try:
            detections = FaceDetections.load(path)
        except MediaError as exc:
            logger.warning("%s; detecting the faces again", exc)
            detections = None
    if detections is None:
        num_frames = None
        if frames_factory is None:
            from emorec.media.video import iter_grid_frames, probe_media

            num_frames = probe_media(video_path).grid_frames

            def frames_factory():
                return iter_grid_frames(video_path, num_frames)

        detections = detect_keyframes(
            frames_factory(), config, detector, num_frames, progress, str(video_path)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        detections.save(path)
    return build_track(detections, config, str(video_path))

"""Cutting a recording's frames into fixed-length windows, streaming.

A recording of ``N`` frames gives windows starting at ``0, H, 2H, ...`` of
``W`` frames each; the windows stop at the first one that reaches the end of
the recording. That last window is padded to ``W`` frames (``valid = 0`` on
the padding) rather than dropped, so every frame of a recording is stored and
evaluation sees the whole recording.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from emorec.errors import ConfigError
from emorec.schema import FRAME_PERIOD, FRAME_SAMPLES, NUM_LANDMARKS, WindowRecord


def seconds_to_frames(seconds: float, what: str = "window") -> int:
    """Whole number of 40 ms frames in ``seconds``; error if it is not a positive multiple.

    Args:
        seconds: a duration in seconds.
        what: what the duration is, named in the error message.

    Returns:
        ``seconds`` divided by :data:`~emorec.schema.FRAME_PERIOD` (within 1e-6 s).

    Raises:
        ConfigError: ``seconds`` is not a positive whole number of frames.

    >>> seconds_to_frames(6.0), seconds_to_frames(0.2)
    (150, 5)
    """
    frames = round(seconds / FRAME_PERIOD)
    if frames < 1 or abs(frames * FRAME_PERIOD - seconds) > 1e-6:
        raise ConfigError(
            f"{what} of {seconds} s is not a positive multiple of the {FRAME_PERIOD} s frame"
        )
    return int(frames)


def check_window(window: int, hop: int) -> None:
    """Raise ConfigError unless ``1 <= hop <= window`` (a larger hop would skip frames).

    Args:
        window: frames per window.
        hop: frames between the starts of consecutive windows.

    Raises:
        ConfigError: ``window < 1``, or ``hop`` is outside ``[1, window]``.

    >>> check_window(10, 10)
    >>> check_window(10, 11)
    Traceback (most recent call last):
    ...
    emorec.errors.ConfigError: hop must be between 1 and the window (10 frames), got 11
    """
    if window < 1:
        raise ConfigError(f"window must be at least one frame, got {window}")
    if not 1 <= hop <= window:
        raise ConfigError(f"hop must be between 1 and the window ({window} frames), got {hop}")


def window_starts(num_frames: int, window: int, hop: int) -> list[int]:
    """First frames of the windows of a ``num_frames`` recording (the last one may be partial).

    Args:
        num_frames: frames in the recording.
        window: frames per window.
        hop: frames between window starts.

    Returns:
        The start frames ``0, hop, 2 * hop, ...``, up to and including the first window that reaches
        frame ``num_frames - 1``; empty when ``num_frames`` is 0.

    Raises:
        ConfigError: an invalid ``window``/``hop`` (:func:`check_window`).

    >>> window_starts(23, 10, 10), window_starts(12, 5, 1)[-1]
    ([0, 10, 20], 7)
    """
    check_window(window, hop)
    starts: list[int] = []
    start = 0
    while start < num_frames:
        starts.append(start)
        if start + window >= num_frames:
            break
        start += hop
    return starts


def valid_frames(num_frames: int, start: int, window: int) -> int:
    """Real (unpadded) frames in the window starting at ``start``.

    Args:
        num_frames: frames in the recording.
        start: first frame of the window.
        window: frames per window.

    Returns:
        ``num_frames - start`` clipped to ``[0, window]``.

    >>> valid_frames(23, 20, 10), valid_frames(23, 10, 10)
    (3, 10)
    """
    return max(0, min(window, num_frames - start))


@dataclasses.dataclass
class Frame:
    """One 40 ms frame of a recording; absent modalities are None."""

    audio: np.ndarray | None = None  # (640,) float32
    face: bytes | None = None  # JPEG of the face crop
    face_found: int = 0
    landmarks: np.ndarray | None = None  # (5, 2) crop pixels
    labels: np.ndarray | None = None  # (2,) arousal, valence
    features: dict[str, np.ndarray] | None = None  # feature set -> (D,) float32


@functools.lru_cache(maxsize=8)
def black_jpeg(size: int) -> bytes:
    """JPEG of a black ``size`` x ``size`` RGB image, the face of padding frames.

    Args:
        size: side of the square image in pixels.

    Returns:
        The encoded JPEG bytes (cached for up to 8 sizes).

    >>> import cv2, numpy as np
    >>> int(cv2.imdecode(np.frombuffer(black_jpeg(8), np.uint8), cv2.IMREAD_COLOR).max())
    0
    """
    import cv2

    ok, data = cv2.imencode(".jpg", np.zeros((size, size, 3), np.uint8))
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return data.tobytes()


@dataclasses.dataclass
class RecordingInfo:
    """What every window of one recording shares."""

    recording_id: str
    subject_id: str
    partition: str
    has_audio: bool
    has_video: bool
    has_labels: bool
    face_size: int
    feature_dims: tuple[tuple[str, int], ...] = ()  # (feature set, dimension) stored per frame


def make_window(info: RecordingInfo, start: int, frames: list[Frame], window: int) -> WindowRecord:
    """Stack ``frames`` into a WindowRecord of ``window`` frames, padding the tail.

    Args:
        info: what the recording's windows share (ids, partition, modalities, feature sizes).
        start: first frame of the window in the recording.
        frames: the window's real frames, at most ``window`` of them; each holds every
            modality that ``info`` says the recording has.
        window: frames per window.

    Returns:
        The window; padding frames have ``valid = 0``, zero audio, landmarks, labels and
        features, ``face_found = 0`` and a black face (:func:`black_jpeg`). Modalities the
        recording lacks stay None.
    """
    real = len(frames)
    pad = window - real
    valid = np.concatenate([np.ones(real, np.int64), np.zeros(pad, np.int64)])
    record = WindowRecord(
        recording_id=info.recording_id,
        subject_id=info.subject_id,
        partition=info.partition,
        start_frame=start,
        valid=valid,
        face_size=info.face_size,
    )
    if info.has_audio:
        audio = np.zeros((window, FRAME_SAMPLES), np.float32)
        for i, frame in enumerate(frames):
            audio[i] = frame.audio
        record.audio = audio
    if info.has_video:
        record.faces = [f.face for f in frames] + [black_jpeg(info.face_size)] * pad
        record.face_found = np.array([f.face_found for f in frames] + [0] * pad, np.int64)
        landmarks = np.zeros((window, NUM_LANDMARKS, 2), np.float32)
        for i, frame in enumerate(frames):
            landmarks[i] = frame.landmarks
        record.landmarks = landmarks
    if info.has_labels:
        labels = np.zeros((window, 2), np.float32)
        for i, frame in enumerate(frames):
            labels[i] = frame.labels
        record.labels = labels
    if info.feature_dims:
        record.features = {}
        for name, dim in info.feature_dims:
            values = np.zeros((window, dim), np.float32)
            for i, frame in enumerate(frames):
                values[i] = frame.features[name]
            record.features[name] = values
    return record


def iter_windows(
    frames: Iterable[Frame], info: RecordingInfo, window: int, hop: int
) -> Iterator[WindowRecord]:
    """Group a stream of frames into windows, yielding each as soon as it is complete.

    Holds at most ``window`` frames; the windows are those of :func:`window_starts`.

    Args:
        frames: the recording's frames in order.
        info: what the recording's windows share.
        window: frames per window.
        hop: frames between window starts.

    Yields:
        The recording's windows (:func:`make_window`) in order of start frame; the last one
        padded if it runs past the recording's end. No window for an empty stream.

    Raises:
        ConfigError: an invalid ``window``/``hop`` (:func:`check_window`).

    >>> info = RecordingInfo("r1", "s1", "train", True, False, False, 112)
    >>> frames = (Frame(audio=np.full(FRAME_SAMPLES, i, np.float32)) for i in range(7))
    >>> [(w.start_frame, w.valid.tolist()) for w in iter_windows(frames, info, 4, 4)]
    [(0, [1, 1, 1, 1]), (4, [1, 1, 1, 0])]
    """
    check_window(window, hop)
    buffer: deque[Frame] = deque()
    start = 0  # first frame of the next window; buffer[0] is that frame
    covered = 0  # frames up to here are in an emitted window
    seen = 0
    for frame in frames:
        buffer.append(frame)
        seen += 1
        if len(buffer) == window:
            yield make_window(info, start, list(buffer), window)
            covered = start + window
            start += hop
            for _ in range(hop):
                buffer.popleft()
    if seen > covered:
        yield make_window(info, start, list(buffer), window)

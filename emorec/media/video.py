"""Probing media files and decoding video onto the 40 ms frame grid.

Grid frame ``i`` is the decoded frame whose presentation time is nearest to
``i * FRAME_PERIOD`` (ties go to the earlier frame), whatever the video's own
frame rate, constant or variable. Times are measured from the container's
start, the same origin as the audio, whose first sample is grid time 0.

Grid-frame count rule: a stream lasting ``d`` seconds covers
``round(d / FRAME_PERIOD)`` grid frames (halves round up); a video stream
lasts until the end of its last frame (last presentation time plus that
frame's duration), so 50 frames at 25 fps, 60 at 30 fps and 32000 samples at
16 kHz all give 50 grid frames.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from emorec.errors import MediaError
from emorec.media.files import check_input_file
from emorec.schema import FRAME_PERIOD

# AVI stores no presentation times (ffmpeg guesses them wrongly around B-frames);
# its frames sit in fixed slots of 1 / fps, so their order gives their time.
_SLOT_TIMED_FORMATS = {"avi"}

# Exact grid step, so that nearest-frame decisions do not depend on float rounding.
_GRID_STEP = Fraction(FRAME_PERIOD).limit_denominator(1_000_000)


def grid_frames_for(duration_s: float) -> int:
    """Number of 40 ms grid frames covering ``duration_s`` seconds (nearest, halves up).

    Args:
        duration_s: a stream's duration in seconds (0 or less gives 0 frames).

    Returns:
        ``round(duration_s / FRAME_PERIOD)``, halves rounded up.

    >>> grid_frames_for(2.0), grid_frames_for(0.02), grid_frames_for(0.0)
    (50, 1, 0)
    """
    return int(math.floor(duration_s / FRAME_PERIOD + 0.5 + 1e-9)) if duration_s > 0 else 0


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    """What a media file holds, read from its container without decoding.

    ``duration_s`` is the longest stream's duration and ``grid_frames`` the
    40 ms frames covering it (see the module docstring); the per-stream
    durations are kept for the callers' tolerance checks. The video duration
    comes from the packets' timestamps (exact), the audio duration from the
    container's metadata. Fields of an absent stream are None (0.0 for its
    duration).
    """

    path: str
    duration_s: float
    has_audio: bool
    has_video: bool
    audio_rate: int | None
    audio_channels: int | None
    fps: float | None
    width: int | None
    height: int | None
    grid_frames: int
    audio_duration_s: float = 0.0
    video_duration_s: float = 0.0


def _open(path: Path):
    check_input_file(path, "media file")
    try:
        return av.open(str(path))
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot open as audio or video: {exc}") from exc


def _origin(container) -> Fraction:
    """The container's start time, which emorec treats as grid time 0."""
    start = container.start_time
    # A negative start (codec priming) is dropped by the decoders, audio included.
    return Fraction(start, av.time_base) if start is not None and start > 0 else Fraction(0)


def _stream_seconds(container, stream) -> float:
    """A stream's duration from the container metadata, falling back to the container's."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def _video_rate(stream) -> Fraction | None:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else None


def probe_media(path) -> MediaInfo:
    """Describe the audio and video streams of ``path`` from container metadata and packets.

    Nothing is decoded.

    Args:
        path: an audio or video file.

    Returns:
        The :class:`MediaInfo` (first audio and first video stream).

    Raises:
        MediaError: the file is missing or unreadable, has neither stream, or its video
            stream is corrupt or has no frames.
    """
    path = Path(path)
    container = _open(path)
    with container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video else None
        if audio is None and video is None:
            raise MediaError(f"{path}: has neither an audio nor a video stream")
        audio_s = _stream_seconds(container, audio) if audio is not None else 0.0
        video_s = _video_seconds(container, video, path) if video is not None else 0.0
        rate = _video_rate(video) if video is not None else None
        duration = max(audio_s, video_s)
        return MediaInfo(
            path=str(path),
            duration_s=duration,
            has_audio=audio is not None,
            has_video=video is not None,
            audio_rate=int(audio.codec_context.sample_rate) if audio is not None else None,
            audio_channels=int(audio.codec_context.channels) if audio is not None else None,
            fps=float(rate) if rate else None,
            width=int(video.codec_context.width) if video is not None else None,
            height=int(video.codec_context.height) if video is not None else None,
            grid_frames=grid_frames_for(duration),
            audio_duration_s=audio_s,
            video_duration_s=video_s,
        )


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise MediaError(f"{path}: has no video stream")
    return container.streams.video[0]


def _video_seconds(container, stream, path: Path) -> float:
    """End of the video stream's last frame, from the packets' timestamps (demuxed, not decoded).

    Containers often store a rounded or missing duration for variable-frame-rate
    video; the packets are exact.
    """
    rate = _video_rate(stream)
    slot_timed = container.format.name in _SLOT_TIMED_FORMATS
    end = None
    packets = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            packets += 1
            if packet.pts is None or slot_timed:
                continue
            length = packet.duration or 0
            stop = Fraction(packet.pts + length) * packet.time_base
            if not length and rate:
                stop += 1 / rate
            end = stop if end is None or stop > end else end
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: corrupt video stream: {exc}") from exc
    if packets == 0:
        raise MediaError(f"{path}: video stream has no frames")
    if end is None:
        # Slot-timed or timestamp-free packets: count them at the nominal rate.
        return packets / float(rate or 25)
    return float(end - _origin(container))


def count_grid_frames(path) -> int:
    """Grid frames covering the video stream (timestamps of its packets; nothing is decoded).

    Args:
        path: a video file.

    Returns:
        The number of 40 ms grid frames up to the end of the last video frame.

    Raises:
        MediaError: the file is missing or unreadable, has no video stream, or its video
            stream is corrupt or has no frames.
    """
    path = Path(path)
    container = _open(path)
    with container:
        stream = _video_stream(container, path)
        return grid_frames_for(_video_seconds(container, stream, path))


def _timed_frames(container, stream, path: Path) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """Decoded frames with their presentation times relative to the grid origin."""
    origin = _origin(container)
    rate = _video_rate(stream) or Fraction(25)
    slot_timed = container.format.name in _SLOT_TIMED_FORMATS
    previous = None
    try:
        for index, frame in enumerate(container.decode(stream)):
            if slot_timed:
                time = index / rate
            elif frame.pts is not None and frame.time_base:
                time = Fraction(frame.pts) * frame.time_base - origin
            else:
                time = Fraction(0) if previous is None else previous + 1 / rate
            if previous is not None and time <= previous:
                continue  # duplicate or out-of-order timestamp: keep the first frame
            previous = time
            yield time, frame
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: corrupt video stream: {exc}") from exc


def iter_grid_frames(path, num_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 ``(H, W, 3)`` frames, one per 40 ms grid frame, decoding as it goes.

    With ``num_frames`` exactly that many are yielded, repeating the last
    decoded frame if the video ends early; without it, ``count_grid_frames``.

    Args:
        path: a video file.
        num_frames: grid frames to yield; None counts them with :func:`count_grid_frames`.

    Yields:
        For grid frame ``i``, the decoded frame nearest to time ``i * FRAME_PERIOD`` (ties to
        the earlier frame), as a fresh RGB uint8 ``(H, W, 3)`` array.

    Raises:
        MediaError: the file is missing or unreadable, has no video stream or no decodable
            frame, or is corrupt.
    """
    path = Path(path)
    if num_frames is None:
        num_frames = count_grid_frames(path)
    container = _open(path)
    with container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        frames = _timed_frames(container, stream, path)
        before = None  # latest decoded frame at or before the grid time
        after = next(frames, None)  # the first decoded frame after it
        if after is None:
            raise MediaError(f"{path}: video stream has no decodable frames")
        for index in range(num_frames):
            target = index * _GRID_STEP
            while after is not None and after[0] <= target:
                before, after = after, next(frames, None)
            if before is None:
                chosen = after
            elif after is None or target - before[0] <= after[0] - target:
                chosen = before
            else:
                chosen = after
            # Converted per grid frame so a repeated source frame still gives a fresh array.
            yield chosen[1].to_ndarray(format="rgb24")


# A decoded frame count this many frames short of the container's declared count
# means a truncated file (AVI headers and mp4 sample tables state the count exactly;
# encoders may add or drop one frame at the end).
_FRAME_SHORTFALL = 2


def video_rate(path) -> float:
    """The video stream's nominal frame rate in frames per second (25.0 where the container gives none).

    Args:
        path: a video file.

    Returns:
        The average (else guessed) frame rate of the first video stream.

    Raises:
        MediaError: the file is missing, unreadable or has no video stream.
    """
    path = Path(path)
    container = _open(path)
    with container:
        return float(_video_rate(_video_stream(container, path)) or 25)


def iter_video_frames(path) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(time_s, frame)`` for every decoded frame at the video's own rate, no grid.

    Times are presentation times from the container's start (AVI: frame index
    over the nominal rate), as for the grid frames; frames with a repeated or
    earlier timestamp are skipped. Frames are RGB uint8 ``(H, W, 3)``.

    Args:
        path: a video file.

    Yields:
        ``(time in seconds, frame)`` pairs in presentation order.

    Raises:
        MediaError: the file is missing or unreadable, has no video stream or no
            decodable frame, or (after the last frame) decodes to fewer frames
            than its header declares (a truncated file).
    """
    path = Path(path)
    container = _open(path)
    with container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        declared = int(stream.frames or 0)
        count = 0
        for time, frame in _timed_frames(container, stream, path):
            count += 1
            yield float(time), frame.to_ndarray(format="rgb24")
    if count == 0:
        raise MediaError(f"{path}: video stream has no decodable frames")
    if declared and declared - count > _FRAME_SHORTFALL:
        raise MediaError(
            f"{path}: truncated video: the container declares {declared} frames, "
            f"only {count} could be decoded"
        )

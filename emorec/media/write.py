"""Writing media files: 16-bit PCM wav and H.264 or MJPEG (+ AAC or PCM) video, always atomically.

Both writers produce a temporary file next to the destination and rename it
into place, so a killed process never leaves a half-written file under the
final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import wave
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from emorec.errors import MediaError
from emorec.manifest import default_file_mode

# ffmpeg's s16 <-> float conversion uses 1/32768, so the same scale makes a
# wav written here read back bit-exactly by emorec.media.audio.
_INT16_SCALE = 32768.0
# The fallback keeps write_mp4 usable with an ffmpeg build that lacks libx264.
_VIDEO_CODECS = ("libx264", "mpeg4")
_AUDIO_CODEC = "aac"
# AAC is the usual sound track of an mp4; 16-bit PCM is exact and is what AVI
# files commonly carry (AAC in AVI has no priming edit, so its first ~1024
# samples of encoder delay would stay in the decoded track).
AUDIO_CODECS = ("aac", "pcm_s16le")
DEFAULT_CRF = 18
DEFAULT_MJPEG_QSCALE = 3


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) and rename it over ``path`` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp_path, default_file_mode())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _as_channels(samples, what: str) -> np.ndarray:
    """Return float32 audio as ``(N, C)``, checking shape and finiteness."""
    arr = np.asarray(samples, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{what}: audio must have shape (N,) or (N, C), got {np.shape(samples)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: audio contains NaN or inf")
    return arr


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Convert float audio in [-1, 1] to int16 (clipping), the inverse of ``int16 / 32768``.

    Args:
        samples: float samples, any shape, full scale ``[-1, 1]``.

    Returns:
        The int16 array of the same shape: ``round(x * 32768)`` clipped to
        ``[-32768, 32767]``.

    >>> float_to_int16(np.array([0.5, -1.0, 1.0, -2.0]))
    array([ 16384, -32768,  32767, -32768], dtype=int16)
    """
    scaled = np.round(np.asarray(samples, dtype=np.float64) * _INT16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def write_wav(path, samples, rate: int) -> None:
    """Write float32 audio in [-1, 1], shape ``(N,)`` or ``(N, C)``, as a 16-bit PCM wav.

    Written under a temporary name beside ``path`` and renamed into place; the folder is
    created if missing.

    Args:
        path: the destination ``.wav`` file.
        samples: float audio in ``[-1, 1]`` (clipped outside), ``(N,)`` mono or ``(N, C)``.
        rate: sample rate in Hz (a positive integer).

    Raises:
        ValueError: malformed audio (shape, NaN or inf) or a bad ``rate``.
    """
    path = Path(path)
    arr = _as_channels(samples, str(path))
    if int(rate) != rate or rate <= 0:
        raise ValueError(f"{path}: sample rate must be a positive integer, got {rate!r}")
    pcm = float_to_int16(arr)
    with _atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(pcm.shape[1])
            out.setsampwidth(2)
            out.setframerate(int(rate))
            out.writeframes(pcm.astype("<i2").tobytes())


def video_encoder() -> str:
    """Name of the video encoder write_mp4 uses: libx264 when PyAV's ffmpeg has it, else mpeg4.

    Returns:
        ``"libx264"`` or ``"mpeg4"``.

    Raises:
        MediaError: PyAV's ffmpeg has neither encoder.
    """
    for name in _VIDEO_CODECS:
        if name in av.codecs_available:
            return name
    raise MediaError(f"PyAV's ffmpeg has none of the video encoders {', '.join(_VIDEO_CODECS)}")


def _as_rate(fps) -> Fraction:
    rate = Fraction(fps).limit_denominator(100_000)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return rate


def _check_frame(frame, shape, index: int, path: Path) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(
            f"{path}: frame {index} must be RGB uint8 (H, W, 3), got {arr.dtype} {arr.shape}"
        )
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{path}: frame {index} has shape {arr.shape}, earlier frames {shape}")
    return np.ascontiguousarray(arr)


class _AudioFeeder:
    """Encodes an audio track in chunks so that it interleaves with the video packets."""

    def __init__(self, container, audio: np.ndarray, rate: int, codec: str = _AUDIO_CODEC):
        layout = {1: "mono", 2: "stereo"}.get(audio.shape[1])
        if layout is None:
            raise ValueError(f"audio must be mono or stereo, got {audio.shape[1]} channels")
        self.stream = container.add_stream(codec, rate=rate)
        self.stream.layout = layout
        self.container = container
        self.audio = np.clip(audio, -1.0, 1.0)
        self.rate = rate
        self.done = 0

    def feed_until(self, seconds: float | None) -> None:
        """Encode the samples up to ``seconds`` (all of them if None)."""
        end = len(self.audio) if seconds is None else min(len(self.audio), int(seconds * self.rate))
        step = 4096
        while self.done < end:
            chunk = self.audio[self.done : min(end, self.done + step)]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk.T), format="fltp", layout=self.stream.layout.name
            )
            frame.sample_rate = self.rate
            frame.pts = self.done
            frame.time_base = Fraction(1, self.rate)
            self.container.mux(self.stream.encode(frame))
            self.done += len(chunk)

    def finish(self) -> None:
        self.feed_until(None)
        self.container.mux(self.stream.encode(None))


def write_mp4(
    path,
    frames: Iterable[np.ndarray],
    fps=25,
    audio=None,
    audio_rate: int = 16000,
    crf: int = DEFAULT_CRF,
    *,
    frame_times=None,
    audio_codec: str = _AUDIO_CODEC,
    video_codec: str | None = None,
    quality: int = DEFAULT_MJPEG_QSCALE,
) -> None:
    """Encode RGB uint8 frames (streamed) as H.264 or MJPEG, with an optional AAC or PCM track.

    Written under a temporary name beside ``path`` and renamed into place.
    ``frame_times`` (seconds, strictly increasing, one per frame) gives each
    frame its own presentation time to make variable-frame-rate files; ``fps``
    is then only the nominal rate. The container follows the suffix of
    ``path`` (.mp4, .mkv, .avi). ``video_codec`` None picks :func:`video_encoder`
    (H.264); ``"mjpeg"`` writes intra-only Motion JPEG at ``quality``, whose
    bytes depend on the frames alone (libx264 with a sound track in the same
    file was seen to give different bytes for the same frames now and then).

    Args:
        path: the destination file; its suffix picks the container.
        frames: RGB uint8 ``(H, W, 3)`` frames of one even width and height, consumed once.
        fps: the frame rate in frames per second (int, float or Fraction); the nominal rate
            when ``frame_times`` is given.
        audio: optional float audio in ``[-1, 1]``, ``(N,)`` or ``(N, C)`` with C <= 2.
        audio_rate: the audio's sample rate in Hz.
        crf: libx264's constant rate factor (lower = higher quality, larger file).
        frame_times: optional presentation time in seconds of each frame.
        audio_codec: one of :data:`AUDIO_CODECS` (``aac`` or ``pcm_s16le``).
        video_codec: None (H.264, or mpeg4 without libx264) or ``"mjpeg"``.
        quality: MJPEG qscale, 2 (best) to 31 (only with ``video_codec="mjpeg"``).

    Raises:
        ValueError: an unknown codec, a non-positive ``fps``, malformed frames or audio, or
            ``frame_times`` not strictly increasing or not one per frame.
        MediaError: no frames, an odd frame size, or no usable video encoder.
    """
    path = Path(path)
    if audio_codec not in AUDIO_CODECS:
        raise ValueError(f"{path}: audio_codec must be one of {', '.join(AUDIO_CODECS)}, got {audio_codec!r}")
    if video_codec not in (None, "mjpeg"):
        raise ValueError(f"{path}: video_codec must be None (H.264) or 'mjpeg', got {video_codec!r}")
    rate = _as_rate(fps)
    track = None if audio is None else _as_channels(audio, str(path))
    times = None if frame_times is None else np.asarray(frame_times, dtype=np.float64)
    if times is not None and (times.ndim != 1 or np.any(np.diff(times) <= 0)):
        raise ValueError(f"{path}: frame_times must be a strictly increasing 1-D sequence")
    codec = video_codec or video_encoder()
    with _atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w") as container:
            stream = None
            feeder = None
            shape = None
            # VFR: a fine time base (the MPEG 90 kHz clock) so arbitrary times survive rounding.
            time_base = Fraction(1, 90_000) if times is not None else 1 / rate
            count = 0
            for index, frame in enumerate(frames):
                arr = _check_frame(frame, shape, index, path)
                if stream is None:
                    shape = arr.shape
                    height, width = shape[:2]
                    if height % 2 or width % 2:
                        raise MediaError(
                            f"{path}: H.264 yuv420p needs an even width and height, "
                            f"got {width}x{height}"
                        )
                    stream = container.add_stream(codec, rate=rate)
                    stream.width, stream.height = width, height
                    stream.pix_fmt = "yuv420p"
                    stream.codec_context.time_base = time_base
                    if codec == "mjpeg":
                        stream.pix_fmt = "yuvj420p"
                        stream.codec_context.qscale = int(quality)
                        stream.codec_context.flags |= av.codec.context.Flags.qscale
                    elif codec == "libx264":
                        stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
                        if path.suffix.lower() == ".avi":
                            # AVI has no presentation times, so no frame reordering.
                            stream.options["bf"] = "0"
                    else:
                        stream.codec_context.qscale = 2
                    if track is not None:
                        feeder = _AudioFeeder(container, track, int(audio_rate), audio_codec)
                if times is not None:
                    if index >= len(times):
                        raise ValueError(f"{path}: more frames than frame_times ({len(times)})")
                    pts = round(times[index] / time_base)
                    seconds = float(times[index])
                else:
                    pts = index
                    seconds = float(index / rate)
                video_frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                video_frame.pts = pts
                video_frame.time_base = time_base
                container.mux(stream.encode(video_frame))
                if feeder is not None:
                    feeder.feed_until(seconds + 1.0)
                count += 1
            if stream is None:
                raise MediaError(f"{path}: no frames to write")
            if times is not None and count != len(times):
                raise ValueError(f"{path}: {count} frames but {len(times)} frame_times")
            container.mux(stream.encode(None))
            if feeder is not None:
                feeder.finish()


def write_avi(path, frames: Iterable[np.ndarray], fps=25, audio=None, audio_rate: int = 44100,
              quality: int = DEFAULT_MJPEG_QSCALE) -> None:
    """Encode RGB uint8 frames as an AVI file (Motion JPEG, 16-bit PCM sound), atomically.

    The layout of AFEW-style clips: :func:`write_mp4` with an ``.avi`` path,
    intra-only MJPEG video (the same frames always give the same bytes) and a
    PCM sound track, which AVI stores exactly (no codec delay to trim).

    Args:
        path: destination; must end in ``.avi``.
        frames: RGB uint8 ``(H, W, 3)`` frames of even width and height.
        fps: the constant frame rate.
        audio: optional float audio in [-1, 1], ``(N,)`` or ``(N, C)`` (C <= 2).
        audio_rate: its sample rate in Hz.
        quality: MJPEG qscale, 2 (best) to 31.

    Raises:
        ValueError: the path does not end in ``.avi`` or the frames or audio are malformed.
        MediaError: no frames, or an odd frame size.
    """
    path = Path(path)
    if path.suffix.lower() != ".avi":
        raise ValueError(f"{path}: write_avi writes .avi files")
    write_mp4(path, frames, fps=fps, audio=audio, audio_rate=audio_rate, audio_codec="pcm_s16le",
              video_codec="mjpeg", quality=quality)

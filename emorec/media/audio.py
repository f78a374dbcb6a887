"""Reading audio (wav, flac, mp3 or a video's sound track) as 16 kHz mono float32, and framing it.

The original code took the sound track of each video, resampled it to 16 kHz
and averaged stereo to mono without normalising it; :func:`normalize_audio`
offers the paper's per-recording standardisation as the ``recording`` mode.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

from emorec.errors import ConfigError, MediaError
from emorec.schema import FRAME_SAMPLES, SAMPLE_RATE

AUDIO_NORMS = ("none", "recording")
DEFAULT_AUDIO_NORM = "none"  # the original code fed the raw waveform
# Below this standard deviation a recording counts as silent and is only centred.
_SILENCE_STD = 1e-6
# Containers whose audio duration is estimated (from the bit rate) or padded, not exact.
_ESTIMATED_DURATION_FORMATS = {"mp3", "aac", "ogg", "avi"}
# A decoded stream this much shorter than its declared duration counts as truncated.
_SHORTFALL_SAMPLES = 4096


def _check_wav_header(path: Path) -> None:
    """Raise MediaError if a RIFF/WAVE file's data chunk promises more bytes than the file holds.

    ffmpeg reads a short wav to its end without complaint; a cut copy of a
    recording must not pass silently as a shorter recording.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return
        endian = "<" if head[:4] == b"RIFF" else ">"
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            chunk_id, chunk_size = struct.unpack(endian + "4sI", fh.read(8))
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF mark a streamed wav whose writer could not seek back.
                if chunk_size in (0, 0xFFFFFFFF):
                    return
                available = size - offset - 8
                if chunk_size > available:
                    raise MediaError(
                        f"{path}: truncated wav: the header promises {chunk_size} bytes of audio "
                        f"but the file holds {available}"
                    )
                return
            offset += 8 + chunk_size + (chunk_size & 1)
        raise MediaError(f"{path}: truncated wav: no complete data chunk")


def _frame_to_float(frame) -> np.ndarray:
    """Return one decoded audio frame as float64 ``(channels, samples)``."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    kind = frame.format.name.rstrip("p")
    if kind == "s16":
        return arr / 32768.0
    if kind == "s32":
        return arr / 2147483648.0
    if kind == "u8":
        return (arr.astype(np.float64) - 128.0) / 128.0
    if kind == "s64":
        return arr / 9223372036854775808.0
    return arr.astype(np.float64)


def _declared_samples(container, stream, rate: int) -> int:
    """Samples the container says the stream holds, 0 where it only guesses (mp3, raw AAC)."""
    if container.format.name in _ESTIMATED_DURATION_FORMATS:
        return 0
    if not stream.duration or not stream.time_base:
        return 0
    return round(stream.duration * stream.time_base * rate)


def _decode_mono(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``path`` to mono float64 at its own rate."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot open as audio or video: {exc}") from exc
    with container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        chunks = []
        try:
            for frame in container.decode(stream):
                if frame.samples:
                    chunks.append(_frame_to_float(frame).mean(axis=0))
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: corrupt or truncated audio stream: {exc}") from exc
        if not rate:
            raise MediaError(f"{path}: audio stream has no sample rate")
        samples = np.concatenate(chunks) if chunks else np.zeros(0)
        declared = _declared_samples(container, stream, rate)
        if declared:
            # Lossy codecs pad their last frame; the container's duration is exact.
            if declared < len(samples):
                samples = samples[:declared]
            elif len(samples) and declared - len(samples) > max(
                _SHORTFALL_SAMPLES, declared // 200
            ):
                raise MediaError(
                    f"{path}: truncated audio: the container promises {declared} samples, "
                    f"only {len(samples)} could be decoded"
                )
    return samples, int(rate)


def read_audio(path, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file's (first) audio stream as float32 mono ``(N,)`` at ``target_rate``."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such audio or video file")
    _check_wav_header(path)
    samples, rate = _decode_mono(path)
    if len(samples) == 0:
        raise MediaError(f"{path}: audio stream is empty (zero samples)")
    if rate != target_rate:
        g = math.gcd(int(rate), int(target_rate))
        samples = resample_poly(samples, int(target_rate) // g, int(rate) // g)
    return samples.astype(np.float32)


def normalize_audio(samples: np.ndarray, mode: str) -> np.ndarray:
    """Apply the audio normalisation ``mode``: "none" (raw) or "recording" (zero mean, unit variance)."""
    if mode not in AUDIO_NORMS:
        raise ConfigError(f"unknown audio_norm {mode!r} (expected one of {', '.join(AUDIO_NORMS)})")
    samples = np.asarray(samples, dtype=np.float32)
    if mode == "none":
        return samples
    data = samples.astype(np.float64)
    centred = data - data.mean() if data.size else data
    std = centred.std() if data.size else 0.0
    if std < _SILENCE_STD:
        return centred.astype(np.float32)
    return (centred / std).astype(np.float32)


def frame_audio(samples: np.ndarray, num_frames: int) -> np.ndarray:
    """Cut mono audio into ``(num_frames, 640)`` grid frames, zero-padding or trimming the tail."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"frame_audio expects mono (N,) audio, got shape {samples.shape}")
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    total = int(num_frames) * FRAME_SAMPLES
    out = np.zeros(total, dtype=np.float32)
    keep = min(total, len(samples))
    out[:keep] = samples[:keep]
    return out.reshape(int(num_frames), FRAME_SAMPLES)

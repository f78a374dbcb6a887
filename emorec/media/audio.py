"""Reading audio (wav, flac, mp3 or a video's sound track) as 16 kHz mono float32, and framing it.

The original code took the sound track of each video, resampled it to 16 kHz
and averaged stereo to mono without normalising it; :func:`normalize_audio`
offers the paper's per-recording standardisation as the ``recording`` mode.

:func:`iter_audio_blocks` streams a file (decoded and resampled block by
block, equal to :func:`read_audio`), so that an hour of audio never needs to
be in memory; :func:`read_audio` is that stream concatenated.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from scipy.signal import firwin, upfirdn

from emorec.errors import ConfigError, MediaError
from emorec.media.files import check_input_file
from emorec.schema import AUDIO_NORMS, DEFAULT_AUDIO_NORM, FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["AUDIO_NORMS", "DEFAULT_AUDIO_NORM"]  # re-exported: the format constants live in emorec.schema
# Below this standard deviation a recording counts as silent and is only centred.
_SILENCE_STD = 1e-6
# Containers whose audio duration is estimated (from the bit rate) or padded, not exact.
_ESTIMATED_DURATION_FORMATS = {"mp3", "aac", "ogg", "avi"}
# A decoded stream this much shorter than its declared duration counts as truncated.
_SHORTFALL_SAMPLES = 4096
# Samples per block of iter_audio_blocks: one second at 16 kHz.
DEFAULT_BLOCK_SAMPLES = SAMPLE_RATE


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


def _frame_to_mono(frame) -> np.ndarray:
    """Return one decoded audio frame as float32 mono ``(samples,)``, channels averaged."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    kind = frame.format.name.rstrip("p")
    scale = {"s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}.get(kind)
    if kind == "u8":
        arr = (arr.astype(np.float32) - 128.0) / 128.0
    elif scale is not None:
        # s16 / s32 scaled in float64 first: float32 cannot hold an int32 exactly.
        arr = arr / scale
    # Averaged in float64 (exact for s16) before the one rounding to float32.
    mono = arr.mean(axis=0, dtype=np.float64) if channels > 1 else arr[0]
    return np.asarray(mono, dtype=np.float32)


def _declared_samples(container, stream, rate: int) -> int:
    """Samples the container says the stream holds, 0 where it only guesses (mp3, raw AAC)."""
    if container.format.name in _ESTIMATED_DURATION_FORMATS:
        return 0
    if not stream.duration or not stream.time_base:
        return 0
    return round(stream.duration * stream.time_base * rate)


def _open_checked(path) -> Path:
    """``path`` as a Path, after the checks that need no decoding (missing, link loop, empty...)."""
    path = check_input_file(path, "audio or video file")
    _check_wav_header(path)
    return path


class AudioLevels:
    """Peak and mean of the decoded samples of one file, gathered chunk by chunk at its own rate.

    The build reads them after its first pass over the audio to tell a signal
    outside full scale ([-1, 1]) or with a DC offset before anything is written.
    """

    def __init__(self):
        self.rate = 0
        self.count = 0
        self.total = 0.0
        self.peak = 0.0
        self.peak_sample = 0

    def add(self, rate: int, chunk: np.ndarray) -> None:
        """Take in one chunk of float32 mono samples at ``rate``.

        Args:
            rate: the chunk's sample rate in Hz (the file's own rate; the last one is kept).
            chunk: ``(n,)`` float mono samples, full scale ``[-1, 1]``; an empty chunk is ignored.

        >>> levels = AudioLevels()
        >>> levels.add(100, np.array([0.1, -0.5, 0.2], np.float32))
        >>> levels.peak, levels.peak_time
        (0.5, 0.01)
        """
        if not len(chunk):
            return
        self.rate = rate
        k = int(np.argmax(np.abs(chunk)))
        if abs(float(chunk[k])) > self.peak:
            self.peak, self.peak_sample = abs(float(chunk[k])), self.count + k
        self.total += float(np.sum(chunk, dtype=np.float64))
        self.count += len(chunk)

    @property
    def mean(self) -> float:
        """Mean sample value (the DC offset), 0 for no samples."""
        return self.total / self.count if self.count else 0.0

    @property
    def peak_time(self) -> float:
        """Time (s) of the largest absolute sample."""
        return self.peak_sample / self.rate if self.rate else 0.0


def _check_finite(path: Path, chunk: np.ndarray, done: int, rate: int) -> None:
    """MediaError naming the first NaN or infinite sample of ``chunk`` (``done`` samples came before it)."""
    finite = np.isfinite(chunk)
    if not finite.all():
        k = done + int(np.argmin(finite))
        raise MediaError(
            f"{path}: NaN or inf in the audio, first at sample {k} ({k / rate:.3f} s at {rate} Hz); "
            "emorec stores only finite samples: repair or re-export the file"
        )


def _iter_native(path: Path, levels: AudioLevels | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(rate, chunk)``: the first audio stream as float32 mono chunks at its own rate.

    Cut to the container's declared length (lossy codecs pad their last frame);
    raises MediaError at the end if the stream falls short of it or is empty,
    and at once at the first NaN or infinite sample. ``levels`` (if given)
    takes in every chunk.
    """
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot open as audio or video: {exc}") from exc
    with container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        if not rate:
            raise MediaError(f"{path}: audio stream has no sample rate")
        rate = int(rate)
        declared = _declared_samples(container, stream, rate)
        done = 0
        try:
            for frame in container.decode(stream):
                if not frame.samples:
                    continue
                chunk = _frame_to_mono(frame)
                if declared and done + len(chunk) > declared:
                    chunk = chunk[: declared - done]
                if len(chunk):
                    _check_finite(path, chunk, done, rate)
                    if levels is not None:
                        levels.add(rate, chunk)
                    done += len(chunk)
                    yield rate, chunk
                if declared and done >= declared:
                    break
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: corrupt or truncated audio stream: {exc}") from exc
    if done == 0:
        raise MediaError(f"{path}: audio stream is empty (zero samples)")
    if declared and declared - done > max(_SHORTFALL_SAMPLES, declared // 200):
        raise MediaError(
            f"{path}: truncated audio: the container promises {declared} samples, "
            f"only {done} could be decoded"
        )


def resampled_length(samples: int, rate: int, target_rate: int) -> int:
    """Samples ``resample_poly`` makes of ``samples`` at ``rate`` resampled to ``target_rate``.

    Args:
        samples: number of input samples.
        rate: the input sample rate in Hz.
        target_rate: the output sample rate in Hz.

    Returns:
        ``ceil(samples * up / down)`` with ``up / down`` the reduced rate ratio.

    >>> resampled_length(44100, 44100, 16000), resampled_length(10, 3, 2)
    (16000, 7)
    """
    g = math.gcd(int(rate), int(target_rate))
    up, down = int(target_rate) // g, int(rate) // g
    return -(-samples * up // down)


class PolyphaseResampler:
    """``scipy.signal.resample_poly(x, up, down)`` (its default Kaiser filter, zero padding) block by block.

    Output ``k`` of resample_poly is output ``n_pre_remove + k`` of
    ``upfirdn(h, x, up, down)``, which needs the inputs
    ``i in ((n_pre_remove + k) down - len(h), (n_pre_remove + k) down / up]``.
    Each call runs upfirdn over the inputs kept since ``start`` (a multiple of
    ``down``, so that the segment's outputs line up with the whole signal's)
    and emits the outputs whose inputs have all arrived; after the last block,
    :meth:`flush` emits the rest with the zeros past the end. The concatenated
    output equals resample_poly of the whole signal up to float rounding.
    """

    def __init__(self, rate: int, target_rate: int):
        g = math.gcd(int(rate), int(target_rate))
        self.up, self.down = int(target_rate) // g, int(rate) // g
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        n_pre_pad = self.down - half_len % self.down
        self.n_pre_remove = (half_len + n_pre_pad) // self.down
        self.h = np.concatenate((np.zeros(n_pre_pad), h))
        self.start = 0  # absolute index of kept[0]
        self.kept = np.zeros(0, np.float32)
        self.next_out = self.n_pre_remove  # next upfirdn output to emit
        self.inputs = 0

    def _run(self, stop: int) -> np.ndarray:
        """The upfirdn outputs ``[next_out, stop)`` of the kept inputs (zeros outside them)."""
        if stop <= self.next_out:
            return np.zeros(0, np.float32)
        offset = self.start * self.up // self.down
        y = upfirdn(self.h, self.kept, self.up, self.down)
        need = stop - offset
        if len(y) < need:  # the tail of the last outputs sees only zeros' worth of taps
            y = np.concatenate((y, np.zeros(need - len(y))))
        out = y[self.next_out - offset : need].astype(np.float32)
        self.next_out = stop
        # Keep only the inputs the next output can still reach, from a multiple of down.
        first = max(0, -(-(stop * self.down - len(self.h) + 1) // self.up))
        first = min(first, self.inputs) // self.down * self.down
        self.kept = self.kept[first - self.start :]
        self.start = first
        return out

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add input samples; return the outputs that are now complete.

        Args:
            block: ``(n,)`` mono samples at the input rate (any length, even 0).

        Returns:
            The ``(m,)`` float32 outputs whose inputs have all arrived (possibly none).

        >>> from scipy.signal import resample_poly
        >>> x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
        >>> r = PolyphaseResampler(48000, 16000)
        >>> y = np.concatenate([r.push(x[:300]), r.push(x[300:]), r.flush()])
        >>> y.shape, bool(np.allclose(y, resample_poly(x, 1, 3), atol=1e-5))
        ((334,), True)
        """
        self.kept = np.concatenate((self.kept, np.asarray(block, np.float32)))
        self.inputs += len(block)
        # Output m needs inputs up to floor(m down / up): all there while m down < inputs up.
        return self._run(-(-self.inputs * self.up // self.down))

    def flush(self) -> np.ndarray:
        """The remaining outputs, once every input has been pushed.

        Returns:
            The last ``(m,)`` float32 outputs (those that reach past the end, where zeros are
            assumed), so that all outputs number :func:`resampled_length` of the inputs.
        """
        return self._run(self.n_pre_remove + resampled_length(self.inputs, self.down, self.up))


def _fixed_blocks(chunks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Re-cut a stream of arrays into blocks of exactly ``size`` (the last one shorter)."""
    pending: list[np.ndarray] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held < size:
            continue
        joined = np.concatenate(pending)
        cut = len(joined) // size * size
        yield from joined[:cut].reshape(-1, size)
        pending, held = [joined[cut:]], len(joined) - cut
    if held:
        yield np.concatenate(pending)


def _resampled_chunks(path: Path, target_rate: int, run_samples: int) -> Iterator[np.ndarray]:
    """The audio at ``target_rate`` in chunks of any length, resampled in runs of about ``run_samples``."""
    resampler = None
    pending: list[np.ndarray] = []
    held = 0
    for rate, chunk in _iter_native(path):
        if rate == target_rate:
            yield chunk
            continue
        resampler = resampler or PolyphaseResampler(rate, target_rate)
        # upfirdn re-reads the filter's history of inputs on every call, so
        # many short decoded frames are pushed together.
        pending.append(chunk)
        held += len(chunk)
        if held * resampler.up >= run_samples * resampler.down:
            yield resampler.push(np.concatenate(pending))
            pending, held = [], 0
    if resampler is not None:
        if pending:
            yield resampler.push(np.concatenate(pending))
        yield resampler.flush()


def iter_audio_blocks(
    path, target_rate: int = SAMPLE_RATE, block_samples: int = DEFAULT_BLOCK_SAMPLES
) -> Iterator[np.ndarray]:
    """Stream a file's audio as float32 mono blocks of ``block_samples`` at ``target_rate``.

    Decodes and resamples as it goes, holding about one block; the blocks
    concatenated equal :func:`read_audio`. Raises MediaError like it, those
    found only at the end of the stream (truncation, empty) after the blocks
    before them.

    Args:
        path: the audio or video file (its first audio stream is read, channels averaged).
        target_rate: output sample rate in Hz (the file's rate is resampled polyphase).
        block_samples: samples per block (the last block shorter).

    Returns:
        An iterator of ``(block_samples,)`` float32 arrays (the last one shorter).

    Raises:
        ValueError: ``block_samples`` below 1.
        MediaError: a missing, empty, unreadable or truncated file, no audio stream, or a NaN
            or infinite sample (those found while decoding come from the iterator).
    """
    if block_samples < 1:
        raise ValueError(f"block_samples must be >= 1, got {block_samples}")
    path = _open_checked(path)
    return _fixed_blocks(_resampled_chunks(path, int(target_rate), block_samples), block_samples)


def audio_sample_count(path, target_rate: int = SAMPLE_RATE, levels: AudioLevels | None = None) -> int:
    """Samples :func:`read_audio` returns, from one decoding pass without resampling.

    Args:
        path: the audio or video file.
        target_rate: the rate :func:`read_audio` would resample to.
        levels: if given, gathers the peak and mean of the decoded samples.

    Returns:
        The number of samples at ``target_rate``.

    Raises:
        MediaError: a file that cannot be decoded, or holds NaN or infinite samples.
    """
    path = _open_checked(path)
    rate, samples = None, 0
    for native_rate, chunk in _iter_native(path, levels):
        rate = native_rate
        samples += len(chunk)
    return samples if rate == target_rate else resampled_length(samples, rate, target_rate)


def read_audio(path, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file's (first) audio stream as float32 mono ``(N,)`` at ``target_rate``.

    Args:
        path: an audio (wav, flac, mp3...) or video file.
        target_rate: output sample rate in Hz (16 kHz by default).

    Returns:
        The ``(N,)`` float32 samples, channels averaged, not normalised.

    Raises:
        MediaError: see :func:`iter_audio_blocks`.
    """
    return np.concatenate(list(iter_audio_blocks(path, target_rate)))


class Moments:
    """Count, mean and sum of squared deviations of samples seen block by block (float64).

    Blocks are merged with Chan et al.'s pairwise update, which stays accurate
    over an hour of audio where a running sum of squares would not.
    """

    def __init__(self):
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, block: np.ndarray) -> None:
        """Take in one block of samples.

        Args:
            block: samples of any shape (flattened; accumulated in float64); empty is ignored.

        >>> m = Moments()
        >>> m.add(np.array([1.0, 2.0]))
        >>> m.add(np.array([3.0, 4.0]))
        >>> m.count, m.mean, round(m.std, 4)
        (4, 2.5, 1.118)
        """
        data = np.asarray(block, dtype=np.float64)
        n = data.size
        if n == 0:
            return
        mean = float(data.mean())
        m2 = float(np.sum((data - mean) ** 2))
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        """Population standard deviation (0 for no samples)."""
        return math.sqrt(self.m2 / self.count) if self.count else 0.0


def standardize(samples: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(samples - mean) / std`` as float32; only centred where ``std`` marks silence.

    Args:
        samples: the audio samples, any shape.
        mean: the mean to subtract (e.g. the recording's, from :class:`Moments`).
        std: the standard deviation to divide by; below 1e-6 the samples are only centred.

    Returns:
        The float32 array of ``samples``' shape.

    >>> standardize(np.array([1.0, 3.0]), 2.0, 1.0)
    array([-1.,  1.], dtype=float32)
    """
    centred = np.asarray(samples, dtype=np.float64) - mean
    return (centred / normalization_scale(std)).astype(np.float32)


def normalization_scale(std: float) -> float:
    """What standardisation divides by: ``std``, or 1 where ``std`` marks silence.

    Args:
        std: a recording's standard deviation (silent below 1e-6).

    Returns:
        ``std`` as a float, or 1.0 for a silent recording.

    >>> normalization_scale(0.25), normalization_scale(0.0)
    (0.25, 1.0)
    """
    return 1.0 if std < _SILENCE_STD else float(std)


def normalize_audio(samples: np.ndarray, mode: str) -> np.ndarray:
    """Apply the audio normalisation ``mode``: "none" or "recording" (zero mean, unit variance).

    Args:
        samples: one recording's samples, any shape.
        mode: ``"none"`` (returned as float32, unchanged) or ``"recording"`` (standardised
            with the recording's own mean and population std; a silent one only centred).

    Returns:
        The float32 samples.

    Raises:
        ConfigError: an unknown ``mode``.

    >>> normalize_audio(np.array([1.0, 3.0]), "recording")
    array([-1.,  1.], dtype=float32)
    """
    if mode not in AUDIO_NORMS:
        raise ConfigError(f"unknown audio_norm {mode!r} (expected one of {', '.join(AUDIO_NORMS)})")
    samples = np.asarray(samples, dtype=np.float32)
    if mode == "none" or samples.size == 0:
        return samples
    moments = Moments()
    moments.add(samples)
    return standardize(samples, moments.mean, moments.std)


def frame_audio(samples: np.ndarray, num_frames: int) -> np.ndarray:
    """Cut mono audio into 40 ms grid frames, zero-padding or trimming the tail.

    Args:
        samples: ``(N,)`` mono samples at :data:`~emorec.schema.SAMPLE_RATE`.
        num_frames: number of 40 ms frames to make (from the recording's frame grid).

    Returns:
        The ``(num_frames, FRAME_SAMPLES)`` float32 frames; frame ``i`` holds samples
        ``[i * FRAME_SAMPLES, (i + 1) * FRAME_SAMPLES)``.

    Raises:
        ValueError: ``samples`` is not 1-D, or ``num_frames`` is negative.

    >>> frames = frame_audio(np.ones(FRAME_SAMPLES + 10), 2)
    >>> frames.shape == (2, FRAME_SAMPLES), float(frames.sum())
    (True, 650.0)
    """
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

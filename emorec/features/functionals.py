"""Statistical functionals of LLD tracks over sliding 3 s windows, one row per 40 ms frame.

AVEC 2015's "long-time" audio features (which Chen & Jin compare with their
40 ms LLDs) are statistics of low-level descriptors over 3 s windows shifted
by 40 ms. :func:`audio_functionals` computes such statistics from the
``(T, 76)`` output of :func:`emorec.features.audio_lld.extract_audio_lld` (or
any ``(T, D)`` tracks) with the same frame count as its input.

Window placement
----------------
``centred`` (default): row ``t`` summarises frames ``[t - 37, t + 37]`` (75
frames = 3 s), so that it describes the moment it is paired with; labels on
emorec's grid belong to one frame, and an emotion rating reflects the speech
around that moment on both sides. ``causal``: frames ``[t - 74, t]``, usable
online (no look-ahead) at the price of describing the past 3 s. Near the ends
of a recording the window is cut to the frames that exist (no padding), so the
first and last rows summarise fewer frames.

Functionals (names follow openSMILE's where one exists)
-------------------------------------------------------
``amean`` mean; ``stddev`` population standard deviation; ``skewness``
``m3 / m2^1.5`` and ``kurtosis`` ``m4 / m2^2`` (not excess; both 0 when the
window is constant); ``min``, ``max``, ``range``; ``quartile1..3`` and
``iqr1-3`` with linear interpolation between order statistics (numpy's
default percentile method); ``linregc1`` slope per frame and ``linregc2``
value at the window's first frame of the least-squares line; ``linregerrQ``
mean squared error of that line. Output columns are ``<lld>_<functional>``,
grouped by LLD, functionals in :data:`FUNCTIONALS` order.

Computation: sliding-window views over blocks of rows (memory bounded by the
block, not the recording); moments are centred per window (two-pass, no
cancellation from running sums); order statistics from one sort per window.
"""

from __future__ import annotations

import numpy as np

from emorec.errors import ConfigError
from emorec.features.audio_lld import LLD_NAMES
from emorec.schema import FRAME_PERIOD

FUNCTIONALS = (
    "amean",
    "stddev",
    "skewness",
    "kurtosis",
    "min",
    "max",
    "range",
    "quartile1",
    "quartile2",
    "quartile3",
    "iqr1-3",
    "linregc1",
    "linregc2",
    "linregerrQ",
)
WINDOW_MODES = ("centred", "causal")
DEFAULT_WINDOW_MODE = "centred"
DEFAULT_WINDOW_SECONDS = 3.0
DEFAULT_WINDOW_FRAMES = round(DEFAULT_WINDOW_SECONDS / FRAME_PERIOD)
# Rows summarised at once; a block holds rows x columns x window float64 values (~12 MB for 76
# columns and 75 frames).
_BLOCK_ROWS = 256
# Below this standard deviation (relative to the window's magnitude) a window counts as constant.
_CONSTANT_RTOL = 1e-9
_QUARTILES = {"quartile1": 0.25, "quartile2": 0.5, "quartile3": 0.75}


def functional_names(
    lld_names: tuple[str, ...] = LLD_NAMES, functionals: tuple[str, ...] = FUNCTIONALS
) -> tuple[str, ...]:
    """Column names of :func:`audio_functionals`: ``<lld>_<functional>``, grouped by LLD.

    Args:
        lld_names: names of the input tracks.
        functionals: functionals computed, a subset of :data:`FUNCTIONALS`.

    Returns:
        ``len(lld_names) * len(functionals)`` names.

    >>> functional_names(("F0final_sma",), ("amean", "stddev"))
    ('F0final_sma_amean', 'F0final_sma_stddev')
    """
    return tuple(f"{lld}_{name}" for lld in lld_names for name in functionals)


def window_bounds(num_frames: int, window_frames: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last frame of each row's window, cut to ``[0, num_frames)``.

    Args:
        num_frames: rows (frames) of the tracks.
        window_frames: frames in a full window.
        mode: ``centred`` or ``causal``.

    Returns:
        ``(start, stop)`` int arrays of length ``num_frames``.

    >>> window_bounds(4, 3, "centred")
    (array([0, 0, 1, 2]), array([2, 3, 4, 4]))
    >>> window_bounds(4, 3, "causal")
    (array([0, 0, 0, 1]), array([1, 2, 3, 4]))
    """
    t = np.arange(num_frames)
    first = t - (window_frames - 1) // 2 if mode == "centred" else t - window_frames + 1
    return np.clip(first, 0, num_frames), np.clip(first + window_frames, 0, num_frames)


def audio_functionals(
    lld: np.ndarray,
    window_frames: int = DEFAULT_WINDOW_FRAMES,
    mode: str = DEFAULT_WINDOW_MODE,
    functionals: tuple[str, ...] = FUNCTIONALS,
) -> np.ndarray:
    """Functionals of each track over a sliding window, one row per frame.

    Args:
        lld: ``(T, D)`` tracks, e.g. the 76 columns of
            :func:`emorec.features.audio_lld.extract_audio_lld`.
        window_frames: frames per window (default 75 = 3 s of 40 ms frames).
        mode: ``centred`` (default) or ``causal`` (see the module docstring).
        functionals: which of :data:`FUNCTIONALS` to compute, in that order or any order.

    Returns:
        ``(T, D * len(functionals))`` float32; column names from
        :func:`functional_names` with the same ``functionals``.

    Raises:
        ConfigError: unknown mode or functional, window shorter than 1 frame, or ``lld``
            not 2-D or not finite.

    >>> import numpy as np
    >>> track = np.arange(6, dtype=np.float32)[:, None]
    >>> audio_functionals(track, 3, functionals=("amean", "linregc1"))[:, 0].tolist()
    [0.5, 1.0, 2.0, 3.0, 4.0, 4.5]
    """
    lld = np.asarray(lld)
    if mode not in WINDOW_MODES:
        raise ConfigError(
            f"audio_functionals: unknown window mode {mode!r} (expected one of {', '.join(WINDOW_MODES)})"
        )
    unknown = [name for name in functionals if name not in FUNCTIONALS]
    if unknown:
        raise ConfigError(
            f"audio_functionals: unknown functionals {unknown} (known: {', '.join(FUNCTIONALS)})"
        )
    if window_frames < 1:
        raise ConfigError(f"audio_functionals: window_frames must be >= 1, got {window_frames}")
    if lld.ndim != 2:
        raise ConfigError(
            f"audio_functionals: tracks must be (frames, columns), got shape {lld.shape}"
        )
    if not np.all(np.isfinite(lld)):
        raise ConfigError("audio_functionals: tracks contain NaN or infinity")
    num_frames, width = lld.shape
    out = np.zeros((num_frames, width, len(functionals)), dtype=np.float32)
    if num_frames == 0:
        return out.reshape(0, width * len(functionals))
    start, stop = window_bounds(num_frames, window_frames, mode)
    values = lld.astype(np.float64)
    for begin in range(0, num_frames, _BLOCK_ROWS):
        rows = slice(begin, min(begin + _BLOCK_ROWS, num_frames))
        stats = _block_statistics(values, start[rows], stop[rows], window_frames, functionals)
        for k, name in enumerate(functionals):
            out[rows, :, k] = stats[name]
    return out.reshape(num_frames, width * len(functionals))


def _block_statistics(
    values: np.ndarray, start: np.ndarray, stop: np.ndarray, window: int, wanted: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Each functional as a ``(rows, D)`` array for windows ``[start, stop)`` of ``values``."""
    # Every window is gathered at full length from its start (frames past its stop are masked)
    # from one strided view, as a (rows, D, window) array.
    first = int(start[0])
    last = int(start[-1]) + window
    span = values[first : min(last, values.shape[0])]
    if span.shape[0] < last - first:
        span = np.concatenate([span, np.zeros((last - first - span.shape[0], values.shape[1]))])
    view = np.lib.stride_tricks.sliding_window_view(span, window, axis=0)  # (n, D, window)
    win = np.ascontiguousarray(view[start - first])
    count = (stop - start).astype(np.float64)
    position = np.arange(window, dtype=np.float64)
    mask = position[None, :] < count[:, None]  # (rows, window)
    real = mask[:, None, :]
    n = count[:, None]

    mean = np.where(real, win, 0.0).sum(axis=2) / n
    centred = np.where(real, win - mean[:, :, None], 0.0)
    sq = centred * centred
    m2 = sq.sum(axis=2) / n
    stats: dict[str, np.ndarray] = {"amean": mean, "stddev": np.sqrt(m2)}
    if "skewness" in wanted or "kurtosis" in wanted:
        m3 = (sq * centred).sum(axis=2) / n
        m4 = (sq * sq).sum(axis=2) / n
        scale = np.where(real, np.abs(win), 0.0).max(axis=2)
        varies = np.sqrt(m2) > _CONSTANT_RTOL * np.maximum(scale, np.finfo(np.float64).tiny)
        safe = np.where(varies, m2, 1.0)
        stats["skewness"] = np.where(varies, m3 / safe**1.5, 0.0)
        stats["kurtosis"] = np.where(varies, m4 / safe**2, 0.0)
    if {"min", "max", "range", "quartile1", "quartile2", "quartile3", "iqr1-3"} & set(wanted):
        # Masked frames sort last; order statistic k of a window is ordered[..., k].
        ordered = np.sort(np.where(real, win, np.inf), axis=2)
        rows = np.arange(win.shape[0])
        low = ordered[:, :, 0]
        high = ordered[rows, :, (count - 1).astype(np.int64)]
        stats.update(min=low, max=high, range=high - low)
        for name, q in _QUARTILES.items():
            pos = q * (count - 1.0)
            below = np.floor(pos).astype(np.int64)
            above = np.ceil(pos).astype(np.int64)
            a, b = ordered[rows, :, below], ordered[rows, :, above]
            stats[name] = a + (pos - below)[:, None] * (b - a)
        stats["iqr1-3"] = stats["quartile3"] - stats["quartile1"]
    if {"linregc1", "linregc2", "linregerrQ"} & set(wanted):
        x_mean = (count - 1.0) / 2.0  # positions 0..n-1 of the window's real frames
        dx = (position[None, :] - x_mean[:, None]) * mask
        sxx = (dx * dx).sum(axis=1)[:, None]
        sxy = np.einsum("rdw,rw->rd", centred, dx)
        slope = np.where(sxx > 0.0, sxy / np.where(sxx > 0.0, sxx, 1.0), 0.0)
        stats["linregc1"] = slope
        stats["linregc2"] = mean - slope * x_mean[:, None]
        stats["linregerrQ"] = np.maximum(m2 - slope * sxy / n, 0.0)
    return stats

"""The post-processing chain, tuned on dev predictions and applied unchanged to test.

The chain is the protocol's ``postprocess.steps`` (``evaluate/avec2016.yaml``:
the AVEC chain below; ``evaluate/avec2015.yaml`` adds exponential
smoothing), run per output dimension, independently, in the order given;
each step is kept only if it raises the dev CCC (concatenation of all dev
recordings) by more than :data:`MIN_GAIN`. The AVEC chain (Tzirakis et al.
JSTSP §IV, AVEC 2016 baseline):

1. median filter, odd window of 0.4 s … 20 s, per recording, edges padded with
   the edge value (never across recordings);
2. centring: add ``mean(gold) − mean(pred)`` (dev, after step 1);
3. scaling: multiply by ``std(gold) / std(pred)`` about zero as the baseline
   does (``scale_about="mean"`` scales about the dev prediction mean instead,
   the other reading of the paper);
4. time shift: move predictions forward by 1 … 250 frames (0.04 s … 10 s),
   ``out[t] = pred[t − k]``, the first ``k`` frames repeating ``pred[0]``, per
   recording. This compensates the raters' reaction lag (the gold standard
   trails the signal the model sees).

``exponential_smoothing`` (Chen & Jin 2015, eq. 7): ``s_t = α x_t + (1 − α)
s_{t−1}`` with ``s_1 = x_1``, α chosen from a grid; run backward in time by
default (the paper found backward smoothing better after a forward LSTM),
per recording.

Search grids: the median window runs over :data:`DEFAULT_MEDIAN_WINDOWS_S` (12
windows, roughly ×√2 apart), the shift over *every* frame in range — exact
and cheap because the shifted CCC of all lags comes from cumulative sums and
one cross-correlation per recording — and α over :data:`DEFAULT_SMOOTHING_ALPHAS`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal

from emorec.errors import AlignmentError, ConfigError
from emorec.manifest import atomic_write_bytes
from emorec.metrics import DEFAULT_NAMES, HEADLINE_CONVENTION, ccc, ccc_from_sums
from emorec.schema import FRAME_PERIOD

PARAMS_VERSION = 2
AVEC_STEPS = ("median_filter", "centring", "scaling", "time_shift")
STEPS = (*AVEC_STEPS, "exponential_smoothing")
SCALE_ABOUT = ("zero", "mean")
SMOOTHING_DIRECTIONS = ("backward", "forward")
DEFAULT_MEDIAN_WINDOWS_S = (0.4, 0.8, 1.2, 1.6, 2.0, 2.8, 4.0, 5.6, 8.0, 11.2, 16.0, 20.0)
DEFAULT_SHIFT_RANGE_S = (FRAME_PERIOD, 10.0)
DEFAULT_SMOOTHING_ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# A step must beat the running dev CCC by more than this; guards against keeping
# a step on floating-point noise (e.g. centring already-centred predictions).
MIN_GAIN = 1e-9


@dataclasses.dataclass(frozen=True)
class PostprocessGrids:
    """Candidate values searched on dev.

    Median windows in seconds; the shift range in seconds (every frame between its ends is
    tried); the exponential-smoothing factors α and the direction smoothing runs in
    (``backward`` or ``forward`` in time).
    """

    median_windows_s: tuple[float, ...] = DEFAULT_MEDIAN_WINDOWS_S
    shift_range_s: tuple[float, float] = DEFAULT_SHIFT_RANGE_S
    smoothing_alphas: tuple[float, ...] = DEFAULT_SMOOTHING_ALPHAS
    smoothing_direction: str = "backward"

    def median_windows(self, frame_period: float = FRAME_PERIOD) -> list[int]:
        """Odd window lengths in frames: ``round(seconds / frame_period)``, plus one where even.

        Args:
            frame_period: seconds per frame.

        Returns:
            The distinct window lengths (at least 1), sorted.

        >>> PostprocessGrids(median_windows_s=(0.4, 0.5, 1.0)).median_windows()
        [11, 13, 25]
        """
        out = []
        for seconds in self.median_windows_s:
            k = max(1, int(round(seconds / frame_period)))
            out.append(k if k % 2 else k + 1)
        return sorted(set(out))

    def shifts(self, frame_period: float = FRAME_PERIOD) -> np.ndarray:
        """Every shift in frames from the range's low to high end.

        Args:
            frame_period: seconds per frame.

        Returns:
            The int array ``low, low + 1, ..., high`` (``low`` at least 1 frame).

        >>> PostprocessGrids(shift_range_s=(0.04, 0.2)).shifts()
        array([1, 2, 3, 4, 5])
        """
        lo = max(1, int(round(self.shift_range_s[0] / frame_period)))
        hi = int(round(self.shift_range_s[1] / frame_period))
        return np.arange(lo, hi + 1)


@dataclasses.dataclass
class DimensionParams:
    """Chosen post-processing of one output dimension and the dev CCC trail that chose it.

    ``median_window`` and ``shift`` are in frames (0 = step not applied),
    ``smoothing`` is α (1 = not applied); ``order`` is the chain the steps run
    in; ``steps`` holds one record per step tried: the best candidate, its dev
    CCC, the dev CCC before the step and whether it was kept.
    """

    name: str
    median_window: int = 0
    offset: float = 0.0
    scale: float = 1.0
    scale_center: float = 0.0
    shift: int = 0
    smoothing: float = 1.0
    smoothing_direction: str = "backward"
    order: list[str] = dataclasses.field(default_factory=lambda: list(AVEC_STEPS))
    dev_ccc_raw: float = float("nan")
    dev_ccc: float = float("nan")
    steps: list[dict] = dataclasses.field(default_factory=list)

    @property
    def kept(self) -> list[str]:
        """Names of the steps kept, in chain order."""
        return [s["step"] for s in self.steps if s["kept"]]


@dataclasses.dataclass
class PostprocessParams:
    """Everything needed to re-apply the tuned chain (JSON-serialisable through :meth:`to_dict`)."""

    dimensions: list[DimensionParams]
    frame_period: float = FRAME_PERIOD
    convention: str = HEADLINE_CONVENTION
    scale_about: str = "zero"
    median_windows: list[int] = dataclasses.field(default_factory=list)
    shift_range: list[int] = dataclasses.field(default_factory=list)
    smoothing_alphas: list[float] = dataclasses.field(default_factory=list)
    inference: dict | None = None  # how the dev predictions it was tuned on were made (eval window)
    num_dev_recordings: int = 0
    num_dev_frames: int = 0
    version: int = PARAMS_VERSION

    @property
    def names(self) -> tuple[str, ...]:
        """Dimension names in column order."""
        return tuple(d.name for d in self.dimensions)

    def to_dict(self) -> dict:
        """Plain dict of built-in types (NaN written as null).

        Returns:
            The fields as nested dicts and lists, ready for strict JSON.
        """
        return _nan_to_none(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> PostprocessParams:
        """Inverse of :meth:`to_dict`; raises :class:`ConfigError` on a foreign or newer layout.

        Version 1 files (no smoothing, no step order) are read as version 2 with the AVEC
        chain; unknown per-dimension keys are ignored; null CCCs become NaN.

        Args:
            data: the parsed JSON.

        Returns:
            The :class:`PostprocessParams`.

        Raises:
            ConfigError: an unsupported version, or a malformed structure.
        """
        try:
            if data.get("version") not in (1, PARAMS_VERSION):
                raise ConfigError(
                    f"post-processing parameters have version {data.get('version')!r}, "
                    f"emorec reads 1 and {PARAMS_VERSION}"
                )
            fields = {f.name for f in dataclasses.fields(DimensionParams)}
            dims = []
            for d in data["dimensions"]:
                d = {k: v for k, v in d.items() if k in fields}
                for key in ("dev_ccc_raw", "dev_ccc"):
                    d[key] = float("nan") if d.get(key) is None else float(d[key])
                dims.append(DimensionParams(**d))
            rest = {k: v for k, v in data.items() if k != "dimensions"}
            rest["version"] = PARAMS_VERSION  # version 1 is version 2 without smoothing and order
            return cls(dimensions=dims, **rest)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"post-processing parameters are malformed: {exc}") from None

    def save(self, path) -> None:
        """Write as JSON, atomically.

        Args:
            path: the JSON file to write (replaced if it exists).
        """
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        atomic_write_bytes(path, text.encode())

    @classmethod
    def load(cls, path) -> PostprocessParams:
        """Read parameters written by :meth:`save`; errors name the file.

        Args:
            path: the JSON file.

        Returns:
            The :class:`PostprocessParams`.

        Raises:
            ConfigError: the file is missing, not JSON, of an unsupported version or malformed.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read post-processing parameters: {exc}") from None
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def median_filter(x: np.ndarray, window: int) -> np.ndarray:
    """Running median along axis 0 of one recording, padding with edge values (``ndimage`` ``mode="nearest"``).

    Args:
        x: ``(N,)`` or ``(N, D)`` predictions of one recording.
        window: odd window length in frames (1 or less: unchanged).

    Returns:
        The filtered float64 array.

    Raises:
        ConfigError: an even window.

    >>> median_filter(np.array([0.0, 9.0, 0.0, 1.0, 1.0]), 3)
    array([0., 0., 1., 1., 1.])
    """
    x = np.asarray(x, dtype=np.float64)
    if window <= 1 or len(x) == 0:
        return x.copy()
    if window % 2 == 0:
        raise ConfigError(f"median filter window must be odd, got {window}")
    half = window // 2
    pad = [(half, half)] + [(0, 0)] * (x.ndim - 1)
    padded = np.pad(x, pad, mode="edge")
    # pandas' rolling median is O(N log w), ~15x faster than scipy's at 20 s windows.
    frame = pd.DataFrame(padded.reshape(len(padded), -1))
    out = frame.rolling(window).median().to_numpy()[window - 1 :]
    return out.reshape(x.shape)


def shift_forward(x: np.ndarray, shift: int) -> np.ndarray:
    """``out[t] = x[t − shift]`` along axis 0, the first ``shift`` frames repeating ``x[0]``.

    Args:
        x: ``(N,)`` or ``(N, D)`` predictions of one recording.
        shift: frames to delay by (0 or less: unchanged; more than ``N``: all ``x[0]``).

    Returns:
        The shifted float64 array, same shape.

    >>> shift_forward(np.array([1.0, 2.0, 3.0, 4.0]), 2)
    array([1., 1., 1., 2.])
    """
    x = np.asarray(x, dtype=np.float64)
    if shift <= 0 or len(x) == 0:
        return x.copy()
    k = min(int(shift), len(x))
    return np.concatenate([np.repeat(x[:1], k, axis=0), x[: len(x) - k]], axis=0)


def exponential_smoothing(x: np.ndarray, alpha: float, direction: str = "forward") -> np.ndarray:
    """``s_t = α x_t + (1 − α) s_{t−1}``, ``s_1 = x_1``, along axis 0 (``backward``: from the end).

    Args:
        x: ``(N,)`` or ``(N, D)`` predictions of one recording.
        alpha: the smoothing factor α in ``(0, 1]``; 1 or more returns ``x`` unchanged.
        direction: ``"forward"`` (in time) or ``"backward"`` (from the last frame, so
            ``s_N = x_N``).

    Returns:
        The smoothed float64 array, same shape.

    Raises:
        ConfigError: an unknown ``direction``.

    >>> exponential_smoothing(np.array([0.0, 1.0, 1.0]), 0.5)
    array([0.  , 0.5 , 0.75])
    >>> exponential_smoothing(np.array([0.0, 1.0, 1.0]), 0.5, "backward")
    array([0.5, 1. , 1. ])
    """
    x = np.asarray(x, dtype=np.float64)
    if direction not in SMOOTHING_DIRECTIONS:
        raise ConfigError(f"smoothing direction must be one of {', '.join(SMOOTHING_DIRECTIONS)}, got {direction!r}")
    if alpha >= 1.0 or len(x) == 0:
        return x.copy()
    if direction == "backward":
        return exponential_smoothing(x[::-1], alpha, "forward")[::-1].copy()
    # A first-order IIR filter with the initial state set so that s_1 = x_1.
    zi = signal.lfilter_zi([alpha], [1.0, alpha - 1.0])
    shape = (1,) + (1,) * (x.ndim - 1)
    out, _ = signal.lfilter([alpha], [1.0, alpha - 1.0], x, axis=0, zi=zi.reshape(shape) * x[:1])
    return out


def _apply_step(name: str, p: DimensionParams, x: np.ndarray) -> np.ndarray:
    if name == "median_filter":
        return median_filter(x, p.median_window) if p.median_window > 1 else x
    if name == "centring":
        return x + p.offset
    if name == "scaling":
        return (x - p.scale_center) * p.scale + p.scale_center
    if name == "time_shift":
        return shift_forward(x, p.shift)
    if name == "exponential_smoothing":
        return exponential_smoothing(x, p.smoothing, p.smoothing_direction)
    raise ConfigError(f"unknown post-processing step {name!r} (known: {', '.join(STEPS)})")


def _apply_dimension(p: DimensionParams, x: np.ndarray) -> np.ndarray:
    """The chain for one dimension of one recording (steps not kept are at their identity values)."""
    x = np.asarray(x, dtype=np.float64)
    for name in p.order:
        x = _apply_step(name, p, x)
    return x


def apply_postprocessing(params: PostprocessParams, preds: dict) -> dict:
    """Apply tuned parameters to ``{recording_id: pred (N, D)}``; returns new float64 arrays.

    Each dimension runs its own chain in its stored order, per recording.

    Args:
        params: the tuned chain (from :func:`tune_postprocessing` or
            :meth:`PostprocessParams.load`).
        preds: ``{recording_id: (N, D)}`` predictions, ``D`` = the number of tuned dimensions.

    Returns:
        ``{recording_id: (N, D) float64}`` post-processed predictions (inputs unchanged).

    Raises:
        AlignmentError: a prediction array is not ``(N, D)``.
        ConfigError: a stored step name is unknown.

    >>> centring = PostprocessParams([DimensionParams("arousal", offset=0.5, order=["centring"])])
    >>> apply_postprocessing(centring, {"rec": np.zeros((2, 1))})["rec"].ravel()
    array([0.5, 0.5])
    """
    out = {}
    for rec_id, pred in preds.items():
        pred = np.asarray(pred, dtype=np.float64)
        if pred.ndim != 2 or pred.shape[1] != len(params.dimensions):
            raise AlignmentError(
                f"recording {rec_id}: predictions have shape {pred.shape}, "
                f"post-processing expects (N, {len(params.dimensions)})"
            )
        out[rec_id] = np.stack(
            [_apply_dimension(p, pred[:, i]) for i, p in enumerate(params.dimensions)], axis=1
        )
    return out


def _shift_ccc_curve(golds, preds, shifts, convention) -> np.ndarray:
    """Concatenated dev CCC for every forward shift in ``shifts`` (one dimension), via moment sums."""
    shifts = np.asarray(shifts, dtype=np.int64)
    total = np.zeros((6, len(shifts)))
    for y, x in zip(golds, preds):
        n = len(x)
        if n == 0:
            continue
        k = np.minimum(shifts, n)
        cx = np.concatenate([[0.0], np.cumsum(x)])
        cxx = np.concatenate([[0.0], np.cumsum(x * x)])
        cy = np.concatenate([[0.0], np.cumsum(y)])
        # corr[n - 1 + j] = Σ_u x[u] y[u + j]: the aligned part of Σ x'y at lag j.
        corr = signal.correlate(y, x, mode="full")
        lagged = np.where(k < n, corr[np.minimum(n - 1 + k, 2 * n - 2)], 0.0)
        total[0] += n
        total[1] += k * x[0] + cx[n - k]
        total[2] += cy[n]
        total[3] += k * x[0] ** 2 + cxx[n - k]
        total[4] += np.sum(y * y)
        total[5] += x[0] * cy[k] + lagged
    return ccc_from_sums(*total, convention=convention)


def _concat_ccc(golds, preds, convention) -> float:
    return float(ccc(np.concatenate(golds), np.concatenate(preds), convention))


def _better(candidate: float, current: float) -> bool:
    if not np.isfinite(candidate):
        return False
    return not np.isfinite(current) or candidate > current + MIN_GAIN


def _tune_median(golds, preds, grids: PostprocessGrids, windows, shifts, scale_about, convention):
    best = (0, float("nan"), None)
    for w in windows:
        filtered = [median_filter(x, w) for x in preds]
        c = _concat_ccc(golds, filtered, convention)
        if _better(c, best[1]):
            best = (w, c, filtered)
    w, c, filtered = best
    return w, c, filtered, {"median_window": w}


def _tune_centring(golds, preds, grids, windows, shifts, scale_about, convention):
    offset = float(np.concatenate(golds).mean() - np.concatenate(preds).mean())
    centred = [x + offset for x in preds]
    return offset, _concat_ccc(golds, centred, convention), centred, {"offset": offset}


def _tune_scaling(golds, preds, grids, windows, shifts, scale_about, convention):
    pred_all = np.concatenate(preds)
    std_pred = float(pred_all.std(ddof=1)) if len(pred_all) > 1 else 0.0
    if std_pred <= 0:
        return 1.0, float("nan"), preds, {}
    factor = float(np.concatenate(golds).std(ddof=1)) / std_pred
    center = float(pred_all.mean()) if scale_about == "mean" else 0.0
    scaled = [(x - center) * factor + center for x in preds]
    return factor, _concat_ccc(golds, scaled, convention), scaled, {"scale": factor, "scale_center": center}


def _tune_shift(golds, preds, grids, windows, shifts, scale_about, convention):
    curve = _shift_ccc_curve(golds, preds, shifts, convention) if len(shifts) else np.array([])
    finite = np.where(np.isfinite(curve), curve, -np.inf)
    if not (finite.size and np.isfinite(finite.max())):
        return 0, float("nan"), preds, {}
    i = int(np.argmax(finite))
    shift = int(shifts[i])
    return shift, float(curve[i]), [shift_forward(x, shift) for x in preds], {"shift": shift}


def _tune_smoothing(golds, preds, grids: PostprocessGrids, windows, shifts, scale_about, convention):
    best = (1.0, float("nan"), None)
    for alpha in grids.smoothing_alphas:
        smoothed = [exponential_smoothing(x, alpha, grids.smoothing_direction) for x in preds]
        c = _concat_ccc(golds, smoothed, convention)
        if _better(c, best[1]):
            best = (float(alpha), c, smoothed)
    alpha, c, smoothed = best
    return alpha, c, smoothed, {"smoothing": alpha, "smoothing_direction": grids.smoothing_direction}


_TUNERS = {
    "median_filter": _tune_median,
    "centring": _tune_centring,
    "scaling": _tune_scaling,
    "time_shift": _tune_shift,
    "exponential_smoothing": _tune_smoothing,
}


def _tune_dimension(name, golds, preds, steps, grids, windows, shifts, scale_about, convention) -> DimensionParams:
    """Run the chain's search for one dimension (lists of per-recording 1-D arrays)."""
    p = DimensionParams(name=name, order=list(steps))
    current = _concat_ccc(golds, preds, convention)
    p.dev_ccc_raw = current
    for step in steps:
        value, candidate, changed, updates = _TUNERS[step](
            golds, preds, grids, windows, shifts, scale_about, convention)
        kept = changed is not None and _better(candidate, current)
        p.steps.append({"step": step, "value": value, "dev_ccc": candidate, "dev_ccc_before": current,
                        "kept": kept})
        if kept:
            for key, val in updates.items():
                setattr(p, key, val)
            current, preds = candidate, changed
    p.dev_ccc = current
    return p


def tune_postprocessing(
    dev: dict,
    frame_period: float = FRAME_PERIOD,
    grids: PostprocessGrids | None = None,
    names=DEFAULT_NAMES,
    scale_about: str = "zero",
    convention: str = HEADLINE_CONVENTION,
    steps=AVEC_STEPS,
    inference: dict | None = None,
) -> PostprocessParams:
    """Choose the chain on dev data, per dimension.

    Args:
        dev: ``{recording_id: (gold (N, D), pred (N, D))}``.
        frame_period: seconds per frame (the grids are in seconds).
        grids: the candidate values searched.
        names: the dimension names, in column order.
        scale_about: ``zero`` (the baseline) or ``mean``.
        convention: the CCC convention (:mod:`emorec.metrics`).
        steps: the chain, in order (names of :data:`STEPS`).
        inference: how the dev predictions were made (recorded so that prediction can follow it).

    Returns:
        The tuned :class:`PostprocessParams`.

    Raises:
        ConfigError: bad settings or no recordings; AlignmentError: mismatched or non-finite arrays.
    """
    grids = grids or PostprocessGrids()
    names = tuple(names)
    steps = tuple(steps)
    if scale_about not in SCALE_ABOUT:
        raise ConfigError(f"scale_about must be one of {', '.join(SCALE_ABOUT)}, got {scale_about!r}")
    unknown = [s for s in steps if s not in STEPS]
    if unknown or len(set(steps)) != len(steps):
        raise ConfigError(f"post-processing steps {list(steps)}: each must appear once, from {', '.join(STEPS)}")
    if grids.smoothing_direction not in SMOOTHING_DIRECTIONS:
        raise ConfigError(f"smoothing direction must be one of {', '.join(SMOOTHING_DIRECTIONS)}")
    if not dev:
        raise ConfigError("tune_postprocessing: no dev recordings")
    golds, preds = [], []
    for rec_id, (gold, pred) in dev.items():
        g = np.asarray(gold, dtype=np.float64)
        x = np.asarray(pred, dtype=np.float64)
        if g.shape != x.shape or g.ndim != 2 or g.shape[1] != len(names):
            raise AlignmentError(
                f"recording {rec_id}: gold {g.shape} and predictions {x.shape} must both be "
                f"(N, {len(names)})"
            )
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(x))):
            raise AlignmentError(f"recording {rec_id}: gold or predictions contain NaN or inf")
        golds.append(g)
        preds.append(x)
    windows = grids.median_windows(frame_period)
    shifts = grids.shifts(frame_period)
    dims = [
        _tune_dimension(
            name, [g[:, i] for g in golds], [x[:, i] for x in preds], steps, grids, windows, shifts,
            scale_about, convention,
        )
        for i, name in enumerate(names)
    ]
    return PostprocessParams(
        dimensions=dims,
        frame_period=float(frame_period),
        convention=convention,
        scale_about=scale_about,
        median_windows=[int(w) for w in windows],
        shift_range=[int(shifts[0]), int(shifts[-1])] if len(shifts) else [],
        smoothing_alphas=[float(a) for a in grids.smoothing_alphas] if "exponential_smoothing" in steps else [],
        inference=dict(inference) if inference else None,
        num_dev_recordings=len(golds),
        num_dev_frames=int(sum(len(g) for g in golds)),
    )

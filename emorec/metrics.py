"""Evaluation metrics: CCC under named conventions, Pearson, RMSE, and a streaming Keras CCC.

CCC conventions (``ρ = 2 cov / (var_x + var_y + (μx − μy)²)``):

- ``"avec"``: variances with N−1, covariance with N — the AVEC 2016 baseline
  MATLAB and AVEC 2018 Python scripts. emorec's headline number uses it.
- ``"biased"``: every moment with 1/N — what the training loss computes.
- ``"unbiased"``: every moment with 1/(N−1) — the metric of the original release.

The headline is one CCC over all frames of a partition concatenated; the mean of
per-recording CCCs (used by some AVEC scripts) is reported beside it. Undefined
values (fewer than two frames, zero denominator) are NaN.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from emorec.errors import AlignmentError, ConfigError, LabelError

CONVENTIONS = ("avec", "biased", "unbiased")
HEADLINE_CONVENTION = "avec"
DEFAULT_NAMES = ("arousal", "valence")

# (ddof of the variances, ddof of the covariance) per convention.
_DDOF = {"avec": (1, 0), "biased": (0, 0), "unbiased": (1, 1)}


def _ddof(convention: str) -> tuple[int, int]:
    try:
        return _DDOF[convention]
    except KeyError:
        raise ConfigError(
            f"unknown CCC convention {convention!r}; expected one of {', '.join(CONVENTIONS)}"
        ) from None


def _pair(gold, pred, what: str = "predictions") -> tuple[np.ndarray, np.ndarray, bool]:
    """Both as float64 ``(N, D)``; the flag says the inputs were 1-D."""
    g = np.asarray(gold, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if g.shape != p.shape:
        raise AlignmentError(f"{what}: gold has shape {g.shape}, predictions {p.shape}")
    if g.ndim not in (1, 2):
        raise AlignmentError(f"{what}: expected (N,) or (N, D) arrays, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise LabelError(f"{what}: gold standard contains NaN or inf")
    if not np.all(np.isfinite(p)):
        raise LabelError(f"{what}: predictions contain NaN or inf")
    one_d = g.ndim == 1
    if one_d:
        g, p = g[:, None], p[:, None]
    return g, p, one_d


def _out(values: np.ndarray, one_d: bool):
    return float(values[0]) if one_d else values


def ccc_from_sums(n, sx, sy, sxx, syy, sxy, convention: str = HEADLINE_CONVENTION):
    """CCC from moment sums (arrays broadcast per dimension) under ``convention``; NaN where undefined.

    Args:
        n: frame count.
        sx: sum of the predictions.
        sy: sum of the gold values.
        sxx: sum of the squared predictions.
        syy: sum of the squared gold values.
        sxy: sum of their products.
        convention: see :data:`CONVENTIONS`.

    Returns:
        The CCC (same shape as the sums).

    >>> float(ccc_from_sums(3, 3.0, 3.0, 5.0, 5.0, 5.0, "biased"))  # x = y = [0, 1, 2]
    1.0
    """
    var_ddof, cov_ddof = _ddof(convention)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mx, my = sx / n, sy / n
        ssx = np.maximum(sxx - n * mx * mx, 0.0)
        ssy = np.maximum(syy - n * my * my, 0.0)
        sxy_c = sxy - n * mx * my
        den = ssx / (n - var_ddof) + ssy / (n - var_ddof) + (mx - my) ** 2
        rho = 2.0 * (sxy_c / (n - cov_ddof)) / den
    return np.where((n >= 2) & (den > 0), rho, np.nan)


def ccc(gold, pred, convention: str = HEADLINE_CONVENTION):
    """Concordance correlation coefficient of ``(N,)`` or per column of ``(N, D)`` arrays.

    ``2 cov(g, p) / (var(g) + var(p) + (mean(g) − mean(p))²)`` with the
    convention's degrees of freedom (AVEC: variances N − 1, covariance N).

    Args:
        gold: ``(N,)`` or ``(N, D)`` gold standard.
        pred: predictions of the same shape.
        convention: ``avec``, ``biased`` or ``unbiased``.

    Returns:
        A float for 1-D input, else ``(D,)``; NaN where undefined.

    Raises:
        AlignmentError: shapes differ; LabelError: NaN or inf.

    >>> gold = np.array([0.0, 1.0, 2.0, 3.0])
    >>> round(float(ccc(gold, gold + 1.0, "biased")), 4)  # an offset costs concordance
    0.7143
    >>> float(ccc(gold, gold, "unbiased"))
    1.0
    """
    var_ddof, cov_ddof = _ddof(convention)
    g, p, one_d = _pair(gold, pred)
    n = g.shape[0]
    if n < 2:
        return _out(np.full(g.shape[1], np.nan), one_d)
    # Centred two-pass moments: no cancellation even for long, low-variance tracks.
    mg, mp = g.mean(axis=0), p.mean(axis=0)
    dg, dp = g - mg, p - mp
    var_g = (dg * dg).sum(axis=0) / (n - var_ddof)
    var_p = (dp * dp).sum(axis=0) / (n - var_ddof)
    cov = (dg * dp).sum(axis=0) / (n - cov_ddof)
    den = var_g + var_p + (mg - mp) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(den > 0, 2.0 * cov / den, np.nan)
    return _out(rho, one_d)


def pearson(gold, pred):
    """Pearson correlation of ``(N,)`` or per column of ``(N, D)``; NaN if either side is constant.

    Args:
        gold: ``(N,)`` or ``(N, D)`` gold standard.
        pred: predictions of the same shape.

    Returns:
        A float for 1-D input, else ``(D,)`` float64; NaN where a column is constant.

    Raises:
        AlignmentError: shapes differ or are not 1-D/2-D.
        LabelError: NaN or inf in either input.

    >>> float(pearson(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0])))
    1.0
    >>> gold = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])  # second column constant
    >>> pearson(gold, np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 2.0]]))
    array([-1., nan])
    """
    g, p, one_d = _pair(gold, pred)
    dg, dp = g - g.mean(axis=0), p - p.mean(axis=0)
    den = np.sqrt((dg * dg).sum(axis=0) * (dp * dp).sum(axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0, (dg * dp).sum(axis=0) / den, np.nan)
    return _out(r, one_d)


def rmse(gold, pred):
    """Root mean square error of ``(N,)`` or per column of ``(N, D)``.

    Args:
        gold: ``(N,)`` or ``(N, D)`` gold standard.
        pred: predictions of the same shape.

    Returns:
        A float for 1-D input, else ``(D,)`` float64; NaN for zero frames.

    Raises:
        AlignmentError: shapes differ or are not 1-D/2-D.
        LabelError: NaN or inf in either input.

    >>> round(float(rmse(np.array([0.0, 0.0]), np.array([3.0, 4.0]))) ** 2, 6)
    12.5
    """
    g, p, one_d = _pair(gold, pred)
    if g.shape[0] == 0:
        return _out(np.full(g.shape[1], np.nan), one_d)
    return _out(np.sqrt(np.mean((p - g) ** 2, axis=0)), one_d)


ALSO = ("ccc_per_recording_mean", "pearson", "rmse")


def evaluate_recordings(per_recording: dict, names=DEFAULT_NAMES, convention: str = HEADLINE_CONVENTION,
                        also=ALSO) -> dict:
    """Headline and per-recording metrics for ``{recording_id: (gold (N, D), pred (N, D))}``.

    Per dimension: ``ccc`` on the concatenation of all recordings (headline)
    and, as ``also`` lists them, ``ccc_per_recording_mean`` (NaN recordings
    skipped), ``pearson`` and ``rmse`` on the concatenation. With ``rmse`` and
    both arousal and valence present, Nguyen et al.'s ``E_a``, ``E_v`` and
    ``E_av = sqrt(1/N Σ (â−a)² + (v̂−v)²)`` (their eq. 11, i.e.
    ``sqrt(E_a² + E_v²)``) on the concatenation. ``per_recording`` holds every
    metric of every recording.

    Args:
        per_recording: gold and predictions per recording.
        names: the dimension names, in column order.
        convention: the CCC convention (:data:`CONVENTIONS`).
        also: the extra metrics to report (of :data:`ALSO`).

    Returns:
        ``{"convention", "num_recordings", "num_frames", <name>: {...}, ["E_a", "E_v", "E_av"], "per_recording"}``.

    Raises:
        ConfigError: no recordings or an unknown convention or metric; AlignmentError/LabelError: bad arrays.

    A perfect prediction of N frames scores (N − 1) / N under the AVEC
    convention (variances N − 1, covariance N):

    >>> gold = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    >>> result = evaluate_recordings({"r": (gold, gold)}, also=("rmse",))
    >>> {k: round(v, 4) for k, v in result["arousal"].items()}
    {'ccc': 0.6667, 'rmse': 0.0}
    """
    _ddof(convention)
    names = tuple(names)
    also = tuple(also)
    unknown = [m for m in also if m not in ALSO]
    if unknown:
        raise ConfigError(f"evaluate_recordings: unknown metric(s) {unknown}; known: {', '.join(ALSO)}")
    if not per_recording:
        raise ConfigError("evaluate_recordings: no recordings to evaluate")
    golds, preds, per_rec = [], [], {}
    for rec_id, (gold, pred) in per_recording.items():
        g, p, _ = _pair(gold, pred, what=f"recording {rec_id}")
        if g.shape[1] != len(names):
            raise AlignmentError(
                f"recording {rec_id}: {g.shape[1]} dimensions for names {', '.join(names)}"
            )
        golds.append(g)
        preds.append(p)
        c, r, e = ccc(g, p, convention), pearson(g, p), rmse(g, p)
        per_rec[rec_id] = {"num_frames": int(g.shape[0])}
        for i, name in enumerate(names):
            per_rec[rec_id][name] = {"ccc": float(c[i]), "pearson": float(r[i]), "rmse": float(e[i])}
    g, p = np.concatenate(golds), np.concatenate(preds)
    c, r, e = ccc(g, p, convention), pearson(g, p), rmse(g, p)
    result = {
        "convention": convention,
        "num_recordings": len(per_rec),
        "num_frames": int(g.shape[0]),
    }
    for i, name in enumerate(names):
        per_values = np.array([per_rec[k][name]["ccc"] for k in per_rec])
        finite = per_values[np.isfinite(per_values)]
        values = {
            "ccc": float(c[i]),
            "ccc_per_recording_mean": float(finite.mean()) if finite.size else float("nan"),
            "pearson": float(r[i]),
            "rmse": float(e[i]),
        }
        result[name] = {k: v for k, v in values.items() if k == "ccc" or k in also}
    if "rmse" in also and "arousal" in names and "valence" in names:
        ia, iv = names.index("arousal"), names.index("valence")
        sq = (p[:, ia] - g[:, ia]) ** 2 + (p[:, iv] - g[:, iv]) ** 2
        result["E_a"] = float(e[ia])
        result["E_v"] = float(e[iv])
        result["E_av"] = float(np.sqrt(np.mean(sq)))
    result["per_recording"] = per_rec
    return result


@keras.saving.register_keras_serializable(package="emorec")
class CCCMetric(keras.metrics.Metric):
    """Streaming CCC over every frame seen since the last reset (moment sums in float64).

    ``sample_weight`` ``(B, T)`` is the frame mask (frames with weight 0 are
    skipped; others count once). ``result()`` is the mean over dimensions, or
    dimension ``dimension`` alone if given; :meth:`result_per_dimension` gives all.

    Args:
        num_dims: number of output dimensions ``D`` (2: arousal, valence).
        dimension: report only this dimension's CCC (0-based), or None for the mean.
        convention: the CCC convention (:data:`CONVENTIONS`).
        name: the metric's name in logs.
        dtype: the dtype of the result (the sums are float64 regardless).

    Raises:
        ConfigError: an unknown convention, or ``dimension`` outside ``0 .. num_dims - 1``.

    A perfect prediction of three frames scores (N − 1) / N under the AVEC convention:

    >>> metric = CCCMetric()
    >>> frames = np.array([[[0.0, 0.0], [1.0, 2.0], [2.0, 1.0]]])
    >>> metric.update_state(frames, frames)
    >>> [round(float(v), 4) for v in metric.result_per_dimension()]
    [0.6667, 0.6667]
    """

    def __init__(self, num_dims=2, dimension=None, convention=HEADLINE_CONVENTION, name="ccc", dtype=None):
        super().__init__(name=name, dtype=dtype)
        _ddof(convention)
        if dimension is not None and not 0 <= int(dimension) < int(num_dims):
            raise ConfigError(f"CCCMetric: dimension {dimension} outside 0..{int(num_dims) - 1}")
        self.num_dims = int(num_dims)
        self.dimension = None if dimension is None else int(dimension)
        self.convention = convention
        self.sums = self.add_variable(
            shape=(6, self.num_dims), initializer="zeros", dtype="float64", name="sums"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add this batch's moment sums (``y`` ``(..., D)``, mask ``(...)``).

        Args:
            y_true: ``(..., D)`` gold values (typically ``(B, T, D)``).
            y_pred: ``(..., D)`` predictions, same shape.
            sample_weight: frame mask of shape ``(...)``; frames with weight > 0 count once,
                others are skipped (even NaN). None counts every frame.
        """
        x = ops.reshape(ops.cast(y_pred, "float64"), (-1, self.num_dims))
        y = ops.reshape(ops.cast(y_true, "float64"), (-1, self.num_dims))
        if sample_weight is None:
            valid = ops.ones_like(x[:, :1])
        else:
            w = ops.reshape(ops.cast(sample_weight, "float64"), (-1, 1))
            valid = ops.cast(ops.greater(w, 0), "float64")
        x = ops.where(valid > 0, x, ops.zeros_like(x))
        y = ops.where(valid > 0, y, ops.zeros_like(y))
        batch = ops.stack(
            [
                ops.sum(valid * ops.ones_like(x), axis=0),
                ops.sum(x, axis=0),
                ops.sum(y, axis=0),
                ops.sum(x * x, axis=0),
                ops.sum(y * y, axis=0),
                ops.sum(x * y, axis=0),
            ]
        )
        self.sums.assign(self.sums + batch)

    def result_per_dimension(self):
        """CCC of every dimension ``(D,)`` under the metric's convention (NaN where undefined).

        Returns:
            The ``(D,)`` tensor in the metric's dtype; NaN with fewer than two frames or a zero
            denominator.
        """
        var_ddof, cov_ddof = _ddof(self.convention)
        n, sx, sy, sxx, syy, sxy = (self.sums[i] for i in range(6))
        mx = ops.divide_no_nan(sx, n)
        my = ops.divide_no_nan(sy, n)
        ssx = ops.maximum(sxx - n * mx * mx, 0.0)
        ssy = ops.maximum(syy - n * my * my, 0.0)
        den = (ssx + ssy) / (n - var_ddof) + (mx - my) ** 2
        rho = 2.0 * (sxy - n * mx * my) / (n - cov_ddof) / den
        undefined = ops.logical_or(n < 2, den <= 0)
        return ops.cast(ops.where(undefined, float("nan"), rho), self.dtype)

    def result(self):
        """Mean CCC over dimensions, or the chosen dimension's CCC.

        Returns:
            A scalar tensor (NaN if any averaged dimension is undefined).
        """
        rho = self.result_per_dimension()
        return ops.mean(rho) if self.dimension is None else rho[self.dimension]

    def reset_state(self):
        """Forget every frame seen."""
        self.sums.assign(ops.zeros_like(self.sums))

    def get_config(self):
        """Constructor arguments, for saving.

        Returns:
            The base metric config plus ``num_dims``, ``dimension`` and ``convention``.
        """
        return {
            **super().get_config(),
            "num_dims": self.num_dims,
            "dimension": self.dimension,
            "convention": self.convention,
        }

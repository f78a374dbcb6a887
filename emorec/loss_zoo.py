"""Chen & Jin's loss functions (AVEC 2015, §4.4), exact under tf.distribute.

Single-point losses (eq. 3-4), averaged over the frames of a sequence:

- ``mse``: ``(y - ŷ)²``;
- ``mae``: ``|y - ŷ|``;
- ``tube``: ``max(|y - ŷ| - ε, 0)`` (ε = 0.05), the support-vector tube.

Overall losses, from the moments of a whole sequence (biased 1/T moments, as
eq. 5 defines the covariance):

- ``ccc``: ``1 - ρc`` (the paper writes "-CCC"; the constant changes nothing);
- ``mse_cov``: ``mse - cov(y, ŷ)`` (eq. 5); ``∂cov/∂ŷ_t = (y_t - ȳ) / T`` (eq. 6);
- ``mse_cc``: ``mse / (CC + 1)``, CC the Pearson correlation.

``reduction``: ``sequence`` (default, the paper) computes each loss per
training sequence (a row of the batch, over its real frames) and averages over
the sequences; ``batch`` computes it once over every real frame of the global
batch (the CCC loss of :mod:`emorec.losses`). With several output dimensions
the loss is the mean over the model's target dimensions; the others (a
single-target model's unused column) are left out.

Distribution: what is summed over rows or frames (per-sequence losses and the
count of sequences, or the moment sums) goes through ``reduce_fn``
(:func:`emorec.losses.global_moments`: the value of the global batch, this
replica's share of the gradient), so the SUM of replica gradients is the
single-device gradient, whichever the reduction. Moments are taken in float64.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from emorec.config.base import Section, choice, non_negative_number, setting
from emorec.losses import (
    DIMENSION_NAMES,
    MOMENT_DTYPE,
    ccc_from_moments,
    ccc_moments,
    global_moments,
    scored_frames,
)

LOSSES = ("mse", "mae", "tube", "ccc", "mse_cov", "mse_cc")
REDUCTIONS = ("sequence", "batch")
DEFAULT_TUBE = 0.05
EPS = 1e-8
# Row order of the per-sequence sums (axis -2 of a (..., 9, D) tensor).
_N, _X, _Y, _XX, _YY, _XY, _SQ, _ABS, _TUBE = range(9)


@dataclasses.dataclass(frozen=True)
class ZooLossConfig(Section):
    """The ``loss:`` section of ``feature_lstm`` (Chen & Jin §4.4)."""

    SECTION = "loss"

    name: str = setting("ccc", choice(*LOSSES),
                        doc="mse | mae | tube | ccc (1 - CCC) | mse_cov (mse - cov) | mse_cc (mse / (CC + 1))")
    reduction: str = setting("sequence", choice(*REDUCTIONS),
                             doc="sequence: per training sequence, then the mean (the paper); batch: over "
                                 "every frame of the global batch")
    tube_epsilon: float = setting(DEFAULT_TUBE, non_negative_number, doc="the tube loss's epsilon")


_DEFAULT = ZooLossConfig()


def sequence_sums(y_true, y_pred, mask=None, tube_epsilon=DEFAULT_TUBE, dtype=MOMENT_DTYPE):
    """Per-row sums over the real frames, ``(B, 9, D)``: n, Σx, Σy, Σx², Σy², Σxy, Σ(x-y)², Σ|x-y|, Σtube.

    ``y_true`` and ``y_pred`` are ``(B, T, D)`` (x = prediction), ``mask``
    ``(B, T)`` with 1 = real frame. Padding contributes neither value nor gradient.

    Args:
        y_true: ``(B, T, D)`` gold values (y).
        y_pred: ``(B, T, D)`` predictions (x).
        mask: ``(B, T)``, 1 = a real frame; None = every frame is real.
        tube_epsilon: half-width of the tube (the ``Σtube`` row sums ``max(|x - y| - ε, 0)``).
        dtype: precision of the sums.

    Returns:
        ``(B, 9, D)`` tensor of ``dtype``, the nine sums in the order above.

    >>> import numpy as np
    >>> y, x = np.array([[[1.0], [5.0]]]), np.array([[[2.0], [9.0]]])
    >>> s = sequence_sums(y, x, mask=np.array([[1, 0]]))
    >>> np.asarray(s)[0, :, 0].tolist()
    [1.0, 2.0, 1.0, 4.0, 1.0, 2.0, 1.0, 1.0, 0.95]
    """
    y = ops.cast(y_true, dtype)
    x = ops.cast(y_pred, dtype)
    w = ops.ones_like(x[..., :1]) if mask is None else ops.expand_dims(ops.cast(mask, dtype), -1)
    valid = ops.greater(w, 0)
    x = ops.where(valid, x, ops.zeros_like(x))
    y = ops.where(valid, y, ops.zeros_like(y))
    ones = ops.where(valid, ops.ones_like(x), ops.zeros_like(x))
    error = x - y
    magnitude = ops.abs(error)
    tube = ops.maximum(magnitude - tube_epsilon, ops.zeros_like(magnitude))
    rows = [ones, x, y, x * x, y * y, x * y, error * error, magnitude, tube]
    return ops.stack([ops.sum(r, axis=1) for r in rows], axis=1)


def losses_from_sums(s, name: str, eps=EPS):
    """The loss ``name`` of every sequence (or of the batch) from its sums ``(..., 9, D)``; shape ``(..., D)``.

    Args:
        s: sums as made by :func:`sequence_sums` (or their sum over rows), ``(..., 9, D)``.
        name: one of :data:`LOSSES`.
        eps: added to the denominators of ``ccc`` and ``mse_cc`` (and under the square root of
            the Pearson correlation).

    Returns:
        ``(..., D)`` losses; means over ``n = max(count, 1)`` frames, moments biased (1/n).

    Raises:
        ValueError: an unknown ``name``.

    >>> import numpy as np
    >>> y = np.array([[[0.0], [1.0]]]); x = np.array([[[0.0], [2.0]]])
    >>> s = sequence_sums(y, x)
    >>> [float(losses_from_sums(s, k)[0, 0]) for k in ("mse", "mae", "mse_cov")]
    [0.5, 0.5, 0.0]
    """
    n = ops.maximum(s[..., _N, :], ops.ones_like(s[..., _N, :]))
    mse = s[..., _SQ, :] / n
    if name == "mse":
        return mse
    if name == "mae":
        return s[..., _ABS, :] / n
    if name == "tube":
        return s[..., _TUBE, :] / n
    mu_x, mu_y = s[..., _X, :] / n, s[..., _Y, :] / n
    zero = ops.zeros_like(mu_x)
    var_x = ops.maximum(s[..., _XX, :] / n - mu_x * mu_x, zero)
    var_y = ops.maximum(s[..., _YY, :] / n - mu_y * mu_y, zero)
    cov = s[..., _XY, :] / n - mu_x * mu_y
    if name == "ccc":
        return 1.0 - 2.0 * cov / (var_x + var_y + ops.square(mu_x - mu_y) + eps)
    if name == "mse_cov":
        return mse - cov
    if name == "mse_cc":
        cc = cov / ops.sqrt(var_x * var_y + eps)
        return mse / (cc + 1.0 + eps)
    raise ValueError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})")


def _target_mean(values, targets):
    """Mean over the target columns of ``(..., D)`` values (all when ``targets`` is None)."""
    if targets is None:
        return ops.mean(values, axis=-1)
    return ops.mean(ops.stack([values[..., k] for k in targets], axis=-1), axis=-1)


def zoo_loss(y_true, y_pred, mask=None, *, name=_DEFAULT.name, reduction=_DEFAULT.reduction,
             tube_epsilon=_DEFAULT.tube_epsilon, targets=None, reduce_fn=global_moments, dtype=MOMENT_DTYPE):
    """The loss ``name`` of a batch (see the module docstring), a float32 scalar.

    Args:
        y_true: ``(B, T, D)`` gold values.
        y_pred: ``(B, T, D)`` predictions.
        mask: ``(B, T)``, 1 = a frame that counts.
        name: one of :data:`LOSSES`.
        reduction: ``sequence`` or ``batch``.
        tube_epsilon: the tube's half-width.
        targets: the column indices the loss covers (None: every column).
        reduce_fn: makes sums global under tf.distribute (identity on one device).
        dtype: precision of the sums.

    Returns:
        The scalar loss.
    """
    if name not in LOSSES or reduction not in REDUCTIONS:
        raise ValueError(f"loss {name!r} / reduction {reduction!r}: expected {LOSSES} / {REDUCTIONS}")
    per_row = sequence_sums(y_true, y_pred, mask, tube_epsilon, dtype)
    if reduction == "batch":
        total = reduce_fn(ops.sum(per_row, axis=0))
        return ops.cast(_target_mean(losses_from_sums(total, name), targets), "float32")
    per_row_loss = _target_mean(losses_from_sums(per_row, name), targets)  # (B,)
    present = ops.cast(ops.greater(per_row[:, _N, 0], 0), dtype)
    kept = ops.where(present > 0, per_row_loss, ops.zeros_like(per_row_loss))
    sums = reduce_fn(ops.stack([ops.sum(kept), ops.sum(present)]))
    return ops.cast(sums[0] / ops.maximum(sums[1], ops.ones_like(sums[1])), "float32")


def zoo_objective(batch, outputs, reduce_fn=global_moments, *, name=_DEFAULT.name,
                  reduction=_DEFAULT.reduction, tube_epsilon=_DEFAULT.tube_epsilon, targets=None):
    """``(loss, terms)`` of ``outputs["emotion"]`` against ``batch["labels"]`` on the scored frames.

    Terms: ``loss_<name>``, and the batch's CCC of each target dimension
    (``ccc_arousal``, ``ccc_valence``) for the progress bar and the history.
    ``targets`` (column indices; None = both) leaves a single-target model's
    other column out of the loss and the terms.

    Args:
        batch: the batch dict: ``labels`` ``(B, T, 2)``, and ``target`` or ``mask`` ``(B, T)``
            for the scored frames (:func:`emorec.losses.scored_frames`).
        outputs: the model's outputs; ``emotion`` ``(B, T, 2)``.
        reduce_fn: makes sums global under tf.distribute
            (:func:`emorec.losses.global_moments`).
        name: one of :data:`LOSSES`.
        reduction: ``sequence`` or ``batch``.
        tube_epsilon: the tube's half-width.
        targets: the column indices the loss covers (None: both).

    Returns:
        ``(loss, terms)``: the float32 scalar loss of :func:`zoo_loss`, and ``{term name: float32
        scalar}`` with the CCCs under ``stop_gradient``.

    Raises:
        ValueError: an unknown ``name`` or ``reduction``.
    """
    mask = scored_frames(batch)
    loss = zoo_loss(batch["labels"], outputs["emotion"], mask, name=name, reduction=reduction,
                    tube_epsilon=tube_epsilon, targets=targets, reduce_fn=reduce_fn)
    terms = {f"loss_{name}": loss}
    rho = ccc_from_moments(reduce_fn(ccc_moments(batch["labels"], outputs["emotion"], mask)))
    for i, dim in enumerate(DIMENSION_NAMES):
        if targets is None or i in targets:
            terms[f"ccc_{dim}"] = ops.stop_gradient(ops.cast(rho[i], "float32"))
    return loss, terms


# -- Keras losses ------------------------------------------------------------------------------


class ZooLoss(keras.losses.Loss):
    """Base of the Keras forms: ``loss(y_true, y_pred, sample_weight=mask)`` with the mask ``(B, T)``.

    For ``model.compile``/``fit`` on one device; emorec's trainer calls
    :func:`zoo_objective`. Under a tf.distribute strategy the value is the
    global batch's (sums all-reduced), like :class:`emorec.losses.CCCLoss`.
    """

    kind = ""

    def __init__(self, reduction_mode: str = "sequence", targets=None, name=None, dtype=None):
        if reduction_mode not in REDUCTIONS:
            raise ValueError(f"reduction_mode must be one of {REDUCTIONS}, got {reduction_mode!r}")
        super().__init__(name=name or f"{self.kind}_loss", reduction="sum_over_batch_size", dtype=dtype)
        self.reduction_mode = reduction_mode
        self.targets = None if targets is None else tuple(int(t) for t in targets)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The scalar loss; ``sample_weight`` ``(B, T)`` masks frames rather than weighting them."""
        with keras.name_scope(self.name):
            return self.call(y_true, y_pred, mask=sample_weight)

    def _settings(self) -> dict:
        return {}

    def call(self, y_true, y_pred, mask=None):
        """The loss of the (global) batch."""
        value = zoo_loss(y_true, y_pred, mask, name=self.kind, reduction=self.reduction_mode,
                         targets=self.targets, **self._settings())
        return ops.cast(value, self.dtype)

    def get_config(self):
        """Constructor arguments, for saving."""
        config = super().get_config()
        config.pop("reduction", None)
        return {**config, "reduction_mode": self.reduction_mode,
                "targets": None if self.targets is None else list(self.targets), **self._settings()}


@keras.saving.register_keras_serializable(package="emorec")
class MSELoss(ZooLoss):
    """Mean squared error per sequence (or batch)."""

    kind = "mse"


@keras.saving.register_keras_serializable(package="emorec")
class MAELoss(ZooLoss):
    """Mean absolute error per sequence (or batch)."""

    kind = "mae"


@keras.saving.register_keras_serializable(package="emorec")
class TubeLoss(ZooLoss):
    """ε-insensitive ("tube") error: errors within ``epsilon`` count as zero."""

    kind = "tube"

    def __init__(self, epsilon: float = DEFAULT_TUBE, **kwargs):
        super().__init__(**kwargs)
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.epsilon = float(epsilon)

    def _settings(self) -> dict:
        return {"tube_epsilon": self.epsilon}

    def get_config(self):
        """Constructor arguments, for saving."""
        config = super().get_config()
        config["epsilon"] = config.pop("tube_epsilon")
        return config


@keras.saving.register_keras_serializable(package="emorec")
class NegCCCLoss(ZooLoss):
    """``1 - ρc`` per sequence (or over the batch)."""

    kind = "ccc"


@keras.saving.register_keras_serializable(package="emorec")
class MSECovLoss(ZooLoss):
    """``mse - cov`` (Chen & Jin eq. 5)."""

    kind = "mse_cov"


@keras.saving.register_keras_serializable(package="emorec")
class MSECCLoss(ZooLoss):
    """``mse / (CC + 1)``, CC the Pearson correlation."""

    kind = "mse_cc"


KERAS_LOSSES = {cls.kind: cls for cls in (MSELoss, MAELoss, TubeLoss, NegCCCLoss, MSECovLoss, MSECCLoss)}


def keras_loss(config: ZooLossConfig, targets=None) -> ZooLoss:
    """The Keras loss object of a ``loss:`` section.

    Args:
        config: the ``loss:`` section (name, reduction, tube epsilon).
        targets: the column indices the loss covers (None: every column).

    Returns:
        A new :class:`ZooLoss` subclass instance of :data:`KERAS_LOSSES` for ``config.name``
        (``TubeLoss`` gets ``config.tube_epsilon``).

    >>> type(keras_loss(ZooLossConfig(name="mse_cov"))).__name__
    'MSECovLoss'
    """
    cls = KERAS_LOSSES[config.name]
    kwargs = {"reduction_mode": config.reduction, "targets": targets}
    if config.name == "tube":
        kwargs["epsilon"] = config.tube_epsilon
    return cls(**kwargs)

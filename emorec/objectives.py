"""Nguyen et al.'s joint objective α·L2D + β·L1D + γ·(1 − (ρ_a + ρ_v)/2), exact under tf.distribute.

``L2D`` and ``L1D`` (paper eq. 3–4) compare the face and audio reconstructions
(``outputs["recon_video"]``, ``outputs["recon_audio"]``) with the inputs over
the valid frames of the batch; the last term is the CCC loss of eq. 7
(:mod:`emorec.losses`). A term whose reconstruction the model does not output
(the unimodal and decoder-free ablations) is left out of the sum and of the
returned terms.

``reconstruction`` chooses how a reconstruction error is reduced:

- ``mean`` (default): the mean squared error per element over the valid
  frames. With it, α = β = 1 and γ = 0.01 put the three terms on comparable
  scales (an MSE of a few 1e-2 on [0, 1] faces against 0.01 × a CCC loss near 1).
- ``sum``: eq. 3–4 as printed, Σ_t ‖Î_t − I_t‖² over the frames of the batch.
  Its size grows with the batch and the image (27 648 values per face), so with
  the paper's weights the CCC term becomes a rounding error; it is here to
  reproduce the formula, not as a recommendation.

Distribution: like the CCC moments, the reconstruction error is carried as sums
(squared error, element count) that are made global with the same ``reduce_fn``
(``local + stop_gradient(global − local)``). Every replica then holds the
loss of the global batch, and the gradient of its value is that replica's share
(∂Σ_local / N_global), so the SUM of replica gradients equals the single-device
gradient. Averaging per-replica means instead would be wrong whenever replicas
hold different numbers of valid frames.
"""

from __future__ import annotations

import dataclasses

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

RECONSTRUCTIONS = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class JointLossConfig(Section):
    """The ``loss:`` section of the ae_lstm family (Nguyen et al. eq. 8)."""

    SECTION = "loss"

    alpha: float = setting(1.0, non_negative_number, doc="face reconstruction (L2D)")
    beta: float = setting(1.0, non_negative_number, doc="audio reconstruction (L1D)")
    gamma: float = setting(0.01, non_negative_number, doc="1 - (rho_a + rho_v) / 2")
    reconstruction: str = setting("mean", choice(*RECONSTRUCTIONS),
                                  doc="mean squared error per value | sum (eq. 3-4 as printed)")


_JOINT = JointLossConfig()
# (output key, batch key, term name, weight name)
RECONSTRUCTION_TERMS = (
    ("recon_video", "video", "loss_2d", "alpha"),
    ("recon_audio", "audio", "loss_1d", "beta"),
)


def reconstruction_sums(target, reconstruction, mask=None, dtype=MOMENT_DTYPE):
    """``[Σ squared error, number of values]`` over the valid frames, as a ``(2,)`` tensor.

    Per-frame sums are taken in the input precision and accumulated across frames in
    ``dtype``; a masked frame contributes neither value nor gradient.

    Args:
        target: ``(B, T, ...)`` the inputs to reconstruct (cast to the reconstruction's dtype).
        reconstruction: ``(B, T, ...)`` the decoder outputs, same shape.
        mask: ``(B, T)`` frame mask, > 0 = real frame; None counts every frame.
        dtype: the dtype of the accumulated sums.

    Returns:
        The ``(2,)`` tensor ``[error, count]``; ``count`` is valid frames × values per frame.
        Sums add across replicas, so they can go through a moment reducer.

    >>> import numpy as np
    >>> sums = reconstruction_sums(np.zeros((1, 2, 3)), np.ones((1, 2, 3)), mask=np.array([[1, 0]]))
    >>> np.asarray(sums).tolist()
    [3.0, 3.0]
    """
    target = ops.cast(target, reconstruction.dtype)
    per_value = ops.square(reconstruction - target)
    rank = len(per_value.shape)
    per_frame = ops.sum(per_value, axis=tuple(range(2, rank))) if rank > 2 else per_value
    values_per_frame = 1
    for dim in per_value.shape[2:]:
        values_per_frame *= int(dim)
    per_frame = ops.cast(per_frame, dtype)
    if mask is None:
        valid = ops.ones_like(per_frame)
    else:
        valid = ops.cast(ops.greater(ops.cast(mask, dtype), 0), dtype)
    # where(), not a product: the gradient of a masked frame is exactly zero.
    error = ops.sum(ops.where(valid > 0, per_frame, ops.zeros_like(per_frame)))
    count = ops.sum(valid) * values_per_frame
    return ops.stack([error, count])


def reconstruction_loss(sums, reconstruction="mean"):
    """Loss from (already reduced) ``[Σ error, count]``: the mean, or the sum itself.

    Args:
        sums: ``[error, count]`` from :func:`reconstruction_sums` (possibly made global).
        reconstruction: ``"mean"`` (mean squared error per value) or ``"sum"`` (the sum of
            squared errors, eq. 3-4 as printed).

    Returns:
        The scalar loss in the sums' dtype (the mean divides by at least 1).

    >>> import numpy as np
    >>> sums = np.array([6.0, 3.0])
    >>> float(reconstruction_loss(sums)), float(reconstruction_loss(sums, "sum"))
    (2.0, 6.0)
    """
    if reconstruction == "sum":
        return sums[0]
    return sums[0] / ops.maximum(sums[1], ops.ones_like(sums[1]))


def joint_objective(
    batch,
    outputs,
    reduce_fn=global_moments,
    *,
    alpha=_JOINT.alpha,
    beta=_JOINT.beta,
    gamma=_JOINT.gamma,
    reconstruction=_JOINT.reconstruction,
):
    """Nguyen et al.'s joint objective ``α·L2D + β·L1D + γ·L_ccc`` (eq. 8) and its terms.

    The weights are checked where they enter (:class:`JointLossConfig`). Reconstruction
    terms cover every real frame (``mask``); the CCC term only the scored ones
    (``target``, else ``mask``). A model without decoders gets ``γ·L_ccc`` alone.

    Args:
        batch: the training batch (``labels`` ``(B, T, 2)``, ``mask`` ``(B, T)``, optional
            ``target``, and the ``video`` / ``audio`` inputs the decoders reconstruct).
        outputs: the model outputs (``emotion`` ``(B, T, 2)``, optional ``recon_video``,
            ``recon_audio``).
        reduce_fn: the moment reducer applied to reconstruction sums and CCC moments alike
            (:func:`~emorec.losses.global_moments` or :func:`~emorec.losses.local_moments`).
        alpha: weight of the face reconstruction loss L2D.
        beta: weight of the audio reconstruction loss L1D.
        gamma: weight of the CCC loss ``1 − (ρ_a + ρ_v) / 2``.
        reconstruction: ``"mean"`` or ``"sum"`` (see :func:`reconstruction_loss`).

    Returns:
        ``(total, terms)``: the scalar total and float32 terms ``loss_2d`` and ``loss_1d``
        (when the model reconstructs), ``loss_ccc``, ``ccc_arousal``, ``ccc_valence``.
    """
    weights = {"alpha": float(alpha), "beta": float(beta)}
    mask = batch.get("mask")
    present = [spec for spec in RECONSTRUCTION_TERMS if spec[0] in outputs]
    terms = {}
    total = 0.0
    if present:
        local = ops.concatenate(
            [reconstruction_sums(batch[key], outputs[out], mask) for out, key, _, _ in present]
        )
        reduced = reduce_fn(local)
        for k, (_, _, term, weight) in enumerate(present):
            value = ops.cast(reconstruction_loss(reduced[2 * k: 2 * k + 2], reconstruction), "float32")
            terms[term] = value
            total = total + weights[weight] * value
    # Reconstructions cover every real frame; the emotion term only the scored ones (data.target).
    rho = ccc_from_moments(reduce_fn(ccc_moments(batch["labels"], outputs["emotion"], scored_frames(batch))))
    ccc = ops.cast(ops.mean(1.0 - rho), "float32")
    terms["loss_ccc"] = ccc
    for i, name in enumerate(DIMENSION_NAMES):
        terms[f"ccc_{name}"] = ops.cast(rho[i], "float32")
    total = total + float(gamma) * ccc
    return total, terms

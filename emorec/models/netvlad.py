"""NetVLAD (Arandjelović et al.): a set of N D-dimensional features → one K·D descriptor.

For features ``x_i`` (i = 1..N) and learnable centres ``c_k`` (k = 1..K),
Pini et al.'s eq. 1-2:

    V(k) = Σ_i a_k(x_i) (x_i - c_k),   a_k(x) = softmax_k(-α ||x - c_k||²)

The soft assignment is decoupled from the centres as in NetVLAD: since
``-α ||x - c_k||² = 2α c_kᵀx - α ||c_k||² - α ||x||²`` and the last term is
the same for every k, ``a_k(x) = softmax_k(w_kᵀx + b_k)`` with a free
``(D, K)`` kernel ``w`` and bias ``b`` (a 1 × 1 convolution / dense layer over
the features); :meth:`NetVLAD.set_from_centres` sets ``w_k = 2α c_k``, ``b_k =
-α ||c_k||²`` and ties the residual centres to ``c_k``, which reproduces eq. 2.

Then each ``V(k)`` is L2-normalised over its D values (intra-normalisation;
the paper's "column-wise" for the D × K matrix of NetVLAD's code), the K × D
matrix is flattened cluster-major (element ``k · D + d``), and the whole vector
is L2-normalised. Parameters: ``D·K + K`` (assignment) ``+ K·D`` (centres).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

L2_EPSILON = 1e-12


def _l2_normalize(x, axis):
    """``x / ||x||`` along ``axis``; an all-zero vector stays zero."""
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), L2_EPSILON))
    return x / norm


@keras.saving.register_keras_serializable(package="emorec")
class NetVLAD(keras.layers.Layer):
    """``(B, N, D)`` → ``(B, K · D)`` soft-assignment VLAD with intra- and final L2 normalisation."""

    def __init__(
        self,
        num_clusters: int = 8,
        intra_normalize: bool = True,
        assignment_initializer="glorot_uniform",
        centres_initializer="random_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_clusters = int(num_clusters)
        if num_clusters < 1:
            raise ValueError(f"num_clusters must be positive, got {num_clusters}")
        self.num_clusters = num_clusters
        self.intra_normalize = bool(intra_normalize)
        self.assignment_initializer = keras.initializers.get(assignment_initializer)
        self.centres_initializer = keras.initializers.get(centres_initializer)

    def build(self, input_shape):
        """Assignment kernel ``(D, K)``, bias ``(K,)`` and centres ``(K, D)``."""
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"NetVLAD needs (batch, items, features) inputs, got {input_shape}")
        features = int(input_shape[-1])
        k = self.num_clusters
        self.assignment_kernel = self.add_weight(
            name="assignment_kernel", shape=(features, k), initializer=self.assignment_initializer
        )
        self.assignment_bias = self.add_weight(
            name="assignment_bias", shape=(k,), initializer="zeros"
        )
        self.centres = self.add_weight(
            name="centres", shape=(k, features), initializer=self.centres_initializer
        )

    def call(self, inputs):
        """Aggregate the N features of each example."""
        x = ops.cast(inputs, self.compute_dtype)
        assignment = ops.softmax(
            ops.matmul(x, self.assignment_kernel) + self.assignment_bias, axis=-1
        )  # (B, N, K)
        weighted_sum = ops.einsum("bnk,bnd->bkd", assignment, x)
        mass = ops.sum(assignment, axis=1)[:, :, None]  # (B, K, 1)
        vlad = weighted_sum - mass * self.centres[None]
        if self.intra_normalize:
            vlad = _l2_normalize(vlad, axis=-1)
        flat = ops.reshape(vlad, (-1, self.num_clusters * int(x.shape[-1])))
        return _l2_normalize(flat, axis=-1)

    def compute_output_shape(self, input_shape):
        """``(B, K · D)``."""
        return (input_shape[0], self.num_clusters * int(input_shape[-1]))

    def multiply_adds_per_example(self, input_shape) -> int:
        """Multiply-adds of the assignment (N·D·K) and the aggregation (N·K·D)."""
        items, features = int(input_shape[1]), int(input_shape[2])
        return 2 * items * features * self.num_clusters

    def set_from_centres(self, centres, alpha: float) -> None:
        """Set the layer to eq. 2 for ``centres`` ``(K, D)`` and sharpness ``alpha``.

        Args:
            centres: the cluster centres (e.g. k-means of training features).
            alpha: the decay of the assignment with squared distance.
        """
        centres = np.asarray(centres, "float32")
        if centres.shape != tuple(self.centres.shape):
            raise ValueError(
                f"centres of shape {centres.shape}; the layer has {self.centres.shape}"
            )
        self.assignment_kernel.assign(2.0 * alpha * centres.T)
        self.assignment_bias.assign(-alpha * np.sum(centres**2, axis=1))
        self.centres.assign(centres)

    def get_config(self):
        """Serializable constructor arguments."""
        return {
            **super().get_config(),
            "num_clusters": self.num_clusters,
            "intra_normalize": self.intra_normalize,
            "assignment_initializer": keras.initializers.serialize(self.assignment_initializer),
            "centres_initializer": keras.initializers.serialize(self.centres_initializer),
        }

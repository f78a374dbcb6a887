"""A Dense layer for wide kernels, whose input gradient is computed the cheap way round.

The gradient of ``y = x · W`` with respect to ``x`` is ``dy · Wᵀ``. On the CPU,
oneDNN runs that product with a transposed 18432 × 2048 kernel (the face
auto-encoder's ``fc_latent`` and ``fc_expand``) about twice as slowly as the
same numbers computed as ``(W · dyᵀ)ᵀ``, where only the small ``dy`` is
transposed (80 × 18432 × 2048: 81 ms against 42 ms on this project's 2 cores;
benchmarks/README.md, "Training steps with and without XLA"). :class:`WideDense` is ``keras.layers.Dense``
with that gradient; its forward pass, weights, configuration and values are
Dense's, so checkpoints move between the two. Only training calls
(``training=True``) take the custom gradient: inference graphs, and so every
export (SavedModel, ONNX, LiteRT), hold Dense's plain product.
"""

from __future__ import annotations

import keras
from keras import ops


def wide_matmul(x, kernel):
    """``x · kernel`` for 2-D ``x``, with ``d/dx = (kernel · dyᵀ)ᵀ`` (see the module docstring).

    Args:
        x: ``(B, D)`` inputs.
        kernel: ``(D, U)`` weights: a variable (read here, so that the custom gradient
            sees a tensor) or a tensor.

    Returns:
        ``(B, U)``, equal to ``ops.matmul(x, kernel)``.

    >>> import numpy as np
    >>> x, w = np.ones((2, 3), "float32"), np.arange(12, dtype="float32").reshape(3, 4)
    >>> ops.convert_to_numpy(wide_matmul(x, w)).tolist()
    [[12.0, 15.0, 18.0, 21.0], [12.0, 15.0, 18.0, 21.0]]
    """
    return _wide_product(x, ops.copy(kernel))


@ops.custom_gradient
def _wide_product(x, kernel):
    def grad(*args, upstream=None):
        dy = args[0] if upstream is None else upstream
        return ops.transpose(ops.matmul(kernel, ops.transpose(dy))), ops.matmul(ops.transpose(x), dy)

    return ops.matmul(x, kernel), grad


@keras.saving.register_keras_serializable(package="emorec")
class WideDense(keras.layers.Dense):
    """``keras.layers.Dense`` whose input gradient avoids transposing the kernel (module docstring).

    Inference calls, inputs of rank other than 2, LoRA and quantized layers take Dense's own path.
    """

    def call(self, inputs, training=None):
        """Dense's output; with ``training`` True and 2-D inputs through :func:`wide_matmul`.

        Args:
            inputs: ``(B, D)`` (or any rank Dense takes).
            training: True in training calls.

        Returns:
            ``activation(inputs · kernel + bias)``, as ``keras.layers.Dense``.
        """
        plain = not training or len(inputs.shape) != 2
        if plain or self.lora_enabled or getattr(self, "quantization_mode", None):
            return super().call(inputs, training=training)
        x = wide_matmul(inputs, self.kernel)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        if self.activation is not None:
            x = self.activation(x)
        return x

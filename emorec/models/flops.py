"""Counting a model's multiply-adds per example (for throughput as a fraction of matmul FLOP/s).

Counted: convolutions (1-3-D, channels last), dense layers (over every
position of their input), recurrent layers whose cell has ``kernel`` and
``recurrent_kernel`` (Keras' LSTM/GRU/SimpleRNN cells and
:class:`~emorec.models.cell_dropout_lstm.CellDropoutLSTMCell`: the two
matrix products per step), and any layer offering
``multiply_adds_per_example(input_shape)`` (NetVLAD). Not counted: biases,
batch norm, activations, pooling, element-wise sums and gate nonlinearities,
which are memory-bound and small next to the products. ``flops_per_example``
is twice the multiply-adds, the convention under which a matmul of
``(m, k) × (k, n)`` performs ``2 m k n`` FLOPs.
"""

from __future__ import annotations

import math

import keras


def _static(shape, what: str) -> list[int]:
    dims = list(shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(f"{what}: shape {tuple(shape)} is not static; build with fixed sizes")
    return [int(d) for d in dims]


def _layer_multiply_adds(layer) -> int:
    if isinstance(layer, keras.Model):
        return sum(_layer_multiply_adds(inner) for inner in layer.layers)
    if hasattr(layer, "multiply_adds_per_example"):
        return int(layer.multiply_adds_per_example(tuple(layer.input.shape)))
    cell = getattr(layer, "cell", None)
    if cell is not None and hasattr(cell, "kernel") and hasattr(cell, "recurrent_kernel"):
        steps = _static(layer.input.shape, layer.name)[0]
        per_step = math.prod(cell.kernel.shape) + math.prod(cell.recurrent_kernel.shape)
        return steps * per_step
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        return 0
    if isinstance(layer, keras.layers.Dense):
        positions = math.prod(_static(layer.input.shape, layer.name)[:-1])
        return positions * math.prod(kernel.shape)
    if len(kernel.shape) >= 3:  # convolution: (*window, in / groups, filters)
        positions = math.prod(_static(layer.output.shape, layer.name)[:-1])
        return positions * math.prod(kernel.shape)
    raise ValueError(f"{layer.name}: cannot count multiply-adds of {type(layer).__name__}")


def multiply_adds_per_example(model: keras.Model) -> int:
    """Multiply-adds of one example's forward pass through ``model`` (see module docstring).

    Args:
        model: a built functional model with static shapes; nested models are
            counted through their layers.

    Returns:
        The count.

    Raises:
        ValueError: a counted layer has a dynamic shape or an unknown kind of kernel.
    """
    return sum(_layer_multiply_adds(layer) for layer in model.layers)


def flops_per_example(model: keras.Model) -> int:
    """Twice :func:`multiply_adds_per_example`: FLOPs as matmul benchmarks count them.

    Args:
        model: as for :func:`multiply_adds_per_example`.

    Returns:
        FLOPs per example.

    >>> import keras
    >>> x = keras.Input((4, 3))
    >>> flops_per_example(keras.Model(x, keras.layers.Dense(5)(x)))  # 4 positions · 3 · 5 · 2
    120
    """
    return 2 * multiply_adds_per_example(model)

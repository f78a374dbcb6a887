"""An LSTM cell with dropout on its cell update ("recurrent dropout without memory loss").

Pini et al. apply dropout "on the LSTM block of the Audio branch, following
[45] and [37]": Zaremba et al. [45] drop the non-recurrent connections (the
inputs and outputs of each layer: plain ``Dropout`` layers around the RNNs),
Semeniuta et al. [37] drop the candidate cell update ``g`` only, so the
memory ``c`` is never wiped:

    i, f, o = sigmoid(.), g = tanh(.)   from   x W + h U + b
    c' = f · c + i · dropout(g)
    h' = o · tanh(c')

Keras' ``recurrent_dropout`` drops ``h`` on the recurrent connections instead
(Gal and Ghahramani), hence this cell. Gate order in the weights is Keras'
(i, f, g, o); the forget gate's bias starts at 1 as in Keras. Parameters:
``4 · units · (input + units + 1)``. The dropout mask is drawn anew at every
time step (Semeniuta et al.'s per-step variant).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="emorec")
class CellDropoutLSTMCell(keras.layers.Layer):
    """LSTM cell whose candidate update ``g`` is dropped with rate ``cell_dropout`` in training."""

    def __init__(self, units: int, cell_dropout: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        units = int(units)
        if units < 1:
            raise ValueError(f"units must be positive, got {units}")
        if not 0.0 <= float(cell_dropout) < 1.0:
            raise ValueError(f"cell_dropout must be in [0, 1), got {cell_dropout}")
        self.units = units
        self.cell_dropout = float(cell_dropout)
        self.seed = seed
        self.state_size = [units, units]
        self.output_size = units
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        """Kernel ``(input, 4u)``, recurrent kernel ``(u, 4u)``, bias ``(4u,)``."""
        features = int(input_shape[-1])
        u = self.units
        self.kernel = self.add_weight(
            name="kernel", shape=(features, 4 * u), initializer="glorot_uniform"
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(u, 4 * u), initializer="orthogonal"
        )

        def forget_bias_one(shape, dtype=None):
            return ops.concatenate(
                [ops.zeros((u,), dtype), ops.ones((u,), dtype), ops.zeros((2 * u,), dtype)]
            )

        self.bias = self.add_weight(name="bias", shape=(4 * u,), initializer=forget_bias_one)

    def call(self, inputs, states, training=False):
        """One step: ``inputs (B, F)``, ``states [h, c]`` → ``(h', [h', c'])``."""
        h, c = states
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent_kernel) + self.bias
        i, f, g, o = ops.split(z, 4, axis=-1)
        g = ops.tanh(g)
        if training and self.cell_dropout > 0.0:
            g = keras.random.dropout(g, self.cell_dropout, seed=self.seed_generator)
        c = ops.sigmoid(f) * c + ops.sigmoid(i) * g
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]

    def get_initial_state(self, batch_size=None):
        """Zero ``h`` and ``c``."""
        return [ops.zeros((batch_size, self.units), self.compute_dtype) for _ in range(2)]

    def get_config(self):
        """Serializable constructor arguments."""
        return {
            **super().get_config(),
            "units": self.units,
            "cell_dropout": self.cell_dropout,
            "seed": self.seed,
        }

"""The recurrent part of the Tzirakis et al. models: 2 LSTM layers and a linear output.

The released code used TF 0.12's ``LSTMCell(use_peepholes=True,
cell_clip=100)`` with forget bias 1, which Keras has no equivalent for, so
:class:`PeepholeLSTMCell` re-implements its equations (gate order and
initialisation as in TF 1):

    z          = [x_t, h_{t-1}] @ W + b            split into i, j, f, o
    c_t        = σ(f + forget_bias + w_f ⊙ c_{t-1}) ⊙ c_{t-1}
               + σ(i + w_i ⊙ c_{t-1}) ⊙ tanh(j)
    c_t        = clip(c_t, −cell_clip, cell_clip)
    h_t        = σ(o + w_o ⊙ c_t) ⊙ tanh(c_t)

Note the output-gate peephole reads the *new* (clipped) cell state.

State layout (used by the streaming export): :class:`RecurrentHead` packs the
states of all layers into one tensor ``(batch, 2 * num_layers, units)`` where
index ``2 l`` is ``h`` and ``2 l + 1`` is ``c`` of LSTM layer ``l`` (0 = the
layer that reads the features). All zeros = the start of a sequence, which is
what the offline model uses for every training window (not stateful).

When training, both cells multiply by their kernels with
:func:`~emorec.models.wide_dense.wide_matmul`, whose input gradient does not
transpose the kernel (faster with oneDNN on the CPU; same values; inference
and exports keep the plain product): :class:`WideLSTM` is
``keras.layers.LSTM`` with such a cell, and keeps its cuDNN path on a GPU.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from emorec.config.base import (
    FieldError,
    Section,
    choice,
    number,
    optional,
    positive_int,
    positive_number,
    setting,
)
from emorec.models.wide_dense import wide_matmul

RECURRENT_CHOICES = ("peephole", "keras")
NUM_OUTPUTS = 2  # arousal, valence



@dataclasses.dataclass(frozen=True)
class RecurrentOptions(Section):
    """Settings of the Tzirakis et al. recurrent part (2 x 256 peephole LSTM by default)."""

    recurrent: str = setting("peephole", choice(*RECURRENT_CHOICES),
                             doc="peephole = TF 1 LSTMCell(use_peepholes, cell_clip); keras = keras.layers.LSTM")
    lstm_units: int = setting(256, positive_int)
    lstm_layers: int = setting(2, positive_int)
    cell_clip: float | None = setting(100.0, optional(positive_number), doc="null = no clipping (peephole only)")
    forget_bias: float = setting(1.0, number)

    def check(self) -> None:
        """Keras' LSTM takes a forget bias of 0 or 1 only.

        Raises:
            FieldError: ``recurrent: keras`` with a ``forget_bias`` other than 0 or 1.
        """
        super().check()
        if self.recurrent == "keras" and self.forget_bias not in (0.0, 1.0):
            raise FieldError("forget_bias", f"must be 0 or 1 with recurrent: keras, got {self.forget_bias}")


@keras.saving.register_keras_serializable(package="emorec")
class PeepholeLSTMCell(keras.layers.Layer):
    """LSTM cell with diagonal peephole connections and an optionally clipped cell state.

    The arguments default to TF 1 ``LSTMCell``'s (no clipping, forget bias 1);
    the model settings (clip 100) come from :class:`RecurrentOptions`.

    Args:
        units: size of ``h`` and ``c``.
        use_peepholes: add the diagonal peepholes ``w_i``, ``w_f``, ``w_o``.
        cell_clip: clip ``c_t`` to ``[-cell_clip, cell_clip]``; None does not clip.
        forget_bias: constant added to the forget gate's input (not a trainable initial value).
        kernel_initializer: initialiser of the joint ``[x, h]`` kernel ``(D + units, 4 units)``.
        peephole_initializer: initialiser of the peephole weights ``(units,)`` each.
        **kwargs: Keras ``Layer`` arguments (``name``, ``dtype``...).
    """

    def __init__(
        self,
        units: int,
        *,
        use_peepholes: bool = True,
        cell_clip: float | None = None,
        forget_bias: float = 1.0,
        kernel_initializer="glorot_uniform",
        peephole_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = int(units)
        self.use_peepholes = bool(use_peepholes)
        self.cell_clip = None if cell_clip is None else float(cell_clip)
        self.forget_bias = float(forget_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.peephole_initializer = keras.initializers.get(peephole_initializer)
        self.state_size = [self.units, self.units]
        self.output_size = self.units

    def build(self, input_shape):
        """Create one kernel over ``[x, h]`` (as TF 1 does, so Glorot sees the joint fans).

        Args:
            input_shape: shape of one step's input, ``(B, D)``; ``D`` sizes the kernel.
        """
        input_dim = int(input_shape[-1])
        u = self.units
        self.kernel = self.add_weight(
            shape=(input_dim + u, 4 * u), initializer=self.kernel_initializer, name="kernel"
        )
        # The forget bias is a constant added in call(), not an initial value.
        self.bias = self.add_weight(shape=(4 * u,), initializer="zeros", name="bias")
        if self.use_peepholes:
            self.w_i = self.add_weight(shape=(u,), initializer=self.peephole_initializer, name="w_i")
            self.w_f = self.add_weight(shape=(u,), initializer=self.peephole_initializer, name="w_f")
            self.w_o = self.add_weight(shape=(u,), initializer=self.peephole_initializer, name="w_o")
        self.built = True

    def call(self, inputs, states, training=False):
        """One time step: returns ``(h_t, [h_t, c_t])``.

        Args:
            inputs: ``(B, D)`` features of the step.
            states: ``[h_{t-1}, c_{t-1}]``, each ``(B, units)``.
            training: True while training: the product then takes the cheaper input gradient
                (the cell has no dropout).

        Returns:
            ``(h_t, [h_t, c_t])``, each ``(B, units)``.
        """
        h_prev, c_prev = states[0], states[1]
        joint = ops.concatenate([inputs, h_prev], axis=-1)
        z = (wide_matmul(joint, self.kernel) if training else ops.matmul(joint, self.kernel)) + self.bias
        i, j, f, o = ops.split(z, 4, axis=-1)
        if self.use_peepholes:
            i = i + self.w_i * c_prev
            f = f + self.w_f * c_prev
        c = ops.sigmoid(f + self.forget_bias) * c_prev + ops.sigmoid(i) * ops.tanh(j)
        if self.cell_clip is not None:
            c = ops.clip(c, -self.cell_clip, self.cell_clip)
        if self.use_peepholes:
            o = o + self.w_o * c
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]

    def get_config(self):
        """Serializable constructor arguments.

        Returns:
            The base layer config plus ``units``, ``use_peepholes``, ``cell_clip``,
            ``forget_bias`` and the two serialised initialisers.
        """
        config = super().get_config()
        config.update(
            units=self.units,
            use_peepholes=self.use_peepholes,
            cell_clip=self.cell_clip,
            forget_bias=self.forget_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            peephole_initializer=keras.initializers.serialize(self.peephole_initializer),
        )
        return config


class WideLSTMCell(keras.layers.LSTMCell):
    """``keras.layers.LSTMCell`` with :func:`~emorec.models.wide_dense.wide_matmul` products.

    Keras' gate order (i, f, c, o) and weights; in inference, with dropout,
    recurrent dropout or ``implementation=1`` it runs Keras' own step.
    """

    def takes_wide_path(self, training) -> bool:
        """True when this step runs :meth:`step_from_input_product`: training, no dropout, implementation 2."""
        dropping = 0.0 < self.dropout < 1.0 or 0.0 < self.recurrent_dropout < 1.0
        return bool(training) and not dropping and self.implementation != 1

    def call(self, inputs, states, training=False):
        """One time step: returns ``(h_t, [h_t, c_t])`` (``keras.layers.LSTMCell``'s interface)."""
        if not self.takes_wide_path(training):
            return super().call(inputs, states, training=training)
        return self.step_from_input_product(wide_matmul(inputs, self.kernel), states)

    def step_from_input_product(self, input_product, states):
        """The step given its inputs already multiplied by the kernel: ``x W + h U``, then the bias.

        Args:
            input_product: ``(B, 4 units)``, the step's ``x W``.
            states: ``[h_{t-1}, c_{t-1}]``, each ``(B, units)``.

        Returns:
            ``(h_t, [h_t, c_t])``, as Keras' LSTMCell computes them.
        """
        h_prev, c_prev = states[0], states[1]
        z = input_product + wide_matmul(h_prev, self.recurrent_kernel)
        if self.use_bias:
            z = z + self.bias
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = self.recurrent_activation(f) * c_prev + self.recurrent_activation(i) * self.activation(g)
        h = self.recurrent_activation(o) * self.activation(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="emorec")
class WideLSTM(keras.layers.LSTM):
    """``keras.layers.LSTM`` stepping with :class:`WideLSTMCell` (same arguments, weights and cuDNN path).

    Training on the CPU over a short window of known length (at most
    :data:`UNROLL_MAX_STEPS` frames; the ``ae_lstm`` windows have 5) takes
    :meth:`unrolled_training_loop`: the input product of every time step in one
    matrix product, then the steps unrolled. Everywhere else (inference,
    exports, masks, dropout, a GPU, long or unknown lengths) it is Keras' loop.
    """

    UNROLL_MAX_STEPS = 16

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        # LSTM builds its LSTMCell inside __init__; the subclass only replaces call(), so the
        # cell keeps every attribute, weight name and checkpoint path of Keras' own.
        self.cell.__class__ = WideLSTMCell

    def _unrolls(self, sequences, mask, training) -> bool:
        steps = sequences.shape[1]
        return bool(
            self.cell.takes_wide_path(training) and mask is None
            and steps is not None and steps <= self.UNROLL_MAX_STEPS
            and not (self.go_backwards or self.stateful)
            and not keras.distribution.list_devices("gpu")
        )

    def inner_loop(self, sequences, initial_state, mask, training=False):
        """Keras' loop, or :meth:`unrolled_training_loop` when training a short window on the CPU."""
        if self._unrolls(sequences, mask, training):
            return self.unrolled_training_loop(sequences, initial_state)
        return super().inner_loop(sequences, initial_state, mask, training=training)

    def unrolled_training_loop(self, sequences, initial_state):
        """The LSTM over ``(B, T, D)`` with the input product hoisted out of the steps.

        Keras' loop multiplies each step's ``(B, D)`` inputs by the kernel
        inside a while loop; here one ``(B T, D)`` product serves every step
        and its gradient is one product too, instead of ``T`` of them summed
        inside the loop's gradient. The sums per step are Keras' own:
        ``x W + h U``, then the bias.

        Args:
            sequences: ``(B, T, D)`` inputs, ``T`` known.
            initial_state: ``[h_0, c_0]``, each ``(B, units)``.

        Returns:
            ``(last_output, outputs, [h_T, c_T])`` as Keras' ``backend.rnn`` returns them.
        """
        cell = self.cell
        steps, depth = sequences.shape[1], sequences.shape[2]
        projected = wide_matmul(ops.reshape(sequences, (-1, depth)), cell.kernel)
        projected = ops.reshape(projected, (-1, steps, 4 * cell.units))
        states = [initial_state[0], initial_state[1]]
        outputs = []
        for t in range(steps):
            h, states = cell.step_from_input_product(projected[:, t], states)
            outputs.append(h)
        return h, ops.stack(outputs, axis=1), states


@keras.saving.register_keras_serializable(package="emorec")
class RecurrentHead(keras.layers.Layer):
    """Stacked LSTM layers + a Dense(2) shared over time, with explicit states.

    ``head(x)`` runs from zero states, ``head(x, initial_states=s)`` from
    ``s``; both return ``(emotion (B, T, 2), final_states)`` with the states
    packed as ``(B, 2 * num_layers, units)`` (see the module docstring). The
    output structure never changes because a Keras functional graph checks
    every call of a layer against its first one; offline models simply leave
    the states unused. The same weights serve every call, so an offline and a
    streaming model share one head.

    Args:
        units: units of every LSTM layer.
        num_layers: number of stacked LSTM layers.
        cell: ``"peephole"`` (:class:`PeepholeLSTMCell`, the release) or ``"keras"``
            (``keras.layers.LSTM``, as :class:`WideLSTM`).
        cell_clip: the peephole cell's clip value, or None (ignored by ``"keras"``).
        forget_bias: the forget-gate bias (0 or 1 with ``"keras"``).
        num_outputs: width of the linear output (2: arousal, valence).
        **kwargs: Keras ``Layer`` arguments (``name``, ``dtype``...).

    Raises:
        ValueError: an unknown ``cell``, or ``"keras"`` with a forget bias other than 0 or 1.
    """

    def __init__(
        self,
        units: int,
        num_layers: int,
        *,
        cell: str,
        cell_clip: float | None,
        forget_bias: float,
        num_outputs: int = NUM_OUTPUTS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cell not in RECURRENT_CHOICES:
            raise ValueError(f"cell must be one of {RECURRENT_CHOICES}, got {cell!r}")
        if cell == "keras" and float(forget_bias) not in (0.0, 1.0):
            raise ValueError("keras.layers.LSTM supports a forget bias of 0 or 1 only")
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.cell = cell
        self.cell_clip = None if cell_clip is None else float(cell_clip)
        self.forget_bias = float(forget_bias)
        self.num_outputs = int(num_outputs)
        self.rnns = [self._make_rnn(k) for k in range(self.num_layers)]
        self.output_layer = keras.layers.Dense(self.num_outputs, name="output")

    def _make_rnn(self, k: int):
        if self.cell == "keras":
            # Keras' LSTM puts the forget bias into the bias initialiser instead.
            return WideLSTM(
                self.units,
                return_sequences=True,
                return_state=True,
                unit_forget_bias=self.forget_bias == 1.0,
                name=f"lstm_{k}",
            )
        cell = PeepholeLSTMCell(
            self.units, cell_clip=self.cell_clip, forget_bias=self.forget_bias, name=f"cell_{k}"
        )
        return keras.layers.RNN(cell, return_sequences=True, return_state=True, name=f"lstm_{k}")

    @property
    def state_shape(self) -> tuple[int, int]:
        """Shape of the packed state tensor without the batch axis."""
        return (2 * self.num_layers, self.units)

    def zero_states(self, batch_size: int):
        """Packed all-zero states (the start of a recording).

        Args:
            batch_size: number of streams ``B``.

        Returns:
            A ``(B, 2 * num_layers, units)`` zero tensor in the layer's compute dtype.
        """
        return ops.zeros((batch_size, *self.state_shape), dtype=self.compute_dtype)

    def build(self, input_shape):
        """Build every LSTM layer and the output layer from the feature shape.

        Args:
            input_shape: ``(B, T, D)`` shape of the features.
        """
        shape = tuple(input_shape)
        for rnn in self.rnns:
            rnn.build(shape)
            shape = shape[:-1] + (self.units,)
        self.output_layer.build(shape)
        self.built = True

    def call(self, inputs, initial_states=None, training=None):
        """Run the LSTM stack over ``(B, T, D)``; returns ``(emotion, final_states)``.

        Args:
            inputs: ``(B, T, D)`` per-frame features.
            initial_states: packed ``(B, 2 * num_layers, units)`` states to start from; None
                starts every layer from zeros.
            training: Keras' training flag, passed to the LSTM layers.

        Returns:
            ``(emotion, final_states)``: the ``(B, T, num_outputs)`` linear outputs and the
            packed ``(B, 2 * num_layers, units)`` states after the last step.
        """
        x = inputs
        final = []
        for k, rnn in enumerate(self.rnns):
            init = None
            if initial_states is not None:
                init = [initial_states[:, 2 * k], initial_states[:, 2 * k + 1]]
            x, h, c = rnn(x, initial_state=init, training=training)
            final += [h, c]
        return self.output_layer(x), ops.stack(final, axis=1)

    def get_config(self):
        """Serializable constructor arguments.

        Returns:
            The base layer config plus ``units``, ``num_layers``, ``cell``, ``cell_clip``,
            ``forget_bias`` and ``num_outputs``.
        """
        config = super().get_config()
        config.update(
            units=self.units,
            num_layers=self.num_layers,
            cell=self.cell,
            cell_clip=self.cell_clip,
            forget_bias=self.forget_bias,
            num_outputs=self.num_outputs,
        )
        return config


def recurrent_head_from_config(config: RecurrentOptions, name: str = "recurrent") -> RecurrentHead:
    """Build the head from a model config (:class:`RecurrentOptions`).

    Args:
        config: the model config (``recurrent``, ``lstm_units``, ``lstm_layers``,
            ``cell_clip``, ``forget_bias``).
        name: the layer's name (the models and their streaming twins look it up by it).

    Returns:
        The unbuilt :class:`RecurrentHead`.
    """
    return RecurrentHead(
        config.lstm_units,
        config.lstm_layers,
        cell=config.recurrent,
        cell_clip=config.cell_clip,
        forget_bias=config.forget_bias,
        name=name,
    )

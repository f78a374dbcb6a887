"""RMSprop with Nesterov momentum, the optimiser of Chen & Jin (Theanets' ``rmsprop`` with ``nesterov``).

Keras' RMSprop has plain momentum only. Theanets trained with the ``downhill``
library, whose RMSProp (Graves 2013, eq. 38-45) keeps moving averages of the
gradient and of its square with the weight ``ρ = 2^(-1/14)`` (``rms_halflife``
14 steps) and divides by the centred root mean square; its momentum is applied
to the resulting step δ, in the Nesterov form of Bengio et al. (2012, eq. 7)::

    f_t = ρ f_{t-1} + (1 - ρ) g_t            (centred only)
    s_t = ρ s_{t-1} + (1 - ρ) g_t²
    δ_t = -η g_t / sqrt(s_t - f_t² + ε)      (sqrt(s_t + ε) when not centred)
    v_t = μ v_{t-1} + δ_t
    θ_t = θ_{t-1} + μ v_t + δ_t              (θ_{t-1} + v_t without Nesterov)

Defaults as the paper and downhill: η = 1e-4, μ = 0.9, ρ = 2^(-1/14) ≈ 0.9517,
ε = 1e-8, centred.
"""

from __future__ import annotations

import keras
from keras import ops

DOWNHILL_RHO = 2.0 ** (-1.0 / 14.0)  # downhill's rms_halflife = 14


@keras.saving.register_keras_serializable(package="emorec")
class RMSpropNesterov(keras.optimizers.Optimizer):
    """RMSprop with (Nesterov) momentum on the scaled step (see the module docstring).

    Args:
        learning_rate: η.
        rho: the moving averages' weight ρ (0 < ρ < 1).
        momentum: μ (0 <= μ < 1; 0 = plain RMSprop).
        epsilon: ε added under the square root.
        centered: divide by the centred RMS (Graves, downhill) rather than the plain one.
        nesterov: Nesterov momentum (else classical momentum).
        **kwargs: the base optimizer's arguments (``name``, ``clipnorm`` ...).

    >>> import numpy as np
    >>> opt = RMSpropNesterov(learning_rate=0.1, rho=0.5, momentum=0.5, epsilon=0.0, centered=False)
    >>> w = keras.Variable(np.array([1.0], "float32"))
    >>> _ = opt.apply_gradients([(ops.convert_to_tensor(np.array([2.0], "float32")), w)])
    >>> round(float(w.numpy()[0]), 5)  # δ = -0.1 * 2 / sqrt(0.5 * 4) = -0.14142; θ = 1 + 1.5 δ
    0.78787
    """

    def __init__(self, learning_rate=1e-4, rho=DOWNHILL_RHO, momentum=0.9, epsilon=1e-8, centered=True,
                 nesterov=True, name="rmsprop_nesterov", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 < float(rho) < 1.0:
            raise ValueError(f"rho must be in (0, 1), got {rho}")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not float(epsilon) >= 0.0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)
        self.nesterov = bool(nesterov)

    def build(self, var_list):
        """One mean square (and mean, when centred) and one velocity per variable."""
        if self.built:
            return
        super().build(var_list)
        self._mean_squares = self.add_optimizer_variables(var_list, "mean_square")
        self._means = self.add_optimizer_variables(var_list, "mean_gradient") if self.centered else []
        self._velocities = self.add_optimizer_variables(var_list, "velocity") if self.momentum > 0 else []

    def update_step(self, gradient, variable, learning_rate):
        """One update of ``variable`` from its ``gradient``."""
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        rho = self.rho
        mean_square = self._mean_squares[index]
        self.assign(mean_square, rho * mean_square + (1.0 - rho) * ops.square(gradient))
        denominator = mean_square + self.epsilon
        if self.centered:
            mean = self._means[index]
            self.assign(mean, rho * mean + (1.0 - rho) * gradient)
            denominator = denominator - ops.square(mean)
        step = -lr * gradient / ops.sqrt(denominator)
        if self.momentum == 0:
            self.assign_add(variable, step)
            return
        velocity = self._velocities[index]
        self.assign(velocity, self.momentum * velocity + step)
        if self.nesterov:
            self.assign_add(variable, self.momentum * velocity + step)
        else:
            self.assign_add(variable, velocity)

    def get_config(self):
        """Constructor arguments, for saving."""
        config = super().get_config()
        config.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon, centered=self.centered,
                      nesterov=self.nesterov)
        return config

"""The GAN's optimizers in Keras: Adam as PyTorch and optax compute it, and the pair that
Keras's trainer carries as one.

Adam: Keras's Adam adds epsilon to sqrt(v) before the bias correction (Kingma & Ba's "epsilon
hat" form): var -= lr·sqrt(1-b2^t)/(1-b1^t) · m / (sqrt(v) + eps). PyTorch and optax add
it after: var -= lr/(1-b1^t) · m / (sqrt(v)/sqrt(1-b2^t) + eps). The two agree only when
sqrt(v) is far above eps, so the same `eps` gives a different algorithm for small
gradients (and at the first steps, where sqrt(1-b2^t) is small). `Adam` keeps
Keras's state (momentums, velocities, iterations) and changes only the update.

GANOptimizer: Keras's JAX trainer carries exactly one optimizer's state through its jitted
step: `model.optimizer.variables` go in, their new values come out. A GAN has two, so
`GAN.compile` (keras_impl/gan.py) wraps D's and G's in one `GANOptimizer`, which lists both
states, as LossScaleOptimizer lists its inner optimizer's.
"""

from __future__ import annotations

import keras
from keras import ops


class Adam(keras.optimizers.Adam):
    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr, gradient = ops.cast(learning_rate, dtype), ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        # convert_to_tensor, not cast: on TensorFlow, cast makes a Python float float32 first,
        # which in float64 moves beta_2 = 0.999 by 1.3e-8 and every update by 6e-6 of itself.
        bias_correction1 = 1 - ops.power(ops.convert_to_tensor(self.beta_1, dtype), step)
        bias_correction2 = 1 - ops.power(ops.convert_to_tensor(self.beta_2, dtype), step)
        m, v = self.moments(variable)
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_correction1), denominator))

    def moments(self, variable) -> tuple[keras.Variable, keras.Variable]:
        """The first and second moment this optimizer keeps for `variable`."""
        index = self._get_variable_index(variable)
        return self._momentums[index], self._velocities[index]


class GANOptimizer(keras.optimizers.Optimizer):
    """D's and G's optimizers, seen by Keras's trainer as its one `model.optimizer`. It
    computes nothing itself; each inner optimizer is built on its own network's trainable
    variables."""

    def __init__(
        self,
        d_optimizer: keras.optimizers.Optimizer,
        g_optimizer: keras.optimizers.Optimizer,
        discriminator: keras.Model,
        generator: keras.Model,
    ):
        super().__init__(learning_rate=0.0, name="gan_optimizer")
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
        self._networks = (discriminator, generator)

    def build(self, var_list):
        discriminator, generator = self._networks
        self.d_optimizer.build(discriminator.trainable_variables)
        self.g_optimizer.build(generator.trainable_variables)
        super().build(var_list)

    @property
    def variables(self):
        return self.d_optimizer.variables + self.g_optimizer.variables

    @property
    def iterations(self):
        """GAN iterations, one G update each: the step count callbacks (e.g. TensorBoard) read."""
        return self.g_optimizer.iterations

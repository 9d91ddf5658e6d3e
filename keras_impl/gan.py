"""The GAN as a `keras.Model`: common/algorithm.py's iteration as one `train_step`, written
once for Keras's three backends and driven by `fit` or `train_on_batch`, as in keras-io's
DCGAN example:

    gan = GAN(generator, discriminator, config)
    gan.compile(d_optimizer=keras.optimizers.Adam(...), g_optimizer=keras.optimizers.Adam(...))
    gan.fit(images, batch_size=k * N, epochs=...)         # noise drawn inside, from the GAN's seed
    gan.train_on_batch((reals, z_d, z_g))                 # or given: what common's loop does

The step is written as Keras's own train steps are: forward passes with
`stateless_call` (so a loss is a function of the values it is differentiated by), gradients
from keras_impl/gradients.py, updates with `optimizer.apply` and `Variable.assign`. It does
not use `optimizer.stateless_apply`, because the TensorFlow backend's optimizer refuses it
(it needs live tf.Variables, for tf.distribute). On JAX, where Keras keeps the training
state outside the model, the same code runs inside a `keras.StatelessScope` that maps every
variable to its value in that state, which makes it a pure function of the state, as jit
needs: the mechanism `stateless_call` and `stateless_apply` themselves use.
"""

from __future__ import annotations

import keras
from keras import ops

from common.algorithm import METRICS
from common.config import Config
from keras_impl.gradients import value_and_grad
from keras_impl.models import mean


def bce_with_logits(logits, target: float):
    """Binary cross-entropy on logits against a constant target, averaged over the batch."""
    return mean(ops.binary_crossentropy(ops.full_like(logits, target), logits, from_logits=True))


def at_least_float32(logits):
    """bfloat16 logits (under mixed_bfloat16) as float32, so the losses are float32, as
    Keras's mixed-precision guide asks of a model's outputs; float32 and float64 stay."""
    return ops.cast(logits, "float32") if keras.backend.standardize_dtype(logits.dtype) == "bfloat16" else logits


def _values(variables) -> list:
    """The variables' current values as tensors (under a StatelessScope: the scope's values)."""
    return [ops.convert_to_tensor(v) for v in variables]


def _assign(variables, values) -> None:
    for variable, value in zip(variables, values):
        variable.assign(value)


class Mean(keras.metrics.Mean):
    """keras.metrics.Mean whose result keeps the metric's dtype: Keras 3.15's Mean divides
    with divide_no_nan, which on torch promotes float64 to float32."""

    def result(self):
        return ops.divide(self.total, ops.maximum(self.count, 1.0))


class GANOptimizer(keras.optimizers.Optimizer):
    """D's and G's optimizers, seen by Keras's trainer as its one `model.optimizer`.

    Keras's JAX trainer carries exactly one optimizer's state through its jitted step:
    `model.optimizer.variables` go in, their new values come out. Like LossScaleOptimizer
    with its inner optimizer, this wrapper lists the variables of the two optimizers it
    holds, so both states travel with the model's; it computes nothing itself. Each inner
    optimizer is built on its own network's trainable variables.
    """

    def __init__(self, d_optimizer: keras.optimizers.Optimizer, g_optimizer: keras.optimizers.Optimizer,
                 discriminator: keras.Model, generator: keras.Model):
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


class GAN(keras.Model):
    """A generator and a discriminator trained by common/algorithm.py's algorithm.

    `fit` and `train_on_batch` take either a tuple (reals (k, N, H, W, C), z_d (k, N, latent),
    z_g (N, latent) or None for "reuse") or plain images (k·N, H, W, C), which are split into
    the k discriminator batches, with the noise drawn from the GAN's own seed generator (part
    of the model's state, so it is checkpointed and carried through JAX's jit).
    Logs are the metrics of common.algorithm.METRICS, averaged over the epoch under `fit`
    (Keras resets them before each `train_on_batch`, which therefore returns its own step's).
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.config = config
        self.seed_generator = keras.random.SeedGenerator(config.seed)
        self.trackers = [Mean(name=name) for name in METRICS]
        self.built = True  # G and D are built; the GAN adds no weights of its own

    @property
    def metrics(self):
        return self.trackers

    def compile(self, d_optimizer: keras.optimizers.Optimizer, g_optimizer: keras.optimizers.Optimizer, **kwargs):
        optimizer = GANOptimizer(d_optimizer, g_optimizer, self.discriminator, self.generator)
        optimizer.build(self.trainable_variables)  # now, not at the first step: a resumed run loads its state first
        super().compile(optimizer=optimizer, **kwargs)
        self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer

    def train_step(self, *args):
        """Keras calls train_step(data) on TensorFlow and torch, whose variables are live, and
        train_step(state, data) on JAX, which wants (logs, new state) from a pure function."""
        if len(args) == 1:
            return self._iteration(*args)
        state, data = args
        variables = (self.trainable_variables, self.non_trainable_variables, self.optimizer.variables,
                     self.metrics_variables)  # the order of Keras's JAX trainer's state
        mapping = [(v, value) for group, values in zip(variables, state) for v, value in zip(group, values)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self._iteration(data)
        return logs, tuple([scope.get_current_value(v) for v in group] for group in variables)

    def _iteration(self, data):
        """One iteration of common/algorithm.py on the live (or scoped) variables."""
        reals, z_d, z_g = self._batch(data)
        generator, discriminator = self.generator, self.discriminator
        k = self.config.optim.d_steps
        for j in range(k):
            fake, g_state = generator.stateless_call(
                _values(generator.trainable_variables), _values(generator.non_trainable_variables), z_d[j],
                training=True,
            )
            if z_g is not None or j < k - 1:  # with "reuse", the G step's forward pass makes this update
                _assign(generator.non_trainable_variables, g_state)
            (loss_D, (d_state, D_x, D_G_z1)), grads = value_and_grad(self._d_loss)(
                _values(discriminator.trainable_variables), _values(discriminator.non_trainable_variables),
                reals[j], ops.stop_gradient(fake),
            )
            self.d_optimizer.apply(grads, discriminator.trainable_variables)
            _assign(discriminator.non_trainable_variables, d_state)

        # G's forward pass again, from the state before fake_{k-1} was made when reusing it:
        # train-mode BN normalises with batch statistics, so the images are the same, and
        # G's BN statistics are updated once for them.
        (loss_G, (g_state, d_state, D_G_z2)), grads = value_and_grad(self._g_loss)(
            _values(generator.trainable_variables), _values(generator.non_trainable_variables),
            _values(discriminator.trainable_variables), _values(discriminator.non_trainable_variables),
            z_d[k - 1] if z_g is None else z_g,
        )
        self.g_optimizer.apply(grads, generator.trainable_variables)
        _assign(generator.non_trainable_variables, g_state)
        _assign(discriminator.non_trainable_variables, d_state)

        for tracker, value in zip(self.trackers, (loss_D, loss_G, D_x, D_G_z1, D_G_z2)):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self.trackers}

    def gradients(self, real, z):
        """d loss_D / d D's trainable variables (on `real` and G(z), detached) and d loss_G /
        d G's (through D), at the current state, each in its network's variable order.
        Nothing is assigned: a look at the gradients, e.g. for the parity suite."""
        generator, discriminator = self.generator, self.discriminator
        fake, _ = generator.stateless_call(
            _values(generator.trainable_variables), _values(generator.non_trainable_variables), z, training=True)
        _, d_grads = value_and_grad(self._d_loss)(
            _values(discriminator.trainable_variables), _values(discriminator.non_trainable_variables),
            real, ops.stop_gradient(fake))
        _, g_grads = value_and_grad(self._g_loss)(
            _values(generator.trainable_variables), _values(generator.non_trainable_variables),
            _values(discriminator.trainable_variables), _values(discriminator.non_trainable_variables), z)
        return d_grads, g_grads

    def _d_loss(self, d_trainable, d_state, real, fake):
        """D's loss on a real batch (target real_label) and a fake one (target 0), as two passes,
        so that BN normalises each batch on its own; also D's new state, D(x) and D(G(z))."""
        real_logits, d_state = self.discriminator.stateless_call(d_trainable, d_state, real, training=True)
        fake_logits, d_state = self.discriminator.stateless_call(d_trainable, d_state, fake, training=True)
        real_logits, fake_logits = at_least_float32(real_logits), at_least_float32(fake_logits)
        loss = bce_with_logits(real_logits, self.config.optim.real_label) + bce_with_logits(fake_logits, 0.0)
        return loss, (d_state, mean(ops.sigmoid(real_logits)), mean(ops.sigmoid(fake_logits)))

    def _g_loss(self, g_trainable, g_state, d_trainable, d_state, z):
        """The non-saturating loss BCE(D(G(z)), 1) through D in train mode; also both new states
        and D(G(z))."""
        fake, g_state = self.generator.stateless_call(g_trainable, g_state, z, training=True)
        logits, d_state = self.discriminator.stateless_call(d_trainable, d_state, fake, training=True)
        logits = at_least_float32(logits)
        return bce_with_logits(logits, 1.0), (g_state, d_state, mean(ops.sigmoid(logits)))

    def _batch(self, data):
        """(reals, z_d, z_g) from either form of input the class docstring describes."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, (tuple, list)):
            reals, z_d, z_g = x
            return ops.convert_to_tensor(reals), ops.convert_to_tensor(z_d), (
                None if z_g is None else ops.convert_to_tensor(z_g))
        k = self.config.optim.d_steps
        reals = ops.reshape(x, (k, -1, *x.shape[1:]))
        n = ops.shape(reals)[1]
        fresh = self.config.optim.g_fake_batch == "fresh"
        return reals, self._latent((k, n)), self._latent((n,)) if fresh else None

    def _latent(self, batch_shape):
        """Latent vectors from the model's distribution, N(0, 1) or U(-1, 1), drawn from the GAN's seed."""
        shape = (*batch_shape, self.config.model.latent_dim)
        if self.config.model.latent_dist == "uniform":
            return keras.random.uniform(shape, -1.0, 1.0, seed=self.seed_generator)
        return keras.random.normal(shape, seed=self.seed_generator)

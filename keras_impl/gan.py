"""The GAN as a `keras.Model`: the shell that `fit` and the shared loop both drive, as in
keras-io's DCGAN example. The iteration itself is keras_impl/step.py's `train_step`.

    gan = GAN(generator, discriminator, config)
    gan.compile(d_optimizer=Adam(...), g_optimizer=Adam(...))   # keras_impl/optimizers.py
    gan.fit(images, batch_size=k * N, epochs=...)               # noise drawn inside, from the GAN's seed
    gan.train_on_batch((reals, z_d, z_g))                       # or given: what common's loop does

Keras calls `train_step(data)` on TensorFlow and torch, whose variables are live, and
`train_step(state, data)` on JAX, which wants (logs, new state) from a pure function; the
class defines the one its backend calls.
"""

from __future__ import annotations

import keras
from keras import ops

from common.algorithm import METRICS
from common.config import Config
from keras_impl import step
from keras_impl.optimizers import GANOptimizer


class Mean(keras.metrics.Mean):
    """keras.metrics.Mean whose result keeps the metric's dtype: Keras 3.15's Mean divides
    with divide_no_nan, which on torch promotes float64 to float32."""

    def result(self):
        return ops.divide(self.total, ops.maximum(self.count, 1.0))


class GAN(keras.Model):
    """A generator and a discriminator trained by common/algorithm.py's algorithm.

    `fit` and `train_on_batch` take either a tuple (reals (k, N, H, W, C), z_d (k, N, latent),
    z_g (N, latent) or None for "reuse") or plain images (k·N, H, W, C), which are split into
    the k discriminator batches, with the noise drawn from the GAN's own seed generator (part
    of the model's state, so it is checkpointed and carried through JAX's jit).
    Logs are the metrics of common.algorithm.METRICS, averaged over the epoch under `fit`
    (Keras resets them before each `train_on_batch`, which therefore returns its own step's).
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        config: Config,
        batch_first: bool = False,
        ema_generator: keras.Model | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator, self.discriminator = generator, discriminator
        # G's moving average (common/algorithm.py), where the run keeps one: not trainable, so
        # its weights are among the GAN's non-trainable variables, the state Keras's JAX trainer
        # carries through its jitted step, and the step updates them after each G update.
        self.ema_generator = ema_generator
        if ema_generator is not None:
            ema_generator.trainable = False
        self.config = config
        # Under keras.distribution.DataParallel, which splits axis 0 of every input, the loop's
        # tuple comes batch first: reals (N, k, H, W, C), z_d (N, k, latent).
        self.batch_first = batch_first
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

    if keras.backend.backend() == "jax":

        def train_step(self, state, data):
            """The iteration as a pure function of Keras's JAX training state: inside a
            StatelessScope every variable reads its value in `state`, and the scope collects
            the new values; the mechanism `stateless_call` and `stateless_apply` use."""
            variables = (
                self.trainable_variables,
                self.non_trainable_variables,
                self.optimizer.variables,
                self.metrics_variables,
            )  # the order of Keras's JAX trainer's state
            mapping = [(v, value) for group, values in zip(variables, state) for v, value in zip(group, values)]
            with keras.StatelessScope(state_mapping=mapping) as scope:
                logs = self._train_step(data)
            return logs, tuple([scope.get_current_value(v) for v in group] for group in variables)

    else:

        def train_step(self, data):
            return self._train_step(data)

    def _train_step(self, data):
        """keras_impl/step.py's iteration on the live (or scoped) variables, and its metrics."""
        metrics = step.train_step(
            self.generator,
            self.discriminator,
            self.g_optimizer,
            self.d_optimizer,
            *self._batch(data),
            self.config.optim.real_label,
            self.ema_generator,
            self.config.optim.ema,
        )
        for tracker in self.trackers:
            tracker.update_state(metrics[tracker.name])
        return {tracker.name: tracker.result() for tracker in self.trackers}

    def _batch(self, data):
        """(reals, z_d, z_g) from either form of input the class docstring describes."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, (tuple, list)):
            reals, z_d, z_g = (None if a is None else ops.convert_to_tensor(a) for a in x)
            if self.batch_first:
                reals, z_d = ops.swapaxes(reals, 0, 1), ops.swapaxes(z_d, 0, 1)
            return reals, z_d, z_g
        k = self.config.optim.d_steps
        reals = ops.reshape(x, (k, -1, *x.shape[1:]))
        n = ops.shape(reals)[1]
        fresh = self.config.optim.g_fake_batch == "fresh"
        return reals, self._latent((k, n)), self._latent((n,)) if fresh else None

    def _latent(self, batch_shape):
        """Latent vectors from the model's distribution, N(0, 1) or U(-1, 1), drawn from the GAN's
        seed generator: `fit`'s counterpart of common.algorithm.latent, inside the compiled step."""
        shape = (*batch_shape, self.config.model.latent_dim)
        if self.config.model.latent_dist == "uniform":
            return keras.random.uniform(shape, -1.0, 1.0, seed=self.seed_generator)
        return keras.random.normal(shape, seed=self.seed_generator)

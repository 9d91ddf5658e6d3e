"""Keras 3's side of the common backend interface (see common/backends.py and common/trainer.py).

The Keras backend (tensorflow, jax or torch) is fixed by KERAS_BACKEND before keras is
imported; `common.backends.load_backend` sets it. Precision (what each means is
common/precision.py's) is process-wide too: floatx is the stored dtype, the dtype policy
"mixed_bfloat16" gives bf16 (float32 variables, bfloat16 compute), and the framework's own
TF32 switch is off unless TF32 is allowed.
"""

from __future__ import annotations

import contextlib
from functools import partial

import keras
import numpy as np

from common import canonical, trainer
from common.algorithm import network_seeds
from common.canonical import nchw_to_nhwc, nhwc_to_nchw
from common.config import Config
from common.errors import ConfigError
from common.precision import TRAINING_PRECISIONS, Precision
from keras_impl import distributed, features
from keras_impl.gan import GAN
from keras_impl.gradients import apply, jit, value_and_grad
from keras_impl.layers import BatchNormalization
from keras_impl.layout import CANONICAL_NAMES, from_canonical, native_name, to_canonical
from keras_impl.models import Discriminator, Generator
from keras_impl.optimizers import Adam
from keras_impl.step import d_loss, g_loss, values


def set_bn_groups(network: keras.Model, groups: int) -> None:
    """Every BatchNormalization of `network` normalises each 1/groups of its batch on its own
    (keras_impl/layers.py's BatchNormalization.groups): ghost batch norm on one device, and on
    Keras-JAX's DataParallel over `groups` devices, each device's shard."""
    for layer in _batch_norms(network):
        layer.groups = groups


def _batch_norms(network: keras.Model) -> list[BatchNormalization]:
    return [layer for layer in network.layers if isinstance(layer, BatchNormalization)]


class Backend:
    layout = "NHWC"

    def __init__(self, name: str, precision: str = "float32", compile: str | None = None, devices: int = 1):
        if name != f"keras-{keras.backend.backend()}":
            raise RuntimeError(f"{name} requested but Keras runs on {keras.backend.backend()}; set KERAS_BACKEND first")
        chosen = TRAINING_PRECISIONS[precision]
        self.device = _configure_framework(chosen, devices)
        keras.config.set_floatx(chosen.store)
        # Every layer, variable and optimizer built from here on follows these two settings.
        keras.config.set_dtype_policy(f"mixed_{chosen.compute}" if chosen.mixed else chosen.store)
        self.name, self.precision, self.compile = name, precision, compile
        self.devices = devices  # above 1 only where common.launch.DATA_PARALLEL lists this backend
        # On TensorFlow, N devices are a MirroredStrategy (keras_impl/distributed.py), under whose
        # scope the models, optimizers and GAN are made; on JAX a Keras distribution.
        tensorflow = keras.backend.backend() == "tensorflow"
        if tensorflow and devices > 1 and compile == "xla":
            raise ConfigError(
                "compile",
                compile,
                f"none with --devices {devices} on {name}: an XLA cluster runs on one device and cannot reach "
                "the MirroredStrategy's copies of the variables on the others "
                "(https://www.tensorflow.org/xla/known_issues, https://github.com/keras-team/keras/issues/18145)",
            )
        self.strategy = distributed.mirrored_strategy(devices) if tensorflow and devices > 1 else None
        if keras.backend.backend() == "jax":  # from here on every variable is replicated over the devices, or not
            keras.distribution.set_distribution(
                keras.distribution.DataParallel(devices=keras.distribution.list_devices()[:devices])
                if devices > 1
                else None
            )

    def build(self, config: Config) -> tuple[Generator, Discriminator]:
        g_seed, d_seed = network_seeds(config)
        with self._scope():
            networks = Generator(config.model, seed=g_seed), Discriminator(config.model, seed=d_seed)
        per_device = config.model.bn_statistics == "per_device"
        for network in networks:
            if self.strategy is not None:  # each replica sees its shard: "global" sums statistics over replicas
                for layer in _batch_norms(network):
                    layer.synchronized = not per_device
            elif per_device:  # one step sees the global batch (Keras-JAX's DataParallel): a group per device
                set_bn_groups(network, self.devices)
        return networks

    def trainer(self, config: Config) -> Trainer:
        # Keras compiles the step itself: tf.function on TensorFlow (with XLA when "xla" is
        # asked for), jax.jit on JAX; on torch it runs eagerly.
        jit_compile = {"tensorflow": self.compile == "xla", "jax": True, "torch": False}[keras.backend.backend()]
        with self._scope():
            generator, discriminator = self.build(config)
            return Trainer(
                config,
                generator,
                discriminator,
                jit_compile=jit_compile,
                batch_first=self.devices > 1 and self.strategy is None,
                strategy=self.strategy,
                ema_generator=self._ema_generator(config, generator) if config.optim.ema else None,
            )

    def _ema_generator(self, config: Config, generator: Generator) -> Generator:
        """G's moving average (common/algorithm.py): a second Generator holding G's weights,
        made where G is, in the strategy's scope (by `trainer`), so its variables are mirrored too."""
        averaged = Generator(config.model, seed=network_seeds(config)[0])
        for target, source in zip(averaged.weights, generator.weights, strict=True):
            target.assign(np.array(keras.ops.convert_to_numpy(source)))  # a copy: on JAX, no buffer shared with G's
        return averaged

    def _scope(self):
        """The MirroredStrategy's scope, where variables are created mirrored; else nothing."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def run_layers(self, network, inputs: np.ndarray, training: bool = True) -> list[tuple[str, str, np.ndarray]]:
        x = keras.ops.convert_to_tensor(nchw_to_nhwc(inputs), dtype=keras.config.floatx())
        outputs = []
        for layer in network.layers:
            x = layer(x, training=training)
            outputs.append((layer.name, type(layer).__name__, keras.ops.convert_to_numpy(x)))
        return outputs

    def parameters(self, network) -> dict[str, dict[str, np.ndarray]]:
        return {
            layer.name: {CANONICAL_NAMES[w.name]: keras.ops.convert_to_numpy(w) for w in layer.trainable_weights}
            for layer in network.layers
        }

    def feature_network(self, state: dict[str, np.ndarray]):
        """`dcgan eval`'s feature network holding `state` (keras_impl/features.py; common.backends.Backend)."""
        model = features.load(state, "float64" if self.precision == "float64" else "float32")
        return partial(features.features_and_logits, model)


class Trainer(trainer.Trainer):
    """G, D and their Adam optimizers in a `GAN` (keras_impl/gan.py), stepped with
    `train_on_batch`, which runs keras_impl/step.py. Arrays cross this edge as NCHW and are
    NHWC inside.

    With a tf.distribute `strategy` (made under its scope, by Backend.trainer), `prepare` splits
    the batch into each replica's shard, and Keras's TensorFlow trainer runs the step on every
    replica (strategy.run) and averages the logs: each is a tracker (keras_impl/gan.py's Mean)
    whose variables, created in the scope, are "sum"-aggregated, so after train_on_batch has
    reset them each replica's result is the mean over replicas of the replicas' values."""

    def __init__(
        self,
        config: Config,
        generator: Generator,
        discriminator: Discriminator,
        jit_compile: bool = True,
        batch_first: bool = False,
        strategy=None,
        ema_generator: Generator | None = None,
    ):
        o = config.optim
        self.config, self.batch_first, self.strategy = config, batch_first, strategy
        self.generator, self.discriminator, self.ema_generator = generator, discriminator, ema_generator
        adam = dict(beta_1=o.beta1, beta_2=o.beta2, epsilon=o.eps)
        self.gan = GAN(generator, discriminator, config, batch_first=batch_first, ema_generator=ema_generator)
        self.gan.compile(d_optimizer=Adam(o.lr_d, **adam), g_optimizer=Adam(o.lr_g, **adam), jit_compile=jit_compile)
        self.optimizers = {"generator": self.gan.g_optimizer, "discriminator": self.gan.d_optimizer}

    def _array(self, array: np.ndarray | None) -> np.ndarray | None:
        """A canonical batch at Keras's floatx, images channels-last."""
        return None if array is None else np.ascontiguousarray(nchw_to_nhwc(array), dtype=keras.config.floatx())

    def prepare(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> tuple:
        if self.strategy is not None:  # each replica's rows of the batch axis: 1 of reals and z_d, 0 of z_g
            return distributed.split(self.strategy, tuple(self._array(a) for a in (reals, z_d, z_g)), axes=(1, 1, 0))
        if self.batch_first:  # DataParallel splits axis 0 of every input: N must come first, not k
            reals, z_d = np.swapaxes(reals, 0, 1), np.swapaxes(z_d, 0, 1)
            return tuple(None if a is None else self._array(a) for a in (reals, z_d, z_g))  # Keras distributes them
        return tuple(None if a is None else keras.ops.convert_to_tensor(self._array(a)) for a in (reals, z_d, z_g))

    def step(self, batch: tuple) -> dict[str, float]:
        # train_on_batch reads the metrics back as Python floats: one host sync per step.
        return self.gan.train_on_batch(batch, return_dict=True)

    def synchronize(self, outputs) -> None:
        """Nothing to wait for: train_on_batch has read its metrics back to the host."""

    def sample(self, z: np.ndarray, averaged: bool = False) -> np.ndarray:
        generator = self.ema_generator if averaged else self.generator
        images = generator(keras.ops.convert_to_tensor(self._array(z)), training=False)
        return nhwc_to_nchw(keras.ops.convert_to_numpy(images)).astype(np.float32)

    def gradients(self, real: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        """See common/trainer.py: canonical gradients of loss_D (D's) and loss_G (G's).
        Nothing is assigned, not even BN statistics: the losses are stateless calls."""
        real, z = keras.ops.convert_to_tensor(self._array(real)), keras.ops.convert_to_tensor(self._array(z))
        generator, discriminator, label = self.generator, self.discriminator, self.config.optim.real_label

        @jit
        def gradients(g_values, g_state, d_values, d_state, real, z):
            fake, _ = generator.stateless_call(g_values, g_state, z, training=True)
            _, d_grads = value_and_grad(partial(d_loss, discriminator))(
                d_values, d_state, real, keras.ops.stop_gradient(fake), label
            )
            _, g_grads = value_and_grad(partial(g_loss, generator, discriminator))(
                g_values, g_state, d_values, d_state, z
            )
            return d_grads, g_grads

        d_grads, g_grads = gradients(
            values(generator.trainable_variables),
            values(generator.non_trainable_variables),
            values(discriminator.trainable_variables),
            values(discriminator.non_trainable_variables),
            real,
            z,
        )
        grads = {}
        for role, network, role_grads in (("discriminator", discriminator, d_grads), ("generator", generator, g_grads)):
            by_variable = {id(v): g for v, g in zip(network.trainable_variables, role_grads)}
            for key, (kind, name, variable) in self._tensors(role).items():
                if id(variable) in by_variable:
                    grads[key] = to_canonical(kind, name, by_variable[id(variable)])
        return grads

    def apply_gradients(self, grads: dict[str, np.ndarray]) -> None:
        """One Adam update of each network with the given canonical gradients."""
        for role, optimizer in self.optimizers.items():
            native = {
                id(variable): from_canonical(kind, name, grads[key], variable)
                for key, (kind, name, variable) in self._tensors(role).items()
                if variable.trainable
            }
            network = getattr(self, role)
            apply(
                optimizer,
                [keras.ops.convert_to_tensor(native[id(v)]) for v in network.trainable_variables],
                network.trainable_variables,
            )

    def _tensors(self, role: str) -> dict[str, tuple[str, str, keras.Variable]]:
        """Canonical key -> (spec layer kind, canonical name, the Keras variable holding it)."""
        network = getattr(self, role)
        found = {}
        entries = canonical.ema_entries(self.config) if role == canonical.EMA else canonical.entries(self.config, role)
        for entry in entries:
            layer = network.weighted_layer(entry.layer.name)
            variables = {v.name: v for v in layer.variables}
            found[entry.key] = (entry.layer.kind, entry.name, variables[native_name(entry.layer.kind, entry.name)])
        return found

    def _rng_variables(self) -> dict[str, keras.Variable]:
        """Keras's random state: the GAN's noise stream (for `fit`) and each dropout layer's."""
        variables = {"rng.keras.gan": self.gan.seed_generator.state}
        for role in canonical.ROLES:
            for layer in getattr(self, role).layers:
                if isinstance(layer, keras.layers.Dropout):
                    variables[f"rng.keras.{role}.{layer.name}"] = layer.seed_generator.state
        return variables

    def state_dict(self) -> dict[str, np.ndarray]:
        """The canonical state (common/canonical.py), plus Keras's seed states under rng.keras.*."""
        arrays = {}
        for role, optimizer in self.optimizers.items():
            tensors = self._tensors(role)
            for key, (kind, name, variable) in tensors.items():
                arrays[key] = to_canonical(kind, name, variable)
            arrays[canonical.step_key(role)] = np.array(
                keras.ops.convert_to_numpy(optimizer.iterations), dtype=np.int64
            )
            for entry in canonical.parameters(self.config, role):
                kind, name, variable = tensors[entry.key]
                for moment, value in zip(canonical.MOMENTS, optimizer.moments(variable)):
                    arrays[canonical.moment_key(role, moment, entry)] = to_canonical(kind, name, value)
        if self.ema_generator is not None:
            for key, (kind, name, variable) in self._tensors(canonical.EMA).items():
                arrays[key] = to_canonical(kind, name, variable)
        arrays.update({key: np.array(keras.ops.convert_to_numpy(v)) for key, v in self._rng_variables().items()})
        return arrays

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Loads a canonical state; without optimizer keys Adam starts afresh, and rng.keras.*
        keys, where present, restore Keras's seed states."""
        if not canonical.has_optimizer(arrays):
            arrays = {**arrays, **canonical.fresh_optimizer(self.config)}
        for role, optimizer in self.optimizers.items():
            tensors = self._tensors(role)
            for key, (kind, name, variable) in tensors.items():
                variable.assign(from_canonical(kind, name, arrays[key], variable))
            optimizer.iterations.assign(int(arrays[canonical.step_key(role)]))
            for entry in canonical.parameters(self.config, role):
                kind, name, variable = tensors[entry.key]
                for moment, target in zip(canonical.MOMENTS, optimizer.moments(variable)):
                    target.assign(from_canonical(kind, name, arrays[canonical.moment_key(role, moment, entry)], target))
        if self.ema_generator is not None:
            averaged = canonical.ema_arrays(arrays, self.config)
            for key, (kind, name, variable) in self._tensors(canonical.EMA).items():
                variable.assign(from_canonical(kind, name, averaged[key], variable))
        for key, variable in self._rng_variables().items():
            if key in arrays:
                variable.assign(arrays[key])


def _configure_framework(precision: Precision, devices: int = 1) -> str:
    """Sets the framework under Keras to `precision` (x64, TF32) and, on JAX, to `devices`
    CPU devices where asked (before JAX first runs); returns its device."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if devices > 1:
            try:
                jax.config.update("jax_num_cpu_devices", devices)
            except RuntimeError:  # JAX already running: DataParallel takes the devices it has
                pass

        if precision.store == "float64":
            jax.config.update("jax_enable_x64", True)  # without it JAX silently computes float64 in float32
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if precision.tf32 else "highest")
        return "gpu" if jax.default_backend() == "gpu" else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(precision.tf32)
        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    import torch

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision.tf32
    return "gpu" if torch.cuda.is_available() else "cpu"

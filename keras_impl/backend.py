"""Keras 3's side of the common backend interface (see common/backends.py).

The Keras backend (tensorflow, jax or torch) is fixed by KERAS_BACKEND before keras is
imported; `common.backends.load_backend` sets it.
"""

from __future__ import annotations

import keras
import numpy as np

from common import canonical
from common.canonical import nchw_to_nhwc, nhwc_to_nchw
from common.config import Config
from keras_impl.adam import Adam
from keras_impl.gan import GAN
from keras_impl.layout import CANONICAL_NAMES, from_canonical, native_name, to_canonical
from keras_impl.models import Discriminator, Generator


class Backend:
    layout = "NHWC"

    def __init__(self, name: str, precision: str = "float32"):
        if name != f"keras-{keras.backend.backend()}":
            raise RuntimeError(f"{name} requested but Keras runs on {keras.backend.backend()}; set KERAS_BACKEND first")
        if precision == "float64" and keras.backend.backend() == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)  # without it JAX silently computes float64 in float32
        keras.config.set_floatx(precision)  # every layer, variable and optimizer built from here on
        self.name, self.precision = name, precision

    def build(self, config: Config) -> tuple[Generator, Discriminator]:
        # Distinct streams for G and D, both from the run's one seed.
        return Generator(config.model, seed=2 * config.seed), Discriminator(config.model, seed=2 * config.seed + 1)

    def trainer(self, config: Config, compile: bool = False) -> Trainer:
        # Keras compiles the step itself (tf.function; jax.jit), so `compile` changes nothing.
        # Keras's jit_compile=True would add XLA on TensorFlow (no faster here, on CPU) and
        # torch.compile on torch, where Inductor fails on this step (torch 2.14).
        return Trainer(config, *self.build(config))

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


class Trainer:
    """G, D and their Adam optimizers in a `GAN` (keras_impl/gan.py), stepped with
    `train_on_batch`. Arrays cross this edge as NCHW and are NHWC inside."""

    def __init__(self, config: Config, generator: Generator, discriminator: Discriminator):
        o = config.optim
        self.config = config
        self.generator, self.discriminator = generator, discriminator
        adam = dict(beta_1=o.beta1, beta_2=o.beta2, epsilon=o.eps)
        self.gan = GAN(generator, discriminator, config)
        self.gan.compile(d_optimizer=Adam(o.lr_d, **adam), g_optimizer=Adam(o.lr_g, **adam))
        self.optimizers = {"generator": self.gan.g_optimizer, "discriminator": self.gan.d_optimizer}

    def _array(self, array: np.ndarray | None) -> np.ndarray | None:
        """A canonical batch at Keras's floatx, images channels-last."""
        return None if array is None else np.ascontiguousarray(nchw_to_nhwc(array), dtype=keras.config.floatx())

    def train_step(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> dict[str, float]:
        # train_on_batch reads the metrics back as Python floats: one host sync per step.
        return self.gan.train_on_batch((self._array(reals), self._array(z_d), self._array(z_g)), return_dict=True)

    def sample(self, z: np.ndarray) -> np.ndarray:
        images = self.generator(keras.ops.convert_to_tensor(self._array(z)), training=False)
        return nhwc_to_nchw(keras.ops.convert_to_numpy(images)).astype(np.float32)

    def gradients(self, real: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        """See common/backends.py: canonical gradients of loss_D (D's) and loss_G (G's)."""
        d_grads, g_grads = self.gan.gradients(keras.ops.convert_to_tensor(self._array(real)),
                                              keras.ops.convert_to_tensor(self._array(z)))
        grads = {}
        for role, network, role_grads in (("discriminator", self.discriminator, d_grads),
                                          ("generator", self.generator, g_grads)):
            by_variable = {id(v): g for v, g in zip(network.trainable_variables, role_grads)}
            for key, (kind, name, variable) in self._tensors(role).items():
                if id(variable) in by_variable:
                    grads[key] = to_canonical(kind, name, keras.ops.convert_to_numpy(by_variable[id(variable)]))
        return grads

    def apply_gradients(self, grads: dict[str, np.ndarray]) -> None:
        """One Adam update of each network with the given canonical gradients."""
        for role, optimizer in self.optimizers.items():
            native = {id(variable): from_canonical(kind, name, grads[key]) for key, (kind, name, variable)
                      in self._tensors(role).items() if variable.trainable}
            network = getattr(self, role)
            optimizer.apply([keras.ops.convert_to_tensor(native[id(v)], dtype=v.dtype) for v in network.trainable_variables],
                            network.trainable_variables)

    def _tensors(self, role: str) -> dict[str, tuple[str, str, keras.Variable]]:
        """Canonical key -> (spec layer kind, canonical name, the Keras variable holding it)."""
        network = getattr(self, role)
        found = {}
        for entry in canonical.entries(self.config, role):
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
                arrays[key] = to_canonical(kind, name, keras.ops.convert_to_numpy(variable))
            arrays[canonical.step_key(role)] = np.array(keras.ops.convert_to_numpy(optimizer.iterations), dtype=np.int64)
            for entry in canonical.parameters(self.config, role):
                kind, name, variable = tensors[entry.key]
                for moment, value in zip(canonical.MOMENTS, optimizer.moments(variable)):
                    arrays[canonical.moment_key(role, moment, entry)] = to_canonical(kind, name, keras.ops.convert_to_numpy(value))
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
                variable.assign(from_canonical(kind, name, arrays[key]).astype(variable.dtype))
            optimizer.iterations.assign(int(arrays[canonical.step_key(role)]))
            for entry in canonical.parameters(self.config, role):
                kind, name, variable = tensors[entry.key]
                for moment, target in zip(canonical.MOMENTS, optimizer.moments(variable)):
                    target.assign(from_canonical(kind, name, arrays[canonical.moment_key(role, moment, entry)]).astype(target.dtype))
        for key, variable in self._rng_variables().items():
            if key in arrays:
                variable.assign(arrays[key])

"""Keras 3's side of the common backend interface (see common/backends.py).

The Keras backend (tensorflow, jax or torch) is fixed by KERAS_BACKEND before keras is
imported; `common.backends.load_backend` sets it.
"""

from __future__ import annotations

import keras
import numpy as np

from common.config import Config
from keras_impl.gan import GAN
from keras_impl.models import Discriminator, Generator


# Keras weight names -> the canonical (PyTorch) ones.
CANONICAL_NAMES = {"kernel": "weight", "gamma": "weight", "bias": "bias", "beta": "bias"}


class Backend:
    layout = "NHWC"

    def __init__(self, name: str):
        if name != f"keras-{keras.backend.backend()}":
            raise RuntimeError(f"{name} requested but Keras runs on {keras.backend.backend()}; set KERAS_BACKEND first")
        self.name = name

    def build(self, config: Config) -> tuple[Generator, Discriminator]:
        # Distinct streams for G and D, both from the run's one seed.
        return Generator(config.model, seed=2 * config.seed), Discriminator(config.model, seed=2 * config.seed + 1)

    def trainer(self, config: Config, compile: bool = False) -> Trainer:
        # Keras compiles the step itself (tf.function; jax.jit), so `compile` changes nothing.
        # Keras's jit_compile=True would add XLA on TensorFlow (no faster here, on CPU) and
        # torch.compile on torch, where Inductor fails on this step (torch 2.14).
        return Trainer(config, *self.build(config))

    def run_layers(self, network, inputs: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
        x = keras.ops.convert_to_tensor(inputs.transpose(0, 2, 3, 1) if inputs.ndim == 4 else inputs, dtype="float32")
        outputs = []
        for layer in network.layers:
            x = layer(x, training=True)
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
        # Keras's epsilon is Kingma & Ba's "epsilon hat" (added before bias correction), PyTorch's is added after.
        adam = dict(beta_1=o.beta1, beta_2=o.beta2, epsilon=o.eps)
        self.gan = GAN(generator, discriminator, config)
        self.gan.compile(d_optimizer=keras.optimizers.Adam(o.lr_d, **adam), g_optimizer=keras.optimizers.Adam(o.lr_g, **adam))

    def train_step(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> dict[str, float]:
        # train_on_batch reads the metrics back as Python floats: one host sync per step.
        return self.gan.train_on_batch((np.ascontiguousarray(reals.transpose(0, 1, 3, 4, 2)), z_d, z_g), return_dict=True)

    def sample(self, z: np.ndarray) -> np.ndarray:
        images = self.gan.generator(keras.ops.convert_to_tensor(z), training=False)
        return keras.ops.convert_to_numpy(images).transpose(0, 3, 1, 2).astype(np.float32)

    def _variables(self) -> dict[str, keras.Variable]:
        """Every variable a resumed run needs, under keys that are the same in every trainer built
        from the same config (Keras's own paths are not: unnamed objects such as optimizers and
        seed generators are numbered per process)."""
        variables = {"gan.seed_generator": self.gan.seed_generator.state}
        for prefix, network in (("generator", self.gan.generator), ("discriminator", self.gan.discriminator)):
            # By layer: spec names are stable; layer.variables includes dropout's seed state.
            for layer in network.layers:
                variables.update({f"{prefix}.{layer.name}.{v.name}": v for v in layer.variables})
        for prefix, optimizer in (("d_optimizer", self.gan.d_optimizer), ("g_optimizer", self.gan.g_optimizer)):
            variables.update({f"{prefix}.{v.name}": v for v in optimizer.variables})
        return variables

    def state_dict(self) -> dict[str, np.ndarray]:
        # np.array copies: on torch, convert_to_numpy shares memory with a tensor the optimizer updates in place.
        return {key: np.array(keras.ops.convert_to_numpy(v)) for key, v in self._variables().items()}

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        for key, variable in self._variables().items():
            variable.assign(arrays[key])

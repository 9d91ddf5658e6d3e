"""JAX/Flax NNX's side of the common backend interface (see common/backends.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from common.config import Config
from jax_impl.models import Discriminator, Generator
from jax_impl.step import train_step


# Flax parameter names -> the canonical (PyTorch) ones.
CANONICAL_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias"}


class Backend:
    layout = "NHWC"

    def __init__(self, name: str = "jax"):
        self.name = name

    def build(self, config: Config) -> tuple[Generator, Discriminator]:
        # Distinct streams for G and D, both from the run's one seed.
        return (
            Generator(config.model, rngs=nnx.Rngs(2 * config.seed)),
            Discriminator(config.model, rngs=nnx.Rngs(2 * config.seed + 1)),
        )

    def trainer(self, config: Config, compile: bool = False) -> Trainer:
        del compile  # the step is always compiled (nnx.jit)
        return Trainer(config, *self.build(config))

    def run_layers(self, network, inputs: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
        network.train()
        x = inputs.transpose(0, 2, 3, 1) if inputs.ndim == 4 else inputs  # NCHW at the edge -> NHWC
        outputs = []
        for name in network.layer_names:
            module = getattr(network, name)
            x = module(x)
            outputs.append((name, type(module).__name__, np.asarray(x)))
        return outputs

    def parameters(self, network) -> dict[str, dict[str, np.ndarray]]:
        return {
            name: {
                CANONICAL_NAMES[path[-1]]: np.asarray(variable[...])
                for path, variable in nnx.to_flat_state(nnx.state(getattr(network, name), nnx.Param))
            }
            for name in network.layer_names
        }


class Trainer:
    """G, D and their Adam optimizers; `train_step` runs jax_impl/step.py."""

    def __init__(self, config: Config, generator: Generator, discriminator: Discriminator):
        o = config.optim
        self.config = config
        self.generator, self.discriminator = generator, discriminator
        adam = dict(b1=o.beta1, b2=o.beta2, eps=o.eps)
        self.g_optimizer = nnx.Optimizer(generator, optax.adam(o.lr_g, **adam), wrt=nnx.Param)
        self.d_optimizer = nnx.Optimizer(discriminator, optax.adam(o.lr_d, **adam), wrt=nnx.Param)

    def train_step(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> dict[str, jax.Array]:
        return train_step(
            self.generator, self.discriminator, self.g_optimizer, self.d_optimizer,
            jnp.asarray(reals).transpose(0, 1, 3, 4, 2),  # (k, N, C, H, W) at the edge -> NHWC
            jnp.asarray(z_d), None if z_g is None else jnp.asarray(z_g),
            self.config.optim.real_label,
        )

    def sample(self, z: np.ndarray) -> np.ndarray:
        self.generator.eval()  # BN normalises with its running statistics
        try:
            return np.asarray(self.generator(jnp.asarray(z)).transpose(0, 3, 1, 2))
        finally:
            self.generator.train()

    def _stateful(self) -> dict[str, nnx.Module | nnx.Optimizer]:
        return {"generator": self.generator, "discriminator": self.discriminator,
                "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every Variable of G, D and both optimizers under its dotted path ("generator.convt2.kernel",
        "d_optimizer.opt_state.0.mu.conv1.kernel", "d_optimizer.step"): parameters, BN statistics,
        dropout's RNG key and count, Adam's moments and step counts."""
        arrays = {}
        for prefix, node in self._stateful().items():
            for path, variable in nnx.to_flat_state(nnx.state(node)):
                value = variable[...]
                if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
                    value = jax.random.key_data(value)  # a typed key has no numpy form; its raw bits do
                arrays[_key(prefix, path)] = np.asarray(value)
        return arrays

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Writes the arrays into this trainer's own modules and optimizers (nnx.update); their
        structure, and so the compiled step, stays as built. Raw key bits are rewrapped as typed
        keys of the PRNG implementation the modules were built with."""
        for prefix, node in self._stateful().items():
            flat = []
            for path, variable in nnx.to_flat_state(nnx.state(node)):
                key = _key(prefix, path)
                value = jnp.asarray(arrays[key])
                if jax.dtypes.issubdtype(variable.dtype, jax.dtypes.prng_key):
                    value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(variable[...]))
                if value.shape != variable.shape:  # nnx.update would take it and train on, reshaped
                    raise ValueError(f"{key}: shape {value.shape} where the model has {variable.shape}")
                flat.append((path, value))
            nnx.update(node, nnx.from_flat_state(flat))


def _key(prefix: str, path: tuple) -> str:
    """A state path as a dotted key; optax's tuple states contribute indices ("opt_state.0.mu")."""
    return ".".join(map(str, (prefix, *path)))

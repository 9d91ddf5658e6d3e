"""JAX/Flax NNX's side of the common backend interface (see common/backends.py)."""

from __future__ import annotations

import numpy as np
from flax import nnx

from common.config import Config
from jax_impl.models import Discriminator, Generator


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

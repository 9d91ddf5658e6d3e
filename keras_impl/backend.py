"""Keras 3's side of the common backend interface (see common/backends.py).

The Keras backend (tensorflow, jax or torch) is fixed by KERAS_BACKEND before keras is
imported; `common.backends.load_backend` sets it.
"""

from __future__ import annotations

import keras
import numpy as np

from common.config import Config
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

"""PyTorch's side of the common backend interface (see common/backends.py)."""

from __future__ import annotations

import numpy as np
import torch

from common.config import Config
from pytorch_impl.models import Discriminator, Generator


class Backend:
    layout = "NCHW"

    def __init__(self, name: str = "torch"):
        self.name = name

    def build(self, config: Config) -> tuple[Generator, Discriminator]:
        # Distinct streams for G and D, both from the run's one seed.
        return Generator(config.model, seed=2 * config.seed), Discriminator(config.model, seed=2 * config.seed + 1)

    @torch.no_grad()
    def run_layers(self, network, inputs: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
        network.train()
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
        outputs = []
        for name, module in network.named_children():
            x = module(x)
            outputs.append((name, type(module).__name__, x.numpy()))
        return outputs

    def parameters(self, network) -> dict[str, dict[str, np.ndarray]]:
        return {
            name: {p_name: p.detach().numpy() for p_name, p in module.named_parameters()}
            for name, module in network.named_children()
        }

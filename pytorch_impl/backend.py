"""PyTorch's side of the common backend interface (see common/backends.py)."""

from __future__ import annotations

import numpy as np
import torch

from common.config import Config
from pytorch_impl.models import Discriminator, Generator
from pytorch_impl.step import train_step


class Backend:
    layout = "NCHW"

    def __init__(self, name: str = "torch"):
        self.name = name

    def build(self, config: Config) -> tuple[Generator, Discriminator]:
        # Distinct streams for G and D, both from the run's one seed.
        return Generator(config.model, seed=2 * config.seed), Discriminator(config.model, seed=2 * config.seed + 1)

    def trainer(self, config: Config, compile: bool = False) -> Trainer:
        return Trainer(config, *self.build(config), compile=compile)

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


class Trainer:
    """G, D and their Adam optimizers; `train_step` runs pytorch_impl/step.py."""

    def __init__(self, config: Config, generator: Generator, discriminator: Discriminator, compile: bool = False):
        o = config.optim
        self.config = config
        self.generator, self.discriminator = generator, discriminator
        adam = dict(betas=(o.beta1, o.beta2), eps=o.eps)
        self.g_optimizer = torch.optim.Adam(generator.parameters(), lr=o.lr_g, **adam)
        self.d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=o.lr_d, **adam)
        # torch.compile wraps the modules' forward passes; backward and Adam stay eager.
        self._g = torch.compile(generator) if compile else generator
        self._d = torch.compile(discriminator) if compile else discriminator
        torch.manual_seed(config.seed)  # dropout draws from the global generator; its state is checkpointed

    def train_step(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> dict[str, torch.Tensor]:
        return train_step(
            self._g, self._d, self.g_optimizer, self.d_optimizer,
            torch.from_numpy(reals), torch.from_numpy(z_d), None if z_g is None else torch.from_numpy(z_g),
            self.config.optim.real_label,
        )

    @torch.no_grad()
    def sample(self, z: np.ndarray) -> np.ndarray:
        self.generator.eval()
        try:
            return self.generator(torch.from_numpy(z)).numpy()
        finally:
            self.generator.train()

    def state_dict(self) -> dict[str, np.ndarray]:
        arrays = {}
        for prefix, module in (("generator", self.generator), ("discriminator", self.discriminator)):
            arrays.update({f"{prefix}.{k}": v.numpy() for k, v in module.state_dict().items()})
        for prefix, optimizer in (("g_optimizer", self.g_optimizer), ("d_optimizer", self.d_optimizer)):
            for index, state in optimizer.state_dict()["state"].items():
                arrays.update({f"{prefix}.{index}.{k}": torch.as_tensor(v).numpy() for k, v in state.items()})
        arrays["rng.torch"] = torch.get_rng_state().numpy()
        return arrays

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        for prefix, module in (("generator", self.generator), ("discriminator", self.discriminator)):
            module.load_state_dict({k: torch.from_numpy(arrays[f"{prefix}.{k}"]) for k in module.state_dict()})
        for prefix, optimizer in (("g_optimizer", self.g_optimizer), ("d_optimizer", self.d_optimizer)):
            current = optimizer.state_dict()
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in arrays.items():
                if key.startswith(prefix + "."):
                    _, index, name = key.split(".")
                    state.setdefault(int(index), {})[name] = torch.from_numpy(value.copy())
            optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
        torch.set_rng_state(torch.from_numpy(arrays["rng.torch"].copy()))

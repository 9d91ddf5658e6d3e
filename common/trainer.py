"""What the shared loop (common/train.py), the benchmarks and the parity suite drive: one
framework's models and optimizers, as `Backend.trainer` (common/backends.py) makes them.

`Trainer` is a base class, not only an interface: what every framework does alike is here
(`train_step` is `step(prepare(...))`; one process decides alone when to stop and writes the
run's files), and each framework's Trainer subclasses it with what it does its own way.
Arrays cross it in the canonical form: batches NCHW, states and gradients as
common/canonical.py names and lays them out; each trainer casts to its own precision.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Trainer(ABC):
    generator: Any  # the framework's models, as `Backend.build` made them
    discriminator: Any
    # G's moving average (common/algorithm.py), the framework's generator of G's layers, where
    # optim.ema > 0; None where the run keeps none.
    ema_generator: Any = None
    writer: bool = True  # whether this process writes the run's files (with a process per device: process 0)

    def train_step(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> dict[str, Any]:
        """One iteration of common/algorithm.py on numpy inputs: `step(prepare(reals, z_d, z_g))`.

        reals: (k, N, C, H, W) float32 in [-1, 1]; z_d: (k, N, latent) float32; z_g: (N, latent),
        or None when G reuses the last D step's fakes; N counts this process's `rows`. Returns the scalars named in
        common.algorithm.METRICS as framework scalars (`float()` reads each), so the step
        itself never waits for the host.
        """
        return self.step(self.prepare(reals, z_d, z_g))

    def rows(self, batch_size: int) -> slice:
        """The rows of each global batch of `batch_size` that this process loads and trains on:
        all of them, unless each of the run's processes loads only its own part (torch's DDP,
        as torch.utils.data.DistributedSampler gives each process its own part of the data)."""
        return slice(0, batch_size)

    def should_stop(self, requested: int | None) -> int | None:
        """The signal (SIGINT, SIGTERM) that stops the loop after this iteration, or None.
        With a process per device, the one any process received, so all stop together."""
        return requested

    @abstractmethod
    def prepare(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> Any:
        """The batch as this framework's arrays, on its device, in its layout and dtype."""

    @abstractmethod
    def step(self, batch: Any) -> dict[str, Any]:
        """The framework's train step (its `step.py`) on a batch `prepare` made: what the
        benchmarks time."""

    @abstractmethod
    def synchronize(self, outputs: Any) -> None:
        """Waits until the device has finished the work that produced `outputs` (a step's
        metrics): what a timer must do before it reads the clock."""

    @abstractmethod
    def sample(self, z: np.ndarray, averaged: bool = False) -> np.ndarray:
        """G in eval mode on z (n, latent), or with `averaged` its moving average
        (`ema_generator`, which the caller has checked exists): images (n, C, H, W) float32
        in [-1, 1]."""

    @abstractmethod
    def gradients(self, real: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        """d loss_D / d D's parameters (real batch and G(z), detached) and d loss_G / d G's
        parameters (through D), at the current state, under canonical keys; only BN running
        statistics change, as in any train-mode forward pass."""

    @abstractmethod
    def apply_gradients(self, grads: dict[str, np.ndarray]) -> None:
        """One Adam update of each network with the given canonical gradients."""

    @abstractmethod
    def state_dict(self) -> dict[str, np.ndarray]:
        """The canonical state: everything a resumed run needs to continue exactly (weights,
        BN statistics, Adam's moments and step counts, G's moving average where kept), plus
        the framework's own RNG state under rng.<framework>.*, so a resume on the same
        backend is bit-identical."""

    @abstractmethod
    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Loads a canonical state written by any backend (validated by the caller against the
        config). Without optimizer keys Adam starts afresh; without ema_generator keys a
        trainer that keeps the average starts it from the loaded G, and one that keeps none
        ignores them; a framework's RNG state is read only by that framework."""

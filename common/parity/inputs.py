"""What every backend is given: the config it builds, the state it starts from, and the
batches, noise and gradients it computes on, all drawn here once, in float64; and for `dcgan
eval`'s feature network, its committed weights and images to run it on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from common import canonical
from common.algorithm import latent
from common.config import Config
from common.quality.features import COMMITTED, COMMITTED_SHA256, load_weights
from common.quality.network import IN_SHAPE

ITERATIONS = 5  # training iterations of the "5 iterations" check


def parity_config(config: Config) -> Config:
    """The config with dropout removed, for the train-mode checks: dropout is random in each
    framework's own way, so train mode is compared without it (see common/parity/__init__.py)."""
    model = config.model
    strip = lambda blocks: tuple(dataclasses.replace(b, dropout=0.0) for b in blocks)  # noqa: E731
    return dataclasses.replace(
        config,
        model=dataclasses.replace(model, generator=strip(model.generator), discriminator=strip(model.discriminator)),
    )


def random_state(config: Config, seed: int = 0) -> dict[str, np.ndarray]:
    """A canonical float64 state unlike any initialisation: non-zero biases and BN offsets,
    BN running statistics away from 0 and 1, Adam three steps in with non-zero moments, and,
    where the config keeps G's moving average (optim.ema), an average apart from G (its BN
    statistics G's, as training leaves them), so that every tensor's mapping, not only the
    weights', is exercised."""
    rng = np.random.default_rng([seed, 7])
    arrays: dict[str, np.ndarray] = {}
    for entry in canonical.entries(config):
        shape = entry.shape
        if entry.name == "weight" and entry.layer.kind != "batch_norm":
            arrays[entry.key] = rng.normal(0.0, config.model.init_std, shape)
        elif entry.name == "weight":
            arrays[entry.key] = rng.normal(1.0, 0.1, shape)
        elif entry.name == "running_var":
            arrays[entry.key] = rng.uniform(0.5, 1.5, shape)
        else:  # bias, BN offset, running mean
            arrays[entry.key] = rng.normal(0.0, 0.1, shape)
    for role in canonical.ROLES:
        arrays[canonical.step_key(role)] = np.array(3, dtype=np.int64)
        for entry in canonical.parameters(config, role):
            m = rng.normal(0.0, 1e-3, entry.shape)
            arrays[canonical.moment_key(role, "exp_avg", entry)] = m
            arrays[canonical.moment_key(role, "exp_avg_sq", entry)] = m**2 + rng.uniform(0.0, 1e-6, entry.shape)
    if config.optim.ema:  # drawn last, so the other tensors are those of a config without it
        for entry in canonical.ema_entries(config):
            own = arrays[entry.key.replace(canonical.EMA, "generator", 1)]
            arrays[entry.key] = (
                own + rng.normal(0.0, 0.1 * config.model.init_std, entry.shape) if entry.trainable else own
            )
    return arrays


@dataclass
class Inputs:
    """What every backend is given: batches and noise for the forward and gradient checks
    and for ITERATIONS training iterations, and gradients for the Adam check (float64)."""

    real: np.ndarray  # (N, C, H, W)
    z: np.ndarray  # (N, latent)
    reals: np.ndarray  # (ITERATIONS, k, N, C, H, W)
    z_d: np.ndarray  # (ITERATIONS, k, N, latent)
    z_g: np.ndarray | None  # (ITERATIONS, N, latent), or None for "reuse"
    grads: dict[str, np.ndarray]

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"real": self.real, "z": self.z, "reals": self.reals, "z_d": self.z_d}
        if self.z_g is not None:
            out["z_g"] = self.z_g
        return {**out, **{f"grad.{k}": v for k, v in self.grads.items()}}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Inputs:
        grads = {k.removeprefix("grad."): v for k, v in arrays.items() if k.startswith("grad.")}
        return cls(arrays["real"], arrays["z"], arrays["reals"], arrays["z_d"], arrays.get("z_g"), grads)


def make_inputs(config: Config, batch_size: int, seed: int = 0) -> Inputs:
    """The inputs of `config` for batches of `batch_size`, all from one stream of `seed`; the
    noise from common.algorithm.latent, the one function that draws noise for G."""
    rng = np.random.default_rng([seed, 11])
    m, k = config.model, config.optim.d_steps
    image = (m.channels, m.image_size, m.image_size)
    grads = {}
    for role in canonical.ROLES:  # gradients over six orders of magnitude, some below Adam's eps
        for entry in canonical.parameters(config, role):
            grads[entry.key] = rng.standard_normal(entry.shape) * 10.0 ** rng.uniform(-9, -3, entry.shape)
    return Inputs(
        real=rng.uniform(-1.0, 1.0, (batch_size, *image)),
        z=latent(config, batch_size, rng, np.float64),
        reals=rng.uniform(-1.0, 1.0, (ITERATIONS, k, batch_size, *image)),
        z_d=latent(config, (ITERATIONS, k, batch_size), rng, np.float64),
        z_g=latent(config, (ITERATIONS, batch_size), rng, np.float64) if config.optim.g_fake_batch == "fresh" else None,
        grads=grads,
    )


def feature_network_inputs(batch_size: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """The feature network's weights (the committed ones: trained weights, whose values and
    running statistics are those `dcgan eval` computes with) and `batch_size` images in [-1, 1]
    to run it on, as the job's arrays: {"feature_network.state": ..., "feature_network.images": ...}."""
    state, _ = load_weights(COMMITTED, COMMITTED_SHA256)
    images = np.random.default_rng([seed, 13]).uniform(-1.0, 1.0, (batch_size, *IN_SHAPE))
    return {"feature_network.state": state, "feature_network.images": {"images": images}}

"""What a command must hold in the host's memory, judged from the spec before any framework
allocates it: a request that cannot fit is refused by name with the numbers, instead of
ending part-way in an allocator's error, or in the kernel's out-of-memory killer.

The figures are lower bounds (float32 arrays the host holds whatever the device: the state a
checkpoint carries, the batches the loop loads, the latent vectors and images a sample
draws), so nothing that could fit is refused. What they miss, a framework's own buffers or a
GPU's memory, still fails at run time; `dcgan` then names it in one line
(common/errors.py's `environment_error`).
"""

from __future__ import annotations

import os
from math import prod

from common.config import Config
from common.errors import ConfigError
from common.spec import discriminator_spec, generator_spec

FLOAT32 = 4  # bytes


def machine_memory() -> int:
    """The host's physical memory in bytes (POSIX sysconf)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def size(n: float) -> str:
    """Bytes as a person reads them: 1.5 GiB, 3.2 TiB."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.1f} {units[i]}"


def parameters(config: Config) -> int:
    """The trainable parameters of both networks, from the spec."""
    return generator_spec(config.model).params + discriminator_spec(config.model).params


def state_bytes(config: Config) -> int:
    """The training state a checkpoint copies to the host: both networks' weights and Adam's
    two moments, and G's moving average where the run keeps one (optim.ema)."""
    averaged = generator_spec(config.model).params if config.optim.ema else 0
    return (3 * parameters(config) + averaged) * FLOAT32


def batch_bytes(config: Config, batch_size: int) -> int:
    """One iteration's inputs as the loop loads them on the host: k real batches and their
    latent vectors (common/train.py's Batches)."""
    m = config.model
    return config.optim.d_steps * batch_size * (m.channels * m.image_size**2 + m.latent_dim) * FLOAT32


def images_bytes(config: Config, n: int) -> int:
    """n latent vectors and the n images G draws from them."""
    return n * (config.model.latent_dim + prod(generator_spec(config.model).out_shape)) * FLOAT32


def check_training(config: Config, batch_size: int | None = None) -> None:
    """Refuses a model, or a batch, whose training state and inputs cannot fit in this
    machine's memory, naming the values that make it so (the networks' sizes, or the batch)."""
    batch_size = batch_size or config.optim.batch_size
    state, batches = state_bytes(config), batch_bytes(config, batch_size)
    m = config.model
    averaged = " and G's moving average" if config.optim.ema else ""
    if state >= batches:
        key, value = "model", f"{config.preset} with latent_dim={m.latent_dim} ngf={m.ngf} ndf={m.ndf}"
    else:
        key, value = "optim.batch_size", batch_size
    _check(
        state + batches,
        key,
        value,
        f"training these networks holds {parameters(config):.3g} parameters with Adam's two moments{averaged} "
        f"({size(state)}) and batches of {batch_size} images ({size(batches)}), float32",
    )


def check_images(config: Config, n: int, flag: str = "--n") -> None:
    """Refuses drawing `n` images that cannot fit in this machine's memory, with the largest
    n that could."""
    each = images_bytes(config, 1)
    _check(
        images_bytes(config, n) + parameters(config) * FLOAT32,
        flag,
        n,
        f"{n} images of {config.preset} with their latent vectors take {size(n * each)} ({size(each)} each, float32)",
        f"; at most {machine_memory() // each} of them would fit",
    )


def _check(needed: int, key: str, value, what: str, hint: str = "") -> None:
    total = machine_memory()
    if needed > total:
        raise ConfigError(key, value, f"what fits in this machine's {size(total)} of memory: {what}{hint}")

"""`dcgan sample`: a grid (and arrays) from a checkpoint, G in eval mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import checkpoint
from common.algorithm import latent
from common.backends import load_backend
from common.config import toml_overrides
from common.errors import ConfigError
from common.pictures import save_grid
from common.presets import make_config


def sample(path: Path, n: int, out: Path, seed: int = 0, backend: str | None = None, npz: Path | None = None) -> np.ndarray:
    arrays, metadata = checkpoint.load(checkpoint.resolve(path))
    config = make_config(metadata["preset"], toml_overrides(metadata["config"]))
    backend = backend or metadata["backend"]
    if backend != metadata["backend"]:
        raise ConfigError("--backend", backend, f"{metadata['backend']}, the backend that wrote this checkpoint "
                          "(cross-backend loading comes with the canonical checkpoint format)")
    trainer = load_backend(backend).trainer(config)
    trainer.load_state_dict(arrays)
    z = latent(config, n, np.random.default_rng(seed))
    images = trainer.sample(z)
    save_grid(out, images)
    if npz:
        np.savez(npz, images=images, z=z)
    return images

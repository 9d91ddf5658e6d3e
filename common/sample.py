"""`dcgan sample`: a grid (and arrays) from a checkpoint, G in eval mode, on any backend.

The grid shows at most the first GRID_MAX images (16 x 16), so that it stays legible: 10,000
28x28 images would be one 6004 x 6004 PNG. `--npz` holds every image drawn.

Which generator draws (`--generator`, GENERATORS): G's moving average where the run kept one
(optim.ema > 0, common/algorithm.py), since that is what averaging is for; else G. `raw`
draws from G itself, to compare the two; `ema` from a checkpoint without an average is
refused. `dcgan eval` and the training loop's grids and scores choose alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.algorithm import GENERATORS, latent
from common.backends import BACKENDS, load_backend
from common.checkpoint import replacing
from common.config import Config
from common.errors import ConfigError
from common.memory import check_images
from common.pictures import check_image_file, save_grid
from common.rundir import open_checkpoint

DEFAULT_N = 64
GRID_MAX = 256  # images in the grid PNG at most: 16 x 16
SAMPLE_BATCH = 256  # G runs on this many latent vectors at a time, so any --n fits in memory


def source_backend(metadata: dict[str, str]) -> str:
    """Any backend runs any checkpoint; by default the one that wrote it (torch for a
    converted pytorch/examples file, which names none)."""
    return metadata["backend"] if metadata.get("backend") in BACKENDS else "torch"


def use_average(config: Config, choice: str | None = None, flag: str = "--generator") -> bool:
    """Whether to draw from G's moving average: `choice` ("ema" or "raw", GENERATORS), by
    default the average where the config keeps one (a trainer of it holds `ema_generator`)."""
    kept = config.optim.ema > 0
    if choice is None:
        return kept
    if choice not in GENERATORS:
        raise ConfigError(flag, choice, "one of " + ", ".join(GENERATORS))
    if choice == "ema" and not kept:
        raise ConfigError(
            flag, choice, "raw: this checkpoint holds no averaged generator (it was trained with optim.ema 0)"
        )
    return choice == "ema"


def generator_name(config: Config, averaged: bool) -> str:
    """Which generator drew, as the commands' output says it."""
    if averaged:
        return f"G's moving average (optim.ema {config.optim.ema:g})"
    return "G" + (" (the checkpoint keeps no moving average)" if config.optim.ema == 0 else ", not its moving average")


def generate(trainer, z: np.ndarray, averaged: bool = False) -> np.ndarray:
    """G's images of the latent vectors z (or, `averaged`, its moving average's), in eval mode,
    SAMPLE_BATCH at a time."""
    return np.concatenate([trainer.sample(z[i : i + SAMPLE_BATCH], averaged) for i in range(0, len(z), SAMPLE_BATCH)])


def load_noise(path: Path, config: Config, n: int | None = None) -> np.ndarray:
    """Latent vectors from a .npy file of shape (n, latent_dim), as float32."""
    expected = (
        f"a .npy file of shape (n, {config.model.latent_dim}): n latent vectors of latent_dim "
        f"{config.model.latent_dim} for preset {config.preset}"
    )
    try:
        z = np.load(str(path), allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError("--noise", str(path), f"an existing file: {expected}") from None
    except (OSError, ValueError, EOFError) as err:  # not a .npy file, or one that needs pickle
        raise ConfigError("--noise", str(path), f"{expected} ({_why_not_loaded(path, err)})") from None
    if not isinstance(z, np.ndarray) or z.ndim != 2 or z.shape[1] != config.model.latent_dim or z.shape[0] < 1:
        raise ConfigError("--noise", f"{path} of shape {tuple(np.shape(z))}", expected)
    if not np.issubdtype(z.dtype, np.number) or np.issubdtype(z.dtype, np.complexfloating):
        raise ConfigError("--noise", f"{path} of dtype {z.dtype}", expected + ", real numbers")
    if not np.isfinite(z).all():  # G would draw NaN images, written as black squares
        raise ConfigError("--noise", f"{path} with NaN or infinite values", expected + ", finite numbers")
    if n is not None and n != z.shape[0]:
        raise ConfigError("--n", n, f"{z.shape[0]}, the number of vectors in {path} (or leave --n out)")
    return z.astype(np.float32)


def _why_not_loaded(path: Path, err: Exception) -> str:
    """Why np.load refused a file. numpy takes a file without the .npy magic for a pickle and
    suggests allow_pickle, which is never the remedy here: say it is not a .npy file."""
    try:
        with open(path, "rb") as f:
            if f.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                return "this file is not in .npy format"
    except OSError:
        pass
    return f"{type(err).__name__}: {err}"


def sample(
    path: Path,
    n: int | None,
    out: Path,
    seed: int = 0,
    backend: str | None = None,
    npz: Path | None = None,
    noise: Path | None = None,
    generator: str | None = None,
) -> np.ndarray:
    """The images drawn, by G or its moving average (`generator`, as `use_average` reads it),
    which it says."""
    check_image_file(Path(out), "--out")
    arrays, metadata, config = open_checkpoint(path)
    averaged = use_average(config, generator)
    backend = backend or source_backend(metadata)
    if noise is not None:
        z = load_noise(noise, config, n)
        check_images(config, len(z), "--noise")
    else:
        check_images(config, n or DEFAULT_N)  # before the latent vectors are drawn
        z = latent(config, n or DEFAULT_N, np.random.default_rng(seed))
    trainer = load_backend(backend).trainer(config)
    trainer.load_state_dict(arrays)
    images = generate(trainer, z, averaged)
    save_grid(Path(out), images[:GRID_MAX])
    print(f"dcgan sample: {len(images)} images drawn by {generator_name(config, averaged)}")
    if len(images) > GRID_MAX:
        rest = f"{npz} holds all {len(images)}" if npz else "--npz FILE writes them all"
        print(f"dcgan sample: the grid shows the first {GRID_MAX} of {len(images)} images; {rest}")
    if npz:
        with replacing(Path(npz)) as tmp, open(tmp, "wb") as f:  # a file, not a name, to which numpy would add .npz
            np.savez(f, images=np.asarray(images, dtype=np.float32), z=z)
    return images

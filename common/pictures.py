"""What a person looks at: sample grids, the loss curves, and the grids as an animation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from common.checkpoint import replacing
from common.errors import ConfigError
from common.images import to_uint8


def image_grid(images: np.ndarray, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> one (H', W', 3) uint8 grid, `nrow` images a row (default: square)."""
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    tiles = to_uint8(images)
    if c == 1:
        tiles = np.repeat(tiles, 3, axis=1)
    grid = np.zeros((rows * (h + padding) + padding, nrow * (w + padding) + padding, 3), np.uint8)
    for i, tile in enumerate(tiles):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        grid[top : top + h, left : left + w] = tile.transpose(1, 2, 0)
    return grid


def check_image_file(path: Path, flag: str) -> None:
    """Refuses, before any work is done, a path `save_grid` could not write: a directory, or a
    name whose suffix is not an image format Pillow writes."""
    formats = Image.registered_extensions()  # suffix -> format, every plugin's
    if path.is_dir() or formats.get(path.suffix.lower()) not in Image.SAVE:
        raise ConfigError(
            flag, str(path), "an image file name such as samples.png (.png, .jpg, .bmp, .gif, .tif, .webp)"
        )


def save_grid(path: Path, images: np.ndarray, scale: int | None = None) -> None:
    """Writes a grid image, enlarged `scale` times pixel for pixel (default: small images, such
    as 28x28, to about 64 pixels a tile, so a grid is legible at a glance), atomically
    (common/checkpoint.py's `replacing`)."""
    scale = scale or max(1, 64 // images.shape[-1])
    grid = Image.fromarray(image_grid(images))
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
    with replacing(path) as tmp:  # the format is the name's, not the temporary one's
        grid.save(tmp, format=Image.registered_extensions()[path.suffix.lower()])


def save_gif(path: Path, frames: Sequence[Path], ms_per_frame: int = 400) -> None:
    """The sample grids over training, as one looping GIF (the last frame held longer), written
    atomically."""
    if not frames:
        return
    images = [Image.open(frame).convert("RGB") for frame in frames]
    durations = [ms_per_frame] * (len(images) - 1) + [ms_per_frame * 5]
    with replacing(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)


def plot_losses(path: Path, records: Sequence[dict], title: str) -> None:
    """G and D losses per iteration, with a moving average so the trend shows through the
    noise; below them, where the run was scored (`dcgan train --eval-every`), FD over iterations."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    scored = [r for r in records if "fd" in r]
    rows = 2 if scored else 1
    fig, axes = plt.subplots(rows, 1, figsize=(8, 4.5 * rows), dpi=100, squeeze=False)
    ax = axes[0][0]
    steps = np.array([r["step"] for r in records])
    for key, label, colour in (("loss_D", "D loss", "tab:blue"), ("loss_G", "G loss", "tab:orange")):
        values = np.array([r[key] for r in records], dtype=float)
        window = len(values) // 50
        if window > 1:  # raw values faint, their moving average on top
            ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, color=colour, linewidth=1.8, label=f"{label} (mean of {window})")
        else:
            ax.plot(steps, values, color=colour, linewidth=1.2, label=label)
    ax.set(xlabel="iteration", ylabel="BCE loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    if scored:
        ax = axes[1][0]
        at = [r["step"] for r in scored]
        ax.fill_between(
            at, [r["fd_low"] for r in scored], [r["fd_high"] for r in scored], alpha=0.25, color="tab:green"
        )
        ax.plot(at, [r["fd"] for r in scored], "o-", color="tab:green", label="FD (95% bootstrap interval)")
        ax.set(xlabel="iteration", ylabel="FD (Fashion-MNIST features)", yscale="log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, format=path.suffix.removeprefix("."))
    finally:
        plt.close(fig)

"""The shared dataset spec: where images come from and how they become training batches.

Every source ends in the same place: uint8 images at the model's size and channel count,
and batches of float32 NCHW arrays in [-1, 1] (the generator's tanh range). Each backend
converts those batches at its edge. Images are decoded once and kept in memory when they
fit (MNIST-sized data always does); a folder too large for memory is decoded batch by
batch instead, and the training loop prefetches the next batch either way.

Sources (`data.dataset`):

- `fashion-mnist`, `mnist`: the IDX files (default folder: Debian's dataset-fashion-mnist,
  /usr/share/datasets/fashion-mnist; `data.data_dir` for others);
- a folder of images (CelebA, Pokemon sprites, faces, SVHN as images ...), searched recursively;
- `tfds:NAME` and `torchvision:NAME`: the frameworks' dataset catalogues, for machines with
  internet (they download into `data.data_dir`; see common/catalogue.py);
- `fake`: random images, for smoke runs and benchmarks (as pytorch/examples has).

A folder's images may differ in size and mode (grey, RGB, RGBA, palette, 16-bit): each is
converted to the model's channels, centre-cropped and resized, as the write-ups' transforms
do. Files without an image suffix are not read (a dataset folder often holds a label list
or a README). An image file that does not decode is refused, by name: skipping it would
train on a different dataset from the one named. A folder decoded into memory is refused
before training starts; one too large for memory, when the batch holding the file is read.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.config import DataConfig
from common.errors import ConfigError
from common.images import FAKE_SIZE, prepare, to_model_range

IDX_DATASETS = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "mnist": "/usr/share/datasets/mnist"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MEMORY_FRACTION = 0.5  # decode into memory while the decoded images take at most this share of RAM


class ImageDataset:
    """N images, each (C, H, W) at the model's size; `batch(indices)` gives float32 NCHW in [-1, 1]."""

    name: str

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass
class InMemoryDataset(ImageDataset):
    name: str
    images: np.ndarray  # (N, C, H, W) uint8

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, indices: np.ndarray) -> np.ndarray:
        return to_model_range(self.images[indices])


@dataclass
class StreamingFolder(ImageDataset):
    """A folder too large to decode into memory: each batch is decoded when asked for."""

    name: str
    files: list[Path]
    data: DataConfig

    def __len__(self) -> int:
        return len(self.files)

    def batch(self, indices: np.ndarray) -> np.ndarray:
        return to_model_range(_read_images([self.files[i] for i in indices], self.data))


def load_dataset(data: DataConfig, seed: int = 0) -> ImageDataset:
    """The dataset `data.dataset` names, prepared for a model of data.image_size / channels."""
    name = data.dataset
    if name in IDX_DATASETS:
        return _load_idx(name, data)
    if name == "fake":
        rng = np.random.default_rng([seed, 0xFA4E])
        images = rng.integers(0, 256, (FAKE_SIZE, data.channels, data.image_size, data.image_size), dtype=np.uint8)
        return InMemoryDataset("fake", images)
    if name.startswith(("tfds:", "torchvision:")):
        from common.catalogue import load_catalogue

        return InMemoryDataset(name, load_catalogue(name, data))
    path = Path(name).expanduser()
    if path.is_dir():
        return _load_folder(path, data)
    if os.sep in name or path.exists() or name.startswith("."):
        raise ConfigError("data.dataset", name, "an existing folder of images")
    raise ConfigError(
        "data.dataset",
        name,
        "one of " + ", ".join([*IDX_DATASETS, "fake"]) + ", tfds:NAME, torchvision:NAME, or a folder of images",
    )


# --------------------------------------------------------------------------- images


def _prepare_arrays(images: Iterable[np.ndarray], data: DataConfig) -> np.ndarray:
    """HW or HWC uint8 arrays -> (N, C, H, W) at the model's size and channels."""
    return np.stack(
        [prepare(Image.fromarray(np.squeeze(a) if a.ndim == 3 and a.shape[2] == 1 else a), data) for a in images]
    )


def _read_images(files: list[Path], data: DataConfig) -> np.ndarray:
    """(N, C, H, W) uint8 from image files, decoded on every core (Pillow releases the GIL)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return np.stack(list(pool.map(lambda p: _read_image(p, data), files)))


def _read_image(path: Path, data: DataConfig) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return prepare(image, data)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        # not an image, truncated, a mode Pillow cannot convert (LAB to grey), or too large
        raise ConfigError(
            "data.dataset", str(path), f"a readable image file ({err.__class__.__name__}: {err})"
        ) from None


# --------------------------------------------------------------------------- sources


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format, optionally gzipped) -> uint8 array of its shape.

    A file that is not one whole IDX file of bytes (a corrupt gzip stream, another magic
    number, fewer bytes than its header promises: a download cut short) is refused by name."""
    valid = "an IDX file of unsigned bytes (MNIST format)"
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ConfigError(
            "data.data_dir", str(path), f"{valid}; its gzip stream is corrupt or cut short ({err})"
        ) from None
    except OSError as err:
        raise ConfigError("data.data_dir", str(path), f"{valid} ({err.strerror or err})") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ConfigError(
            "data.data_dir", str(path), f"{valid}, whose magic number starts 0x000008 (this one is 0x{raw[:4].hex()})"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ConfigError("data.data_dir", str(path), f"{valid}: its header is cut short")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(shape):
        raise ConfigError(
            "data.data_dir",
            str(path),
            f"{valid}: its header promises {' x '.join(map(str, shape))} = {math.prod(shape)} bytes of data, "
            f"and it holds {len(raw) - header} (a truncated download?)",
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def idx_file(folder: Path, stem: str) -> Path | None:
    """The IDX file `stem` (e.g. train-images-idx3-ubyte) in `folder`, gzipped or not, or None."""
    return next((p for p in (folder / f"{stem}.gz", folder / stem) if p.exists()), None)


def _load_idx(name: str, data: DataConfig) -> InMemoryDataset:
    folder = Path(data.data_dir or IDX_DATASETS[name]).expanduser()
    path = idx_file(folder, "train-images-idx3-ubyte")
    if path is None:
        hint = " (install Debian's dataset-fashion-mnist: `make setup`)" if name == "fashion-mnist" else ""
        raise ConfigError(
            "data.data_dir", str(folder), f"a folder holding train-images-idx3-ubyte[.gz] for {name}{hint}"
        )
    images = read_idx(path)  # (N, 28, 28)
    if images.ndim != 3:
        raise ConfigError("data.data_dir", str(path), f"an IDX file of images, N x H x W (this one is {images.shape})")
    if images.shape[1:] == (data.image_size, data.image_size):  # grey, replicated for RGB models
        return InMemoryDataset(name, np.repeat(images[:, None], data.channels, axis=1))
    return InMemoryDataset(name, _prepare_arrays(images, data))


def _load_folder(folder: Path, data: DataConfig) -> ImageDataset:
    found = [p for p in folder.rglob("*") if p.is_file()]
    files = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        held = f"it holds {len(found)} file(s), none named as an image" if found else "it holds no files"
        raise ConfigError("data.dataset", str(folder), f"a folder with images ({', '.join(IMAGE_SUFFIXES)}); {held}")
    decoded_bytes = len(files) * data.channels * data.image_size**2
    if decoded_bytes > MEMORY_FRACTION * _memory_bytes():
        return StreamingFolder(str(folder), files, data)
    return InMemoryDataset(str(folder), _read_images(files, data))


def _memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

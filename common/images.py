"""One image, or a batch, between its file form and the model's: what every dataset source
(common/data.py, common/catalogue.py) and the pictures (common/pictures.py) share.

Images are uint8 (C, H, W) at the model's size and channel count while stored, and float32
in [-1, 1] (the generator's tanh range) when they meet a model.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from common.config import DataConfig

FAKE_SIZE = 2048  # images in the `fake` dataset: random pixels, for smoke runs and benchmarks


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.astype(np.float32) / 127.5 - 1.0


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255], the inverse of `to_model_range` (clipped)."""
    return np.clip(np.rint((np.asarray(images, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def prepare(image: Image.Image, data: DataConfig) -> np.ndarray:
    """One PIL image -> (C, H, W) uint8: channels converted, centre-cropped, resized.

    As the write-ups' torchvision transforms: CenterCrop(center_crop) when set, then
    Resize to image_size (shorter side) and CenterCrop(image_size), bilinear with antialias.
    """
    image = image.convert("L" if data.channels == 1 else "RGB")
    if data.center_crop:
        image = _center_crop(image, data.center_crop)
    if image.size != (data.image_size, data.image_size):
        w, h = image.size
        scale = data.image_size / min(w, h)
        image = image.resize(
            (max(data.image_size, round(w * scale)), max(data.image_size, round(h * scale))),
            Image.Resampling.BILINEAR,
            reducing_gap=None,
        )
        image = _center_crop(image, data.image_size)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _center_crop(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))

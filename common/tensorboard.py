"""`dcgan train --tensorboard`: the run's losses, D's outputs, scores and sample grids as
TensorBoard event files (runs/NAME/tensorboard/), for `tensorboard --logdir runs`.

Written with the `tensorboard` package's own event writer and protocol buffers, the same ones
torch.utils.tensorboard uses, so `common` needs neither PyTorch nor TensorFlow for it.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import ConfigError
from common.pictures import image_grid


class TensorBoard:
    """An event file in `log_dir`: scalars and images, each at an iteration."""

    def __init__(self, log_dir: Path):
        try:
            from tensorboard.compat.proto.event_pb2 import Event
            from tensorboard.compat.proto.summary_pb2 import Summary
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard", True, "the tensorboard package installed (pip install -e '.[eval]')"
            ) from None
        log_dir.mkdir(parents=True, exist_ok=True)
        self._event, self._summary = Event, Summary
        self._writer = EventFileWriter(str(log_dir))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        summary = self._summary(
            value=[self._summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()]
        )
        self._writer.add_event(self._event(wall_time=time.time(), step=step, summary=summary))

    def images(self, step: int, tag: str, images: np.ndarray) -> None:
        """(N, C, H, W) images in [-1, 1], as one grid."""
        grid = image_grid(images)
        png = io.BytesIO()
        Image.fromarray(grid).save(png, format="PNG")
        image = self._summary.Image(
            height=grid.shape[0], width=grid.shape[1], colorspace=3, encoded_image_string=png.getvalue()
        )
        summary = self._summary(value=[self._summary.Value(tag=tag, image=image)])
        self._writer.add_event(self._event(wall_time=time.time(), step=step, summary=summary))

    def close(self) -> None:
        self._writer.close()

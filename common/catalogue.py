"""The frameworks' dataset catalogues: TensorFlow Datasets (`tfds:NAME`) and torchvision
(`torchvision:NAME`), for machines with internet.

Each is decoded in a child process, which writes the prepared uint8 images to a .npy file
for the training process to read. TensorFlow and PyTorch do not always survive in one
process (here, importing torchvision after TensorFlow had run a tf.data pipeline ended in a
segmentation fault), and the child keeps a catalogue's framework out of the training
backend's process whichever the two are.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common.config import DataConfig
from common.errors import ConfigError
from common.images import FAKE_SIZE, prepare


def load_catalogue(name: str, data: DataConfig) -> np.ndarray:
    """(N, C, H, W) uint8 images of catalogue dataset `name` ("tfds:mnist"), via a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "images.npy"
        args = [sys.executable, "-m", "common.catalogue", name, json.dumps(dataclasses.asdict(data)), str(out)]
        result = subprocess.run(args, capture_output=True, text=True)
        error = out.with_suffix(".error.json")
        if error.exists():
            raise ConfigError(**json.loads(error.read_text()))
        if result.returncode != 0:  # a crash: its traceback's last line says what went wrong
            last = result.stderr.strip().splitlines()[-1:] or ["no message"]
            raise ConfigError(
                "data.dataset", name, f"a dataset its catalogue can decode (exit {result.returncode}: {last[0][:300]})"
            )
        return np.load(out)


def _one_line(err: Exception) -> str:
    """A catalogue's error in one short line. Their messages run to many: tfds follows "Dataset
    x not found." with every dataset it knows, torchvision's "Error downloading FILE:" is
    followed by each mirror tried and the last line says why the download failed."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    first = f"{lines[0]} {lines[-1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return first[:300]


def decode(name: str, data: DataConfig) -> np.ndarray:
    """The catalogue's train split, prepared as every source is (common.data.prepare)."""
    source, _, dataset = name.partition(":")
    if source == "tfds":
        return _decode_tfds(dataset, data)
    return _decode_torchvision(dataset, data)


def _decode_tfds(name: str, data: DataConfig) -> np.ndarray:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ConfigError(
            "data.dataset", f"tfds:{name}", "a source whose package is installed: pip install -e '.[keras]'"
        ) from None
    try:
        dataset = tfds.load(name, split="train", data_dir=data.data_dir or None, shuffle_files=False)
    except Exception as err:  # tfds raises many kinds: unknown name, no network, ...
        raise ConfigError(
            "data.dataset", f"tfds:{name}", f"a TensorFlow Datasets name it can load ({_one_line(err)})"
        ) from None
    from PIL import Image

    return np.stack([prepare(Image.fromarray(np.squeeze(ex["image"])), data) for ex in tfds.as_numpy(dataset)])


def _decode_torchvision(name: str, data: DataConfig) -> np.ndarray:
    try:
        import torchvision.datasets as catalogue
    except ImportError:
        raise ConfigError(
            "data.dataset", f"torchvision:{name}", "a source whose package is installed: pip install -e '.[torch]'"
        ) from None
    factory = getattr(catalogue, name, None)
    if not isinstance(factory, type):
        raise ConfigError(
            "data.dataset", f"torchvision:{name}", "a class of torchvision.datasets, e.g. torchvision:CIFAR10"
        )
    root = Path(data.data_dir or "~/.cache/dcgan-suite/torchvision").expanduser()
    try:
        if name == "FakeData":
            dataset = factory(size=FAKE_SIZE, image_size=(3, data.image_size, data.image_size), random_offset=0)
        else:
            try:
                dataset = factory(str(root), train=True, download=True)
            except TypeError:  # SVHN, CelebA, ... name their split instead
                dataset = factory(str(root), split="train", download=True)
    except Exception as err:  # no network, bad checksum, ...
        raise ConfigError(
            "data.dataset",
            f"torchvision:{name}",
            f"a dataset torchvision can load into {root}, which needs its files there or a download ({_one_line(err)})",
        ) from None
    return np.stack([prepare(dataset[i][0], data) for i in range(len(dataset))])


def main(name: str, data_json: str, out: str) -> None:
    data = DataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(data_json).items()})
    try:
        np.save(out, decode(name, data))
    except ConfigError as err:
        Path(out).with_suffix(".error.json").write_text(
            json.dumps({"key": err.key, "value": err.value, "valid": err.valid})
        )


if __name__ == "__main__":
    main(*sys.argv[1:])

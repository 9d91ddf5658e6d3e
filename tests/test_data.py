"""The dataset spec: every source ends as uint8 images at the model's size, batches in [-1, 1]."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import data as data_module
from common.config import DataConfig
from common.data import InMemoryDataset, StreamingFolder, load_dataset, read_idx
from common.errors import ConfigError
from common.images import FAKE_SIZE, to_model_range, to_uint8

FASHION = Path("/usr/share/datasets/fashion-mnist")
ROOT = Path(__file__).resolve().parents[1]


def spec(dataset: str, size: int = 28, channels: int = 1, **kw) -> DataConfig:
    return DataConfig(dataset=dataset, image_size=size, channels=channels, **kw)


def write_idx(path: Path, images: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, images.ndim) + struct.pack(f">{images.ndim}I", *images.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())


def test_idx_files_are_read_and_resized(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    assert np.array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), images)
    same = load_dataset(spec("fashion-mnist", data_dir=str(tmp_path)))
    assert isinstance(same, InMemoryDataset) and np.array_equal(same.images[:, 0], images)
    rgb64 = load_dataset(spec("mnist", 64, 3, data_dir=str(tmp_path)))
    assert rgb64.images.shape == (5, 3, 64, 64)
    assert np.array_equal(rgb64.images[:, 0], rgb64.images[:, 2])  # grey replicated to RGB
    batch = rgb64.batch(np.array([4, 0]))
    assert batch.shape == (2, 3, 64, 64) and batch.dtype == np.float32 and -1 <= batch.min() and batch.max() <= 1


def test_real_fashion_mnist_from_the_debian_package():
    # `make test` installs the package (as `make demo` does), so its absence is a failure here.
    assert FASHION.exists(), f"{FASHION} is missing: Debian's dataset-fashion-mnist is not installed (make setup)"
    dataset = load_dataset(spec("fashion-mnist"))
    assert dataset.images.shape == (60_000, 1, 28, 28)
    assert dataset.images.mean() > 50  # garments on black: not an empty or garbled read


def test_missing_idx_folder_names_the_folder(tmp_path):
    with pytest.raises(ConfigError, match=f"data.data_dir='{tmp_path}'.*train-images-idx3-ubyte"):
        load_dataset(spec("fashion-mnist", data_dir=str(tmp_path)))


def test_pixel_ranges_round_trip():
    pixels = np.arange(256, dtype=np.uint8)
    scaled = to_model_range(pixels)
    assert scaled.min() == -1 and scaled.max() == 1 and np.array_equal(to_uint8(scaled), pixels)


def _write_images(folder: Path, sizes, mode="RGB") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i, (w, h) in enumerate(sizes):
        shape = (h, w, 3) if mode == "RGB" else (h, w)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"img{i}.png")


def test_image_folder_is_cropped_and_resized(tmp_path):
    _write_images(tmp_path / "faces" / "sub", [(40, 30), (32, 32), (100, 50)])
    dataset = load_dataset(spec(str(tmp_path / "faces"), 32, 3))
    assert dataset.images.shape == (3, 3, 32, 32)
    grey = load_dataset(spec(str(tmp_path / "faces"), 16, 1, center_crop=30))
    assert grey.images.shape == (3, 1, 16, 16)


def test_a_wide_image_keeps_its_middle_and_a_crop_its_centre(tmp_path):
    """Which pixels land where: a 96x32 image of three 32x32 squares (red, green, blue) resized
    to 32 keeps the green middle whole (shorter side to 32, then the centre 32x32); a 64x64
    image with a 16x16 white centre, cropped to the centre 32x32 and resized to 16, has that
    square in its middle 8x8 and black at its border."""
    wide = np.zeros((32, 96, 3), np.uint8)
    wide[:, :32, 0] = wide[:, 32:64, 1] = wide[:, 64:, 2] = 255
    (tmp_path / "wide").mkdir()
    Image.fromarray(wide).save(tmp_path / "wide" / "rgb.png")
    (image,) = load_dataset(spec(str(tmp_path / "wide"), 32, 3)).images
    assert (image[1] == 255).all() and (image[0] == 0).all() and (image[2] == 0).all()

    centred = np.zeros((64, 64, 3), np.uint8)
    centred[24:40, 24:40] = 255
    (tmp_path / "centred").mkdir()
    Image.fromarray(centred).save(tmp_path / "centred" / "c.png")
    (grey,) = load_dataset(spec(str(tmp_path / "centred"), 16, 1, center_crop=32)).images
    assert grey.shape == (1, 16, 16)
    assert (grey[0, 5:11, 5:11] == 255).all()  # the square (8x8 after halving), bar its blended edge
    assert (grey[0, [0, -1], :] == 0).all() and (grey[0, :, [0, -1]] == 0).all()


def test_center_crop_takes_the_middle(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = 255  # a white square in the middle
    (tmp_path / "one").mkdir()
    Image.fromarray(image).save(tmp_path / "one" / "a.png")
    dataset = load_dataset(spec(str(tmp_path / "one"), 32, 3, center_crop=32))
    assert dataset.images.min() == 255


def test_streaming_folder_gives_the_same_batches(tmp_path, monkeypatch):
    _write_images(tmp_path / "imgs", [(48, 48)] * 4)
    in_memory = load_dataset(spec(str(tmp_path / "imgs"), 32, 3))
    monkeypatch.setattr(data_module, "MEMORY_FRACTION", 0.0)
    streaming = load_dataset(spec(str(tmp_path / "imgs"), 32, 3))
    assert isinstance(streaming, StreamingFolder) and len(streaming) == 4
    indices = np.array([3, 1])
    assert np.array_equal(streaming.batch(indices), in_memory.batch(indices))


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="an existing folder of images"):
        load_dataset(spec(str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"a folder with images \(.png"):
        load_dataset(spec(str(tmp_path / "empty")))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ConfigError, match="broken.png.*a readable image file"):
        load_dataset(spec(str(tmp_path / "bad")))


def test_unknown_dataset_lists_the_sources():
    with pytest.raises(ConfigError, match="data.dataset='imagenet'.*fashion-mnist, mnist, fake, tfds:NAME"):
        load_dataset(spec("imagenet"))


def test_fake_images_follow_the_seed():
    a, b, c = (load_dataset(spec("fake", 32, 3), seed=s) for s in (0, 0, 1))
    assert a.images.shape == (FAKE_SIZE, 3, 32, 32)
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)


def test_tensorflow_datasets_offline_with_mock_data(tmp_path):
    """The child process's decoding, under tfds's offline mock (which works in-process only)."""
    code = (
        "import numpy as np, tensorflow_datasets as tfds\n"
        "from common.catalogue import decode\n"
        "from common.config import DataConfig\n"
        "with tfds.testing.mock_data(num_examples=12):\n"
        "    images = decode('tfds:mnist', DataConfig(dataset='tfds:mnist', image_size=32, channels=3))\n"
        f"np.save({str(tmp_path / 'x.npy')!r}, images)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT)
    images = np.load(tmp_path / "x.npy")
    assert images.shape == (12, 3, 32, 32) and images.dtype == np.uint8


def test_torchvision_datasets_offline_with_fake_data():
    """Through the child process, as training loads a catalogue."""
    dataset = load_dataset(spec("torchvision:FakeData", 28, 1))
    assert dataset.images.shape == (FAKE_SIZE, 1, 28, 28)
    with pytest.raises(ConfigError, match="torchvision:NoSuchSet.*a class of torchvision.datasets"):
        load_dataset(spec("torchvision:NoSuchSet"))

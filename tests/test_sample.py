"""`dcgan sample` with more images than a grid can show: the grid holds the first 256 (16 x 16)
and says so, --npz holds every image, and G, run 256 latent vectors at a time, draws the same
images as in one call. From a 1-iteration mnist28 run with tiny networks, on torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.sample import GRID_MAX

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(dcgan, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "run"
    tiny = ["--set", "model.ngf=4", "--set", "model.ndf=4", "--batch-size", "8"]
    dcgan(
        "train",
        "--backend",
        "torch",
        "--preset",
        "mnist28",
        "--dataset",
        "fake",
        "--steps",
        "1",
        *tiny,
        "--no-progress",
        "--out",
        str(out),
    )
    return out


def test_the_grid_shows_the_first_256_and_the_npz_every_image(dcgan, run_dir, tmp_path):
    n = GRID_MAX + 4
    done = dcgan(
        "sample",
        "--checkpoint",
        str(run_dir),
        "--n",
        str(n),
        "--out",
        str(tmp_path / "grid.png"),
        "--npz",
        str(tmp_path / "all.npz"),
    )
    assert f"the grid shows the first {GRID_MAX} of {n} images" in done.stdout
    arrays = np.load(tmp_path / "all.npz")
    assert arrays["images"].shape == (n, 1, 28, 28) and arrays["z"].shape[0] == n
    # 16 x 16 tiles of 28 + 2 pixels of padding, plus the last padding, enlarged twice (28 -> 56)
    assert Image.open(tmp_path / "grid.png").size == (2 * (16 * 30 + 2),) * 2

    few = dcgan(
        "sample",
        "--checkpoint",
        str(run_dir),
        "--n",
        "4",
        "--out",
        str(tmp_path / "few.png"),
        "--npz",
        str(tmp_path / "few.npz"),
    )
    assert "the grid shows" not in few.stdout
    assert Image.open(tmp_path / "few.png").size == (2 * (2 * 30 + 2),) * 2
    first = np.load(tmp_path / "few.npz")
    np.testing.assert_array_equal(first["z"], arrays["z"][:4])  # the same seed draws the same first vectors
    np.testing.assert_allclose(first["images"], arrays["images"][:4], atol=1e-6)

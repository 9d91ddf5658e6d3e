"""Where `dcgan eval`'s feature network comes from, and Fashion-MNIST as it sees it.

The network is pytorch_impl/features.py's classifier. Its weights are, in this order: the
file given with --weights; the copy committed beside this module (trained by `dcgan eval
train-features --seed 0`); one cached in the user's cache directory; or, failing those, it
is trained on first use (a few minutes on a CPU, with a progress bar and a line saying so)
and cached. Every weight file carries the SHA-256 of its tensors in its metadata, checked
when it is opened, and the committed copy's hash is also pinned here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import checkpoint
from common.data import IDX_DATASETS, idx_file, read_idx
from common.errors import ConfigError
from common.images import to_model_range

COMMITTED = Path(__file__).with_name("fashion_mnist_features.safetensors")
COMMITTED_SHA256 = "e3d4f51ab714fadc8572e793610b49b6be9bb3efa9ebb00fdde59d2a252572ae"  # its checkpoint.content_sha256
DEFAULT_SEED = 0
DEFAULT_EPOCHS = 10
MIN_TEST_ACCURACY = 0.92
LABEL = "FD (Fashion-MNIST features)"  # never "FID": these are not Inception features


def cache_dir() -> Path:
    """$DCGAN_CACHE_DIR, or dcgan-suite/ in the user's cache directory ($XDG_CACHE_HOME or ~/.cache)."""
    if os.environ.get("DCGAN_CACHE_DIR"):
        return Path(os.environ["DCGAN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcgan-suite"


def cached_file(seed: int) -> Path:
    return cache_dir() / f"fashion_mnist_features-seed{seed}.safetensors"


def fashion_mnist(split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's `split` ("train" or "t10k") as (N, 1, 28, 28) float32 in [-1, 1] and
    (N,) int64 labels, from the IDX files (Debian's dataset-fashion-mnist by default)."""
    folder = Path(data_dir or IDX_DATASETS["fashion-mnist"]).expanduser()
    found = {}
    for kind, suffix in (("images", "idx3"), ("labels", "idx1")):
        stem = f"{split}-{kind}-{suffix}-ubyte"
        path = idx_file(folder, stem)
        if path is None:
            raise ConfigError(
                "data.data_dir",
                str(folder),
                f"a folder holding Fashion-MNIST's {stem}.gz (install Debian's dataset-fashion-mnist: `make setup`)",
            )
        found[kind] = read_idx(path)
    return to_model_range(found["images"][:, None]), found["labels"].astype(np.int64)


def save_weights(path: Path, state: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Writes the weights with their hash, atomically (common.checkpoint.write_atomically)."""
    checkpoint.write_atomically(path, state, {**metadata, "sha256": checkpoint.content_sha256(state)})


def load_weights(path: Path, pinned: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A weight file's tensors and metadata, refused by name when its tensors do not match the
    hash it carries (or `pinned`)."""
    state, metadata = checkpoint.read_file(
        path, "--weights", "an existing feature-network weight file", "a safetensors weight file"
    )
    found = checkpoint.content_sha256(state)
    expected = pinned or metadata.get("sha256")
    if found != expected:
        raise ConfigError(
            "--weights",
            str(path),
            f"a file whose tensors hash to {expected} (they hash to {found}: corrupt or altered)",
        )
    return state, metadata


def train_features(
    seed: int = DEFAULT_SEED, out: Path | None = None, epochs: int = DEFAULT_EPOCHS, progress: bool = True
) -> Path:
    """Trains the feature network on Fashion-MNIST's training set, checks it on the test set,
    and writes it (default: the cache); refuses a network below MIN_TEST_ACCURACY."""
    from pytorch_impl import features as network

    images, labels = fashion_mnist("train")
    test_images, test_labels = fashion_mnist("t10k")
    with tqdm(total=epochs * len(images), unit="img", disable=not progress, desc="feature network") as bar:
        state = network.train_classifier(images, labels, seed, epochs=epochs, progress=bar.update)
    _, logits = network.features_and_logits(network.load(state), test_images)
    accuracy = float(np.mean(logits.argmax(axis=1) == test_labels))
    if accuracy < MIN_TEST_ACCURACY:
        raise ConfigError(
            "--epochs",
            epochs,
            f"enough passes for {MIN_TEST_ACCURACY:.0%} test accuracy (seed {seed} reached {accuracy:.2%}; "
            "nothing was written)",
        )
    path = out or cached_file(seed)
    metadata = {"network": "pytorch_impl.features.FeatureNet", "seed": str(seed), "epochs": str(epochs)}
    save_weights(path, state, {**metadata, "test_accuracy": f"{accuracy:.4f}"})
    return path


def feature_weights(weights: Path | None = None, progress: bool = True) -> tuple[dict[str, np.ndarray], dict, Path]:
    """The feature network's weights and metadata, and the file they came from: --weights,
    the committed copy, the cache, or trained now (and cached)."""
    if weights is not None:
        return (*load_weights(weights), weights)
    if COMMITTED.exists():
        return (*load_weights(COMMITTED, COMMITTED_SHA256), COMMITTED)
    path = cached_file(DEFAULT_SEED)
    if not path.exists():
        print(f"dcgan eval: training the feature network once (cached in {path})", file=sys.stderr)
        train_features(DEFAULT_SEED, path, progress=progress)
    return (*load_weights(path), path)

"""Where `dcgan eval`'s feature network's weights come from, and Fashion-MNIST as it sees it.

The network is described in common/quality/network.py and trained in PyTorch
(pytorch_impl/features.py). Its weights are, in this order: the file given with --weights;
the copy committed beside this module (trained by `dcgan eval train-features --seed 0`); one
cached in the user's cache directory; or, failing those, it is trained on first use (a few
minutes on a CPU, with a progress bar and a line saying so; PyTorch needed) and cached. Every
weight file carries the SHA-256 of its tensors in its metadata, checked when it is opened,
and the committed copy's hash is also pinned here. Files that name the tensors as PyTorch
did before the network had a spec are read through common.quality.network.EARLIER_NAMES.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import checkpoint
from common.data import IDX_DATASETS, idx_file, read_idx
from common.errors import ConfigError
from common.images import to_model_range
from common.quality.network import canonical_state

COMMITTED = Path(__file__).with_name("fashion_mnist_features.safetensors")
COMMITTED_SHA256 = "c4a817ffc29e71d16753d1f46a119f1cc36922e97d2ce097a715dd442581a9ec"  # its checkpoint.content_sha256
TRAINER = "pytorch_impl.features"  # the module that trains the network (PyTorch's), imported when asked to
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
    """A weight file's tensors, under their canonical names, and its metadata; refused by name
    when its tensors do not match the hash it carries (or `pinned`), or are not the network's."""
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
    weights = canonical_state(state)
    if weights is None:
        raise ConfigError(
            "--weights",
            str(path),
            "the Fashion-MNIST feature network's weights (common/quality/network.py: features.conv1.weight, ...); "
            "make a file of them with `dcgan eval train-features --out FILE`",
        )
    return weights, metadata


def trainer():
    """The module that trains the network, pytorch_impl.features; refused by name without PyTorch."""
    try:
        return importlib.import_module(TRAINER)
    except ImportError as err:
        raise ConfigError(
            "train-features",
            "torch",
            f"an installed PyTorch ({err}), which trains the feature network; "
            "install it with: pip install -e '.[torch]'",
        ) from None


def train_features(
    seed: int = DEFAULT_SEED, out: Path | None = None, epochs: int = DEFAULT_EPOCHS, progress: bool = True
) -> Path:
    """Trains the feature network on Fashion-MNIST's training set, checks it on the test set,
    and writes it (default: the cache); refuses a network below MIN_TEST_ACCURACY."""
    network = trainer()
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
    metadata = {"network": "common.quality.network.SPEC", "seed": str(seed), "epochs": str(epochs)}
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

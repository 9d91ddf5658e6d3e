"""`dcgan eval`: a checkpoint's sample quality in the feature network's space, with the two
reference points that say what its numbers mean.

The scores compare n generated images (G in eval mode, on any backend; its moving average
where the run kept one, unless `--generator raw`: common/sample.py) with Fashion-MNIST's
10,000 test images: FD with a bootstrap interval, KID, precision / recall / density /
coverage (k = 5), and the classifier's histogram of the samples. Printed with them:

- real vs real: n training images against the same test images, the floor a perfect
  generator reaches at this n;
- a freshly initialised generator of the same config on the same backend, the ceiling.

One backend does both the sampling and the feature network (each build's features.py, reached
through its `Backend.feature_network`), so `dcgan eval` needs one framework, any of the five.
Inception-v3 alone is PyTorch's (pytorch_impl/inception.py, the `inception` extra).

Images of another size or channel count (dcgan64 trained on Fashion-MNIST) are compared as
the network sees them: channels averaged to grey, resized to 28 x 28.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from common import checkpoint, sample
from common.algorithm import latent
from common.backends import BACKENDS, installed, load_backend
from common.config import Config
from common.errors import ConfigError
from common.memory import check_images
from common.quality import metrics
from common.quality.features import LABEL, cache_dir, fashion_mnist, feature_weights

DEFAULT_N = 10_000
K = 5  # PRDC's nearest neighbours
MIN_N = K + 2  # images in each set: a point's K-th neighbour other than itself needs K + 1 others
FEATURES = ("fashion-mnist", "inception")
INCEPTION = "pytorch_impl.inception"  # Inception-v3's module, PyTorch's: imported only for --features inception


@dataclass
class FeatureSpace:
    """A feature network, loaded, and the real images' features its samples are compared with."""

    label: str  # the Fréchet distance's name in this space
    source: Path  # the network's weight file
    real_name: str  # what the real images are
    real: np.ndarray  # the real images' features
    labels: np.ndarray | None  # their classes, where the network classifies (the class histogram)
    radii: np.ndarray  # the real features' k-nearest-neighbour radii (PRDC's real manifold)
    statistics: metrics.Statistics  # the real features' mean and covariance

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(features, predicted classes or None) of (N, C, H, W) images in [-1, 1]."""
        raise NotImplementedError

    def floor(self, n: int) -> np.ndarray:
        """Features of n real images other than `real`: the real-vs-real floor at n."""
        raise NotImplementedError

    def scores(self, features: np.ndarray, classes: np.ndarray | None, seed: int = 0) -> dict:
        """Every score of `features` against the real features, `classes` their predicted classes."""
        rng = np.random.default_rng(seed)
        fd = metrics.frechet_distance(self.statistics, metrics.Statistics.of(features))
        low, high = metrics.bootstrap_fd(self.statistics, features, rng)
        kid, kid_std = metrics.kid(self.real, features, rng)
        found = {"fd": fd, "fd_low": low, "fd_high": high, "kid": kid, "kid_std": kid_std}
        found.update(metrics.prdc(self.real, features, K, self.radii))
        if classes is not None and self.labels is not None:
            histogram = metrics.class_histogram(classes, self.labels)
            found.update(
                classes_covered=histogram["covered"], class_kl=histogram["kl"], class_counts=histogram["counts"]
            )
        found["n"] = int(len(features))
        return found


FeatureNetwork = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # images -> (features, logits)


@dataclass
class FashionMnistSpace(FeatureSpace):
    """The suite's classifier (common/quality/network.py) against Fashion-MNIST's test images."""

    network: FeatureNetwork | None = None  # a backend's Backend.feature_network

    @classmethod
    def load(cls, backend: str, weights: Path | None = None, progress: bool = True) -> FashionMnistSpace:
        """The network on `backend` and the test images' features, kept for the process (a
        training run with --eval-every, or a script scoring many checkpoints, reuses them) and
        cached on disk across processes (_test_set_features)."""
        key = f"{weights}|{backend}"
        if key not in _LOADED:
            state, _, source = feature_weights(weights, progress)
            network = load_backend(backend).feature_network(state)
            images, labels = fashion_mnist("t10k")
            found = _test_set_features(network, f"{checkpoint.content_sha256(state)}|{backend}", images)
            _LOADED[key] = cls(
                LABEL,
                source,
                "Fashion-MNIST's 10,000 test images",
                found["features"],
                labels,
                found["radii"],
                metrics.Statistics.of(found["features"]),
                network=network,
            )
        return _LOADED[key]

    def floor(self, n: int) -> np.ndarray:
        """Features of n training images, a seeded random subset."""
        images, _ = fashion_mnist("train")
        pick = np.random.default_rng(0).permutation(len(images))[:n]
        return self.embed(images[pick])[0]

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found, logits = self.network(as_fashion_mnist(images))
        return found, logits.argmax(axis=1)


@dataclass
class InceptionSpace(FeatureSpace):
    """Inception-v3's pool features (pytorch_impl/inception.py), from a local weight file,
    against n images of the model's own dataset: FID, for any dataset."""

    model: object = None
    floor_images: np.ndarray | None = None  # n further images of the dataset
    progress: bool = True

    @classmethod
    def load(cls, weights: Path | None, config: Config, n: int, progress: bool = True) -> InceptionSpace:
        """The network, and the features of n images of config's dataset (at most half of it:
        the other half is the floor's), a seeded random subset."""
        from common.data import load_dataset

        inception = _inception()
        if weights is None:
            raise ConfigError(
                "--weights", None, f"with --features inception, a local weight file: {inception.EXPECTED}"
            )
        model = inception.load(weights)
        dataset = load_dataset(config.data, config.seed)
        m = min(n, len(dataset) // 2)
        if m < MIN_N:
            raise ConfigError("data.dataset", config.data.dataset, f"a dataset of at least {2 * MIN_N} images")
        pick = np.random.default_rng(0).permutation(len(dataset))[: 2 * m]
        real = _inception_features(model, dataset.batch(np.sort(pick[:m])), progress)
        return cls(
            f"FID (Inception-v3 features, {weights.name})",
            weights,
            f"{m} images of {config.data.dataset}",
            real,
            None,
            metrics.real_radii(real, K),
            metrics.Statistics.of(real),
            model=model,
            floor_images=dataset.batch(np.sort(pick[m:])),
            progress=progress,
        )

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, None]:
        return _inception_features(self.model, images, self.progress), None

    def floor(self, n: int) -> np.ndarray:
        return self.embed(self.floor_images[:n])[0]


_LOADED: dict[str, FeatureSpace] = {}


def _inception():
    """pytorch_impl/inception.py, refused by name where PyTorch or torch-fidelity is missing."""
    try:
        return importlib.import_module(INCEPTION)
    except ImportError as err:
        raise ConfigError(
            "--features",
            "inception",
            f"PyTorch and torch-fidelity installed ({err}), which compute Inception-v3's features; "
            "install them with: pip install -e '.[inception]'",
        ) from None


def _inception_features(model, images: np.ndarray, progress: bool) -> np.ndarray:
    with tqdm(total=len(images), unit="img", desc="Inception-v3", disable=not progress) as bar:
        return _inception().features(model, images, progress=bar.update)


def _test_set_features(network: FeatureNetwork, source: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """The test images' features, predicted classes and PRDC radii, cached on disk (the cache
    directory of common.quality.features) under the hash of `source` (the weights and the
    backend that computes them), the images and K: they take seconds to compute and every
    `dcgan eval` or scored training run needs the same ones."""
    key = hashlib.sha256(f"{source}|{checkpoint.content_sha256({'images': images})}|k={K}".encode()).hexdigest()
    path = cache_dir() / f"fashion_mnist_t10k_features-{key[:16]}.safetensors"
    if path.exists():
        try:
            found, metadata = checkpoint.read_file(path, "cache", "a cached feature file", "a safetensors file")
            if metadata.get("key") == key and set(found) == {"features", "classes", "radii"}:
                return found
        except ConfigError:
            pass  # unreadable: computed again and rewritten below
    features, logits = network(images)
    found = {"features": features, "classes": logits.argmax(axis=1), "radii": metrics.real_radii(features, K)}
    checkpoint.write_atomically(path, found, {"key": key})
    return found


def as_fashion_mnist(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] -> (N, 1, 28, 28): channels averaged, bilinear resize."""
    x = np.asarray(images, dtype=np.float32).mean(axis=1, keepdims=True)
    if x.shape[2:] == (28, 28):
        return x
    return np.stack(
        [np.asarray(Image.fromarray(a[0]).resize((28, 28), Image.Resampling.BILINEAR))[None] for a in x]
    ).astype(np.float32)


def check_dataset(config: Config, features: str) -> None:
    """Fashion-MNIST features judge only a model of Fashion-MNIST; Inception's judge any."""
    if features not in FEATURES:
        raise ConfigError("--features", features, "one of " + ", ".join(FEATURES))
    if features == "fashion-mnist" and config.data.dataset != "fashion-mnist":
        raise ConfigError(
            "data.dataset",
            config.data.dataset,
            f"fashion-mnist: {LABEL} compares samples with Fashion-MNIST's test set, so it scores only models "
            "of Fashion-MNIST (for another dataset: dcgan eval --features inception --weights FILE)",
        )


def generate(trainer, config: Config, n: int, seed: int, averaged: bool = False) -> np.ndarray:
    """n images from the trainer's G (`averaged`: its moving average) in eval mode, from latent
    vectors drawn with `seed`."""
    return sample.generate(trainer, latent(config, n, np.random.default_rng(seed)), averaged)


def evaluate(
    trainer, config: Config, space: FeatureSpace, n: int = DEFAULT_N, seed: int = 0, averaged: bool = False
) -> dict:
    """The scores of the trainer's generator (`averaged`: its moving average): n samples
    against the real images (the callers, `dcgan eval` and `train --eval-every`, have checked
    the model's dataset with check_dataset)."""
    return space.scores(*space.embed(generate(trainer, config, n, seed, averaged)), seed=seed)


def references(space: FeatureSpace, fresh_trainer, config: Config, n: int = DEFAULT_N, seed: int = 0) -> dict:
    """The two reference points at the same n: n other real images against the real ones, and a
    freshly initialised generator (FD's bias grows as n shrinks, so the floor is n's own)."""
    return {
        "real_vs_real": space.scores(space.floor(n), None, seed),
        "fresh_generator": evaluate(fresh_trainer, config, space, n, seed),
    }


def evaluate_checkpoint(
    path: Path,
    backend: str | None = None,
    n: int = DEFAULT_N,
    seed: int = 0,
    weights: Path | None = None,
    features: str = "fashion-mnist",
    progress: bool = True,
    generator: str | None = None,
) -> dict:
    """`dcgan eval`: a checkpoint (file or run directory) sampled on `backend`, whose build of
    the feature network also computes the features (default: `default_backend`), scored, with
    the reference points. `generator` ("ema" or "raw"; default the moving average where the
    checkpoint keeps one) is what is scored, as common.sample.use_average reads it."""
    from common.rundir import open_checkpoint

    if n < MIN_N:
        raise ConfigError("--n", n, f"at least {MIN_N}: precision, recall, density and coverage use {K} neighbours")
    arrays, metadata, config = open_checkpoint(path)
    averaged = sample.use_average(config, generator)
    check_dataset(config, features)
    check_images(config, n)
    backend = backend or default_backend(sample.source_backend(metadata))
    if features == "inception":
        space = InceptionSpace.load(weights, config, n, progress)
    else:
        space = FashionMnistSpace.load(backend, weights, progress)
    loaded = load_backend(backend)
    trainer = loaded.trainer(config)
    trainer.load_state_dict(arrays)
    found = {"checkpoint": str(path), "backend": backend, "step": int(metadata.get("step", 0))}
    found.update(generator="ema" if averaged else "raw", generator_name=sample.generator_name(config, averaged))
    found.update(features=space.label, feature_weights=str(space.source), real=space.real_name)
    found.update(evaluate(trainer, config, space, n, seed, averaged))
    found["reference"] = references(space, loaded.trainer(config), config, n, seed)
    return found


def default_backend(writer: str) -> str:
    """The backend `dcgan eval` runs on unless told: `writer`, the one that wrote the
    checkpoint, where it is installed, else the first installed one of BACKENDS (said on
    stderr, since the user did not choose it; the report names the backend either way)."""
    if installed(writer):
        return writer
    chosen = next((name for name in BACKENDS if installed(name)), None)
    if chosen is None:
        raise ConfigError("--backend", None, "an installed backend, one of " + ", ".join(BACKENDS))
    print(
        f"dcgan eval: sampling and computing features on {chosen} (the first one installed; "
        f"{writer}, which wrote the checkpoint, is not; choose with --backend)",
        file=sys.stderr,
    )
    return chosen

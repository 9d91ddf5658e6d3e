"""`dcgan eval`: a checkpoint's sample quality in the feature network's space, with the two
reference points that say what its numbers mean.

The scores compare n generated images (G in eval mode, on any backend) with Fashion-MNIST's
10,000 test images: FD with a bootstrap interval, KID, precision / recall / density /
coverage (k = 5), and the classifier's histogram of the samples. Printed with them:
- real vs real: n training images against the same test images, the floor a perfect
  generator reaches at this n;
- a freshly initialised generator of the same config on the same backend, the ceiling.
Images of another size or channel count (dcgan64 trained on Fashion-MNIST) are compared as
the network sees them: channels averaged to grey, resized to 28 x 28.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common import sample
from common.algorithm import latent
from common.backends import load_backend
from common.config import Config
from common.errors import ConfigError
from common.quality import metrics
from common.quality.features import LABEL, fashion_mnist, feature_weights

DEFAULT_N = 10_000
K = 5  # PRDC's nearest neighbours
FEATURES = ("fashion-mnist",)


@dataclass
class FeatureSpace:
    """The feature network, loaded, and the real images' features it is compared against."""

    model: object
    source: Path
    test: tuple[np.ndarray, np.ndarray, np.ndarray]  # features, predicted classes, labels
    radii: np.ndarray  # the test features' k-nearest-neighbour radii (PRDC's real manifold)
    statistics: metrics.Statistics  # the test features' mean and covariance

    @classmethod
    def load(cls, weights: Path | None = None, progress: bool = True) -> FeatureSpace:
        """The network and the test images' features, computed once per process and kept (a
        training run with --eval-every, or a script scoring many checkpoints, reuses them)."""
        if str(weights) not in _LOADED:
            from pytorch_impl import features as network

            state, _, source = feature_weights(weights, progress)
            model = network.load(state)
            images, labels = fashion_mnist("t10k")
            features, logits = network.features_and_logits(model, images)
            test = (features, logits.argmax(axis=1), labels)
            radii, statistics = metrics.real_radii(features, K), metrics.Statistics.of(features)
            _LOADED[str(weights)] = cls(model, source, test, radii, statistics)
        return _LOADED[str(weights)]

    def training_images(self, n: int) -> np.ndarray:
        """Features of n training images, a seeded random subset: the real-vs-real floor."""
        images, _ = fashion_mnist("train")
        pick = np.random.default_rng(0).permutation(len(images))[:n]
        return self.embed(images[pick])[0]

    def embed(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features, predicted classes) of (N, C, H, W) images in [-1, 1]."""
        from pytorch_impl import features as network

        found, logits = network.features_and_logits(self.model, as_fashion_mnist(images))
        return found, logits.argmax(axis=1)

    def scores(self, features: np.ndarray, classes: np.ndarray | None, seed: int = 0) -> dict:
        """Every score of `features` against the test set's, `classes` their predicted classes."""
        real, _, labels = self.test
        rng = np.random.default_rng(seed)
        fd = metrics.frechet_distance(self.statistics, metrics.Statistics.of(features))
        low, high = metrics.bootstrap_fd(self.statistics, features, rng)
        kid, kid_std = metrics.kid(real, features, rng)
        found = {"fd": fd, "fd_low": low, "fd_high": high, "kid": kid, "kid_std": kid_std}
        found.update(metrics.prdc(real, features, K, self.radii))
        if classes is not None:
            histogram = metrics.class_histogram(classes, labels)
            found.update(
                classes_covered=histogram["covered"], class_kl=histogram["kl"], class_counts=histogram["counts"]
            )
        found["n"] = int(len(features))
        return found


_LOADED: dict[str, FeatureSpace] = {}


def as_fashion_mnist(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images in [-1, 1] -> (N, 1, 28, 28): channels averaged, bilinear resize."""
    x = np.asarray(images, dtype=np.float32).mean(axis=1, keepdims=True)
    if x.shape[2:] == (28, 28):
        return x
    return np.stack(
        [np.asarray(Image.fromarray(a[0]).resize((28, 28), Image.Resampling.BILINEAR))[None] for a in x]
    ).astype(np.float32)


def check_dataset(config: Config, features: str) -> None:
    """Fashion-MNIST features judge only a model of Fashion-MNIST."""
    if features not in FEATURES:
        raise ConfigError("--features", features, "one of " + ", ".join(FEATURES))
    if config.data.dataset != "fashion-mnist":
        raise ConfigError(
            "data.dataset",
            config.data.dataset,
            f"fashion-mnist: {LABEL} compares samples with Fashion-MNIST's test set, so it scores only models "
            "of Fashion-MNIST",
        )


def generate(trainer, config: Config, n: int, seed: int) -> np.ndarray:
    """n images from the trainer's G in eval mode, from latent vectors drawn with `seed`."""
    return sample.generate(trainer, latent(config, n, np.random.default_rng(seed)))


def evaluate(trainer, config: Config, space: FeatureSpace, n: int = DEFAULT_N, seed: int = 0) -> dict:
    """The scores of the trainer's generator: n samples against the test set (the callers,
    `dcgan eval` and `train --eval-every`, have checked the model's dataset with check_dataset)."""
    return space.scores(*space.embed(generate(trainer, config, n, seed)), seed=seed)


def references(space: FeatureSpace, fresh_trainer, config: Config, n: int = DEFAULT_N, seed: int = 0) -> dict:
    """The two reference points at the same n: n training images against the test set, and a
    freshly initialised generator (FD's bias grows as n shrinks, so the floor is n's own)."""
    return {
        "real_vs_real": space.scores(space.training_images(n), None, seed),
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
) -> dict:
    """`dcgan eval`: a checkpoint (file or run directory) sampled on `backend` (default: the
    one that wrote it), scored, with the reference points."""
    from common.rundir import open_checkpoint

    arrays, metadata, config = open_checkpoint(path)
    check_dataset(config, features)
    backend = backend or sample.source_backend(metadata)
    space = FeatureSpace.load(weights, progress)
    loaded = load_backend(backend)
    trainer = loaded.trainer(config)
    trainer.load_state_dict(arrays)
    found = {"checkpoint": str(path), "backend": backend, "step": int(metadata.get("step", 0)), "features": LABEL}
    found["feature_weights"] = str(space.source)
    found.update(evaluate(trainer, config, space, n, seed))
    found["reference"] = references(space, loaded.trainer(config), config, n, seed)
    return found

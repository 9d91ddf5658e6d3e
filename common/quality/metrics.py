"""Sample-quality scores on feature vectors: numpy and scipy only, float64 throughout.

- Fréchet distance (Heusel et al. 2017, "GANs trained by a two time-scale update rule"): the
  distance between the Gaussians fitted to two sets of features,
  ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))``.
  tr((S1 S2)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the
  symmetric matrix S1^(1/2) S2 S1^(1/2), which has the same eigenvalues as S1 S2 and is
  positive semi-definite, so the trace is real; scipy.linalg.sqrtm on S1 S2 (pytorch-fid's
  way) can return complex values from rounding.
- KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimate of the squared
  MMD with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets.
- Precision, recall, density and coverage (Kynkäänniemi et al. 2019; Naeem et al. 2020), on
  k-nearest-neighbour balls: the `prdc` package's, the authors' own.
- The classifier's class histogram of the samples: mode collapse shows there first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import linalg


@dataclass(frozen=True)
class Statistics:
    """The mean and covariance of a set of feature vectors, in float64."""

    mean: np.ndarray
    cov: np.ndarray
    n: int
    centered: np.ndarray | None = None  # the features less their mean, kept when n <= d (frechet_distance)

    @functools.cached_property
    def root(self) -> np.ndarray:
        """The covariance's square root, kept: the real set's serves every comparison with it."""
        return _psd_sqrt(self.cov)

    @classmethod
    def of(cls, features: np.ndarray) -> Statistics:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"features must be (n >= 2, d), got shape {x.shape}")
        mean = x.mean(axis=0)
        return cls(mean, np.cov(x, rowvar=False), len(x), x - mean if len(x) <= x.shape[1] else None)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The square root of a symmetric positive semi-definite matrix, by its eigenvalues (those
    that rounding makes slightly negative count as zero)."""
    values, vectors = linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: Statistics, b: Statistics) -> float:
    """The Fréchet distance between the Gaussians of two feature sets' statistics.

    Where b has fewer points than dimensions (a few samples of 2048-d Inception features),
    b.cov = Xc^T Xc / (n - 1), so S1^(1/2) S2 S1^(1/2) = Y^T Y with Y = Xc S1^(1/2) / sqrt(n - 1),
    whose non-zero eigenvalues are those of the (n x n) Y Y^T: the same trace, from a small matrix."""
    if b.centered is not None:
        y = b.centered @ a.root / np.sqrt(b.n - 1)
        middle = y @ y.T
    else:
        middle = a.root @ b.cov @ a.root
    trace_sqrt = np.sqrt(np.clip(linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = a.mean - b.mean
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * trace_sqrt)


def bootstrap_fd(
    real: Statistics, fake: np.ndarray, rng: np.random.Generator, rounds: int = 50, level: float = 0.95
) -> tuple[float, float]:
    """A bootstrap interval of the FD against fixed real statistics (the test set is the
    reference, not a sample of it): the generated set resampled with replacement `rounds`
    times, and the central `level` of the resampled FDs placed around the estimate (their
    spread about their median). The raw percentiles would not do: a resample repeats points,
    which adds a bias of its own, so they can lie wholly above the estimate."""
    fd = frechet_distance(real, Statistics.of(fake))
    found = [frechet_distance(real, Statistics.of(fake[rng.integers(0, len(fake), len(fake))])) for _ in range(rounds)]
    tail = (1.0 - level) / 2 * 100
    low, middle, high = np.percentile(found, [tail, 50, 100 - tail])
    return float(fd - (middle - low)), float(fd + (high - middle))


def kid(
    real: np.ndarray, fake: np.ndarray, rng: np.random.Generator, subsets: int = 100, subset_size: int = 1000
) -> tuple[float, float]:
    """KID: the mean and standard deviation over `subsets` random subsets of `subset_size`
    (at most the smaller set's size) of the unbiased squared MMD, cubic polynomial kernel."""
    x, y = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    m = min(subset_size, len(x), len(y))
    d = x.shape[1]
    values = []
    for _ in range(subsets):
        a = x[rng.choice(len(x), m, replace=False)]
        b = y[rng.choice(len(y), m, replace=False)]
        k_aa, k_bb, k_ab = ((a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3)
        within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
        values.append(within - 2 * k_ab.mean())
    return float(np.mean(values)), float(np.std(values))


def real_radii(real: np.ndarray, k: int = 5) -> np.ndarray:
    """Each real point's distance to its k-th nearest real neighbour: the real manifold's balls,
    which depend on the real set alone, so a caller scoring many sample sets computes them once."""
    from prdc.prdc import compute_nearest_neighbour_distances

    return compute_nearest_neighbour_distances(np.asarray(real, dtype=np.float32), k)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, radii: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage with k nearest neighbours: prdc.compute_prdc's
    formulas (Naeem et al. 2020) on the prdc package's distances, with the real set's radii
    given (`real_radii`) rather than recomputed from a (10,000 x 10,000) distance matrix each time."""
    from prdc.prdc import compute_nearest_neighbour_distances, compute_pairwise_distance

    real, fake = np.asarray(real, dtype=np.float32), np.asarray(fake, dtype=np.float32)
    real_balls = real_radii(real, k) if radii is None else radii
    fake_balls = compute_nearest_neighbour_distances(fake, k)
    distance = compute_pairwise_distance(real, fake)  # (real, fake)
    inside_real = distance < real_balls[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((distance < fake_balls[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((distance.min(axis=1) < real_balls).mean()),
    }


def class_histogram(predicted: np.ndarray, reference: np.ndarray, classes: int = 10) -> dict:
    """How the samples spread over the classifier's classes, beside the real balance:
    `covered` counts the classes holding at least a tenth of their real share of the samples,
    and `kl` is KL(samples || real) in nats (finite while every real class occurs)."""
    counts = np.bincount(np.asarray(predicted), minlength=classes)
    real = np.bincount(np.asarray(reference), minlength=classes) / len(reference)
    share = counts / counts.sum()
    live = share > 0
    return {
        "counts": counts.tolist(),
        "covered": int(np.sum(share >= 0.1 * real)),
        "kl": float(np.sum(share[live] * np.log(share[live] / real[live]))),
    }

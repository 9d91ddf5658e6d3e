"""The training algorithm, defined once: Goodfellow et al.'s Algorithm 1 with the DCGAN rules.

Every framework's `train_step` implements exactly this, and `common` feeds it the same
inputs (real batches and noise drawn here, from one seeded generator), so two backends
given the same seed see the same data and the same noise.

One iteration, with k = config.optim.d_steps::

    for j in 0 .. k-1:                                   # k discriminator updates
        fake_j  = G(z_d[j])                              # train mode: G's BN statistics update
        loss_D  = BCE(D(reals[j]), real_label)           # D on the real batch, then ...
                + BCE(D(stop_gradient(fake_j)), 0)       # ... on the fake batch: two forward passes,
                                                         # so BN normalises each batch on its own
        D <- Adam_D(D, grad loss_D)
    fake_G = fake_{k-1}  if g_fake_batch == "reuse"      # pytorch/examples: one G forward serves both
             G(z_g)      if g_fake_batch == "fresh"      # Algorithm 1, the Flux model: new noise
    loss_G = BCE(D(fake_G), 1)                           # non-saturating: G maximises log D(G(z))
    G <- Adam_G(G, grad loss_G)                          # through the updated D, in train mode

BCE is binary cross-entropy on logits, averaged over the batch (the stable form of the
write-ups' Sigmoid + BCELoss). `real_label` < 1 is one-sided label smoothing (D's real
target only). With "reuse", G's BN running statistics are updated by the one forward pass
that made fake_{k-1}, not a second time.

Reported per iteration (as the PyTorch tutorial prints them), from the last D update and
the G update: loss_D, loss_G, D_x = mean sigmoid(D(reals)), D_G_z1 = mean sigmoid(D(fake))
before the D update, D_G_z2 = mean sigmoid(D(fake_G)) after it.

The averaged generator (optim.ema = d > 0): an exponential moving average of G's weights,
kept beside G as a second generator of the same layers, `ema_generator` (EMA_GENERATOR),
as Yazıcı et al. define it ("The Unusual Effectiveness of Averaging in GAN Training",
ICLR 2019)::

    ema_generator <- G                                   # before the first iteration: G's initial weights
    after each iteration's G update:
        ema.p       <- d·ema.p + (1 - d)·G.p             # every parameter: weights, biases, BN scale and offset
        ema.running <- G.running                         # BN running mean and variance: copied

It trains nothing and is never run in train mode: it is what samples, the loop's grids and
its `--eval-every` scores draw from (in eval mode, normalising with the copied statistics)
when a run keeps one; `--generator raw` draws from G instead. Choices, and why:

* BN's running statistics are G's, copied after each update, as StyleGAN2-ADA's training
  loop copies G's buffers into G_ema (Karras et al. 2020, training/training_loop.py):
  statistics averaged over iterations would describe activations that no set of weights
  produced. (BigGAN's `ema` averages them with the weights; Brock et al. 2019.)
* No warm-up: the average starts from G's initial weights, as Yazıcı et al.'s does, rather
  than from a later iteration (BigGAN's `start_itr`) or with a decay ramped up from 0
  (StyleGAN2-ADA's `ema_rampup`). After t iterations the initial weights still weigh d^t:
  0.37 after 1000 iterations at d = 0.999, so a short run wants a smaller d.
* d and 1 - d are Python floats (double precision), each rounded once to the parameters'
  dtype; the update is two multiplications and an addition, in that order, on every
  backend, so that in float64 the backends agree to rounding (common/parity/).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.config import Config

METRICS = ("loss_D", "loss_G", "D_x", "D_G_z1", "D_G_z2")
# The averaged generator's one name: each trainer's attribute (None where the run keeps none),
# each step.py's `update_ema` argument, and its canonical keys' role (common/canonical.py).
EMA_GENERATOR = "ema_generator"
# Which generator draws samples and is scored (--generator): its moving average, or G itself.
GENERATORS = ("ema", "raw")

# Distinct random streams under the run's seed; each draw is a pure function of
# (seed, stream, step), so a resumed run draws what an uninterrupted one would.
_STREAM_D_NOISE, _STREAM_G_NOISE, _STREAM_FIXED_NOISE, _STREAM_DATA_ORDER = 1, 2, 3, 4


def network_seeds(config: Config) -> tuple[int, int]:
    """The seeds of G's and D's initial weights: distinct streams, both from the run's one seed."""
    return 2 * config.seed, 2 * config.seed + 1


def latent(config: Config, shape: int | tuple[int, ...], rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """Latent vectors of batch shape `shape` (an int: that many), from the preset's
    distribution, N(0, 1) or U(-1, 1), as float32 or float64: the one place noise for G is drawn."""
    shape = (*np.atleast_1d(shape).tolist(), config.model.latent_dim)
    if config.model.latent_dist == "uniform":
        return rng.uniform(-1.0, 1.0, shape).astype(dtype)
    return rng.standard_normal(shape, dtype=dtype)


@dataclass(frozen=True)
class IterationNoise:
    z_d: np.ndarray  # (k, N, latent): one batch per discriminator update
    z_g: np.ndarray | None  # (N, latent) for "fresh"; None when G reuses the last D step's fakes

    def rows(self, rows: slice) -> IterationNoise:
        """Only `rows` of each batch: one process's part of the global batch (Trainer.rows)."""
        return IterationNoise(self.z_d[:, rows], None if self.z_g is None else self.z_g[rows])


def iteration_noise(config: Config, step: int, batch_size: int) -> IterationNoise:
    o = config.optim
    d_rng = np.random.default_rng([config.seed, _STREAM_D_NOISE, step])
    z_d = np.stack([latent(config, batch_size, d_rng) for _ in range(o.d_steps)])
    z_g = None
    if o.g_fake_batch == "fresh":
        z_g = latent(config, batch_size, np.random.default_rng([config.seed, _STREAM_G_NOISE, step]))
    return IterationNoise(z_d, z_g)


def fixed_noise(config: Config, n: int = 64) -> np.ndarray:
    """The noise every sample grid of a run is drawn from, so grids show progress, not luck."""
    return latent(config, n, np.random.default_rng([config.seed, _STREAM_FIXED_NOISE]))


def data_order(config: Config, epoch: int, n_examples: int) -> np.ndarray:
    """The permutation of the dataset for one epoch."""
    return np.random.default_rng([config.seed, _STREAM_DATA_ORDER, epoch]).permutation(n_examples)


def bce_with_logits(logits: np.ndarray, target: float) -> float:
    """Mean binary cross-entropy on logits, the stable form: ``max(x, 0) - x·t + log(1 + e^-|x|)``."""
    x = np.asarray(logits, dtype=np.float64)
    return float(np.mean(np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x)))))

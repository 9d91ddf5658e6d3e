"""The training loop, once for every backend: draw an iteration's batches and noise, step,
record. A backend only supplies a `Trainer` (common/trainer.py) whose `train_step` runs one
iteration of common/algorithm.py; how the session starts is the run's `RunStart`
(common/rundir.py), and what happens around each step, logging, grids, scores,
checkpoints, stop signals and divergence, is common/bookkeeping.py's.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from common.algorithm import IterationNoise, data_order, iteration_noise
from common.backends import load_backend
from common.bookkeeping import Bookkeeping
from common.config import Config
from common.data import ImageDataset, load_dataset
from common.errors import ConfigError
from common.rundir import RunStart
from common.trainer import Trainer


@dataclass(frozen=True)
class RunOptions:
    """`dcgan train`'s options for one session: how long the run is, how the backend steps,
    and how often the bookkeeping writes grids, checkpoints and scores."""

    steps: int | None = None  # the run's total iterations; None: from epochs
    epochs: int | None = None  # passes over the dataset; used when steps is None (default 1)
    compile: str | None = None  # one of the backend's COMPILERS (common/backends.py)
    precision: str = "float32"  # one of TRAINING_PRECISIONS
    sample_every: int | None = None  # default: each epoch, and at least 10 grids a run
    checkpoint_every: int = 500
    keep_every: int = 5000  # checkpoints kept besides the latest; 0 keeps only the latest
    progress: bool = True
    eval_every: int | None = None  # iterations between scores (common/quality/), logged in metrics.jsonl
    eval_n: int = 10_000  # generated images each score is computed on
    tensorboard: bool = False  # also write TensorBoard event files (common/tensorboard.py)

    def target(self) -> dict[str, int]:
        """How long the run is asked to be, as run.json records it: {"steps": N} or {"epochs": E}."""
        return {"steps": self.steps} if self.steps is not None else {"epochs": self.epochs or 1}

    def total_steps(self, schedule: Schedule) -> int:
        """The run's total iterations: `steps`, or `epochs` (default 1) passes over the data."""
        total = self.steps if self.steps is not None else (self.epochs or 1) * schedule.iterations_per_epoch
        if total < 1:
            raise ConfigError("--steps", total, "a positive number of iterations")
        return total


@dataclass(frozen=True)
class Schedule:
    """How iterations map onto the data: an iteration takes k batches, an epoch is one pass."""

    batch_size: int
    d_steps: int
    dataset_size: int

    @property
    def iterations_per_epoch(self) -> int:
        return self.dataset_size // (self.batch_size * self.d_steps)

    @classmethod
    def for_dataset(cls, config: Config, dataset_size: int, devices: int = 1) -> Schedule:
        """The schedule of `config` on a dataset of `dataset_size` images, which must hold at
        least one iteration's batches; on `devices` data-parallel devices a batch is the
        global one, devices x optim.batch_size."""
        o = config.optim
        schedule = cls(o.batch_size * devices, o.d_steps, dataset_size)
        if schedule.iterations_per_epoch < 1:
            raise ConfigError(
                "data.dataset",
                config.data.dataset,
                f"at least {'devices x ' if devices > 1 else ''}batch_size x d_steps = "
                f"{schedule.batch_size * o.d_steps} images (it has {dataset_size})",
            )
        return schedule

    def batch_indices(self, config: Config, step: int) -> list[np.ndarray]:
        """The dataset indices of the k real batches of iteration `step` (0-based)."""
        per_epoch = self.dataset_size // self.batch_size  # whole batches only, so every step has one shape
        batches = []
        for j in range(self.d_steps):
            global_batch = step * self.d_steps + j
            epoch, position = divmod(global_batch, per_epoch)
            order = data_order(config, epoch, self.dataset_size)
            batches.append(order[position * self.batch_size : (position + 1) * self.batch_size])
        return batches


def train(start: RunStart, options: RunOptions = RunOptions()) -> list[dict]:
    """Trains the run `start` resolved until it has `options.steps` iterations; returns this
    session's metrics (on the process that writes the run's files; with several processes the
    others return none). That process holds the run's lock (`RunDir.lock`) throughout. A run
    already at its target raises Finished, and one given a target below what it has done is
    refused, before anything is written.

    SIGINT and SIGTERM stop it after the iteration in progress: the loop saves that step's
    checkpoint and the summaries and raises Interrupted. A second signal ends the process at
    once; checkpoints are written atomically, so the last complete one stays whole."""
    with StopOnSignal() as stop:
        return _train(start, options, stop)


def _train(start: RunStart, options: RunOptions, stop: StopOnSignal) -> list[dict]:
    config = start.config
    dataset = load_dataset(config.data, config.seed)
    schedule = Schedule.for_dataset(config, len(dataset), start.devices)
    total = _total(start, options, schedule)
    scorer = Scorer(config, options, start.backend) if options.eval_every else None  # refuses a dataset it cannot score
    backend = load_backend(start.backend, options.precision, options.compile, start.devices)
    trainer = backend.trainer(config)
    with start.run.lock() if trainer.writer else nullcontext():  # the process that writes the run holds its lock
        book = Bookkeeping(start, options, schedule, total, backend, trainer, scorer, stop)
        with Batches(dataset, schedule, total, book.trainer.rows(schedule.batch_size)) as batches, book:
            while book.running():
                reals, noise = batches.take(book.step, book.config)
                began = time.perf_counter()
                with book.step_in_progress():
                    metrics = _train_step(book.trainer, reals, noise)
                book.record(metrics, time.perf_counter() - began)
        return book.finish()


def _total(start: RunStart, options: RunOptions, schedule: Schedule) -> int:
    """The run's total iterations, which must be more than it has done: a target given now
    that is below them is refused, and a run already at its target is Finished."""
    total = options.total_steps(schedule)
    if start.done < total:
        return total
    flag, value = ("--steps", options.steps) if options.steps is not None else ("--epochs", options.epochs or 1)
    per_epoch = schedule.iterations_per_epoch
    if start.new_target and start.done > total:
        if flag == "--steps":
            valid = f"at least the {start.done} iterations the run in {start.run.path} has done"
        else:
            valid = (
                f"at least {math.ceil(start.done / per_epoch)}: the run in {start.run.path} has done "
                f"{start.done} iterations, {per_epoch} an epoch"
            )
        raise ConfigError(flag, value, valid)
    further = 2 * start.done if flag == "--steps" else start.done // per_epoch + 1
    raise Finished(
        f"the run in {start.run.path} is finished: iteration {start.done}, which is saved, reached its target of "
        f"{total} iterations ({flag} {value}); to train it further, give a larger one: "
        f"dcgan train --resume --out {start.run.path} {flag} {further}"
    )


def _train_step(trainer: Trainer, reals: np.ndarray, noise: IterationNoise) -> dict[str, float]:
    """One iteration of the algorithm, its metrics read as floats: reading them waits for the
    device, so the time around this call is the step's."""
    return {k: float(v) for k, v in trainer.train_step(reals, noise.z_d, noise.z_g).items()}


class Finished(Exception):
    """A run resumed with nothing to train: it has done its target's iterations. The message
    says so and how to go further; `dcgan train` prints it and exits 0."""


class Batches:
    """Each iteration's inputs, its k real batches and its noise, which depend on the step
    alone; the next iteration's are prepared in a thread while the current step runs."""

    def __init__(self, dataset: ImageDataset, schedule: Schedule, total: int, rows: slice):
        self.dataset, self.schedule, self.total = dataset, schedule, total
        self.rows = rows  # this process's part of each global batch (Trainer.rows): only it is loaded
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.upcoming: tuple[int, Future] | None = None  # (step, its inputs on the way)

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown()

    def take(self, step: int, config: Config) -> tuple[np.ndarray, IterationNoise]:
        """Iteration `step`'s (0-based) reals, (k, N, C, H, W), and noise; after a roll-back
        the step is an earlier one than was prepared, so it is prepared now."""
        if self.upcoming is None or self.upcoming[0] != step:
            self.upcoming = (step, self.pool.submit(self._inputs, config, step))
        inputs = self.upcoming[1].result()
        if step + 1 < self.total:
            self.upcoming = (step + 1, self.pool.submit(self._inputs, config, step + 1))
        return inputs

    def _inputs(self, config: Config, step: int) -> tuple[np.ndarray, IterationNoise]:
        reals = np.stack([self.dataset.batch(idx[self.rows]) for idx in self.schedule.batch_indices(config, step)])
        return reals, iteration_noise(config, step, self.schedule.batch_size).rows(self.rows)


class Scorer:
    """`--eval-every`: the run's generator scored in the feature network's space
    (common/quality/), the same latent vectors each time, so the curve follows G alone; the
    run's own backend computes the features. Where the run keeps G's moving average
    (optim.ema), the average is scored, as `dcgan eval` scores it by default, and G itself
    beside it (`fd_raw` and its interval), so that one run shows what the average gains at every point."""

    KEYS = ("fd", "fd_low", "fd_high", "kid", "precision", "recall", "density", "coverage", "classes_covered")

    def __init__(self, config: Config, options: RunOptions, backend: str):
        from common.quality.evaluate import MIN_N, FashionMnistSpace, check_dataset

        if options.eval_n < MIN_N:
            raise ConfigError("--eval-n", options.eval_n, f"at least {MIN_N}, as for `dcgan eval --n`")
        check_dataset(config, "fashion-mnist")
        self.config, self.n = config, options.eval_n
        self.space = FashionMnistSpace.load(backend, progress=options.progress)

    def scores(self, trainer: Trainer) -> dict:
        from common.quality.evaluate import evaluate

        averaged = trainer.ema_generator is not None
        found = evaluate(trainer, self.config, self.space, self.n, seed=self.config.seed, averaged=averaged)
        scores = {k: found[k] for k in self.KEYS}
        if averaged:
            raw = evaluate(trainer, self.config, self.space, self.n, seed=self.config.seed)
            scores.update({f"fd_raw{end}": raw[f"fd{end}"] for end in ("", "_low", "_high")})
        return scores


class StopOnSignal:
    """While active (in the main thread), SIGINT and SIGTERM set `signal` instead of
    interrupting: the loop stops after the iteration in progress, so no update is ever half
    applied (PyTorch steps D's weights in place before G's). A second signal ends the process
    at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signal: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None:
            os.write(2, f"\n{signal.Signals(signum).name} again: stopping at once\n".encode())
            os._exit(128 + signum)
        self.signal = signum
        os.write(2, f"\n{signal.Signals(signum).name}: stopping after this iteration (again: at once)\n".encode())

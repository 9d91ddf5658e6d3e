"""The training loop, once for every backend: data, noise, step counting, logging,
sample grids, checkpoints and resume. A backend only supplies a `Trainer`
(common/backends.py) whose `train_step` runs one iteration of common/algorithm.py; the run's
files are common/rundir.py's.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import canonical, checkpoint
from common.algorithm import METRICS, data_order, fixed_noise, iteration_noise
from common.backends import Trainer, load_backend
from common.config import Config
from common.data import ImageDataset, load_dataset
from common.errors import ConfigError
from common.rundir import RunDir
from common.tensorboard import TensorBoard


@dataclass(frozen=True)
class RunOptions:
    steps: int | None = None  # the run's total iterations; None: from epochs
    epochs: int | None = None  # passes over the dataset; used when steps is None (default 1)
    resume: bool = False
    compile: str | None = None  # one of the backend's COMPILERS (common/backends.py)
    precision: str = "float32"  # one of TRAINING_PRECISIONS
    sample_every: int | None = None  # default: each epoch, and at least 10 grids a run
    checkpoint_every: int = 500
    keep_every: int = 5000  # checkpoints kept besides the latest; 0 keeps only the latest
    progress: bool = True
    eval_every: int | None = None  # iterations between scores (common/quality/), logged in metrics.jsonl
    eval_n: int = 10_000  # generated images each score is computed on
    tensorboard: bool = False  # also write TensorBoard event files (common/tensorboard.py)

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
    def for_dataset(cls, config: Config, dataset_size: int) -> Schedule:
        """The schedule of `config` on a dataset of `dataset_size` images, which must hold at
        least one iteration's batches."""
        o = config.optim
        schedule = cls(o.batch_size, o.d_steps, dataset_size)
        if schedule.iterations_per_epoch < 1:
            raise ConfigError(
                "data.dataset",
                config.data.dataset,
                f"at least batch_size x d_steps = {o.batch_size * o.d_steps} images (it has {dataset_size})",
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


def train(config: Config, backend_name: str, run_dir: Path, options: RunOptions = RunOptions()) -> list[dict]:
    """Trains until the run has `options.steps` iterations; returns this session's metrics."""
    run = RunDir(run_dir)
    resume_from = run.check(config, backend_name, options.resume)
    dataset = load_dataset(config.data, config.seed)
    schedule = Schedule.for_dataset(config, len(dataset))
    total = options.total_steps(schedule)
    sample_every = options.sample_every or max(1, min(schedule.iterations_per_epoch, math.ceil(total / 10)))
    scorer = Scorer(config, options) if options.eval_every else None  # refuses a dataset it cannot score
    trainer = load_backend(backend_name, options.precision, options.compile).trainer(config)
    if resume_from is not None:
        start, elapsed = _restore(trainer, config, resume_from)
        run.truncate_metrics(start)
    else:
        run.create(config, backend_name)
        start, elapsed = 0, 0.0

    def save_checkpoint(step: int, seconds: float) -> None:
        run.save_checkpoint(
            step, trainer.state_dict(), canonical.metadata(config, backend_name, step, seconds), options.keep_every
        )

    o = config.optim
    fixed = fixed_noise(config)
    records: list[dict] = []
    step = start
    session_start = time.perf_counter()
    bar = tqdm(
        total=total,
        initial=start,
        disable=not options.progress,
        unit="it",
        dynamic_ncols=True,
        desc=f"{config.preset} {backend_name}",
    )
    board = TensorBoard(run.path / "tensorboard") if options.tensorboard else None
    with ThreadPoolExecutor(max_workers=1) as prefetch, run.metrics_log() as log:
        upcoming = prefetch.submit(_iteration_inputs, dataset, schedule, config, step) if step < total else None
        try:
            while step < total:
                reals, noise = upcoming.result()
                if step + 1 < total:  # prepare the next batch while this step runs
                    upcoming = prefetch.submit(_iteration_inputs, dataset, schedule, config, step + 1)
                t0 = time.perf_counter()
                metrics = {k: float(v) for k, v in trainer.train_step(reals, noise.z_d, noise.z_g).items()}
                seconds = time.perf_counter() - t0
                _check_finite(metrics, step + 1, backend_name)
                step += 1
                record = {
                    "step": step,
                    **metrics,
                    "images_per_s": o.batch_size * o.d_steps / seconds,
                    "time": elapsed + time.perf_counter() - session_start,
                }
                if scorer is not None and (step % options.eval_every == 0 or step == total):
                    record.update(scorer.scores(trainer))
                records.append(record)
                log(record)
                if board is not None:
                    board.scalars(step, {k: v for k, v in record.items() if k != "step"})
                bar.update(1)
                bar.set_postfix_str(
                    f"loss_D {metrics['loss_D']:.3f} loss_G {metrics['loss_G']:.3f} "
                    f"D(x) {metrics['D_x']:.2f} D(G(z)) {metrics['D_G_z1']:.2f}/{metrics['D_G_z2']:.2f} "
                    f"{record['images_per_s']:.0f} img/s"
                )
                if step % sample_every == 0 or step == total:
                    grid = trainer.sample(fixed)
                    run.save_sample(step, grid)
                    if board is not None:
                        board.images(step, "samples", grid)
                if step % options.checkpoint_every == 0 and step < total:
                    save_checkpoint(step, elapsed + time.perf_counter() - session_start)
        except KeyboardInterrupt:
            bar.write(f"interrupted: saving step {step}; continue with --resume")
            raise
        except Diverged:
            step = start  # the weights hold the diverged update: keep the checkpoints as they are
            raise
        finally:
            bar.close()
            if board is not None:
                board.close()
            if step > start:  # never lose work: the last finished iteration is always saved
                save_checkpoint(step, elapsed + time.perf_counter() - session_start)
    run.write_summaries(f"{config.preset} on {backend_name}, {config.data.dataset}")
    return records


class Scorer:
    """`--eval-every`: the run's generator scored in the feature network's space
    (common/quality/), the same latent vectors each time, so the curve follows G alone."""

    KEYS = ("fd", "fd_low", "fd_high", "kid", "precision", "recall", "density", "coverage", "classes_covered")

    def __init__(self, config: Config, options: RunOptions):
        from common.quality.evaluate import MIN_N, FashionMnistSpace, check_dataset

        if options.eval_n < MIN_N:
            raise ConfigError("--eval-n", options.eval_n, f"at least {MIN_N}, as for `dcgan eval --n`")
        check_dataset(config, "fashion-mnist")
        self.config, self.n = config, options.eval_n
        self.space = FashionMnistSpace.load(progress=options.progress)

    def scores(self, trainer: Trainer) -> dict:
        from common.quality.evaluate import evaluate

        found = evaluate(trainer, self.config, self.space, self.n, seed=self.config.seed)
        return {k: found[k] for k in self.KEYS}


def _restore(trainer: Trainer, config: Config, file: Path) -> tuple[int, float]:
    """Loads a run's checkpoint into `trainer`; returns its step and elapsed seconds."""
    arrays, metadata = checkpoint.load(file)
    canonical.validate(arrays, config, source=str(file))
    trainer.load_state_dict(arrays)
    return int(metadata["step"]), float(metadata["elapsed"])


def _iteration_inputs(dataset: ImageDataset, schedule: Schedule, config: Config, step: int):
    reals = np.stack([dataset.batch(idx) for idx in schedule.batch_indices(config, step)])
    return reals, iteration_noise(config, step, schedule.batch_size)


class Diverged(FloatingPointError):
    """A loss or statistic became NaN or infinite; the run stops without saving that state."""


def _check_finite(metrics: dict, step: int, backend: str) -> None:
    bad = [k for k in METRICS if not math.isfinite(metrics[k])]
    if bad:
        raise Diverged(
            f"training diverged on {backend}: {', '.join(bad)} not finite at step {step} ({metrics}); "
            "the run's checkpoints are left as they were"
        )

"""The training loop, once for every backend: data, noise, step counting, logging,
sample grids, checkpoints and resume. A backend only supplies a `Trainer`
(common/trainer.py) whose `train_step` runs one iteration of common/algorithm.py; the run's
files are common/rundir.py's.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import canonical, checkpoint
from common.algorithm import data_order, fixed_noise, iteration_noise
from common.backends import load_backend
from common.config import Config, apply_overrides, validate
from common.data import ImageDataset, load_dataset
from common.errors import ConfigError, RunStopped
from common.rundir import RunDir
from common.tensorboard import TensorBoard
from common.trainer import Trainer
from common.watch import Diverged, Watch, check_finite, check_finite_state


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
    devices: int | None = None  # data-parallel width (global batch = devices x batch_size); default: the run's, or 1

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


def train(config: Config, backend_name: str, run_dir: Path, options: RunOptions = RunOptions()) -> list[dict]:
    """Trains until the run has `options.steps` iterations; returns this session's metrics (on
    the process that writes the run's files; with several processes the others return none).

    SIGINT and SIGTERM stop it after the iteration in progress: the loop saves that step's
    checkpoint and the summaries and raises Interrupted. A second signal ends the process at
    once; checkpoints are written atomically, so the last complete one stays whole."""
    with StopOnSignal() as stop:
        return _train(config, backend_name, run_dir, options, stop)


def _train(config: Config, backend_name: str, run_dir: Path, options: RunOptions, stop: StopOnSignal) -> list[dict]:
    run = RunDir(run_dir)
    resume_from = run.check(config, backend_name, options.resume)
    saved_devices = run.saved_devices() if resume_from else 1
    devices = options.devices or saved_devices
    dataset = load_dataset(config.data, config.seed)
    schedule = Schedule.for_dataset(config, len(dataset), devices)
    total = options.total_steps(schedule)
    sample_every = options.sample_every or max(1, min(schedule.iterations_per_epoch, math.ceil(total / 10)))
    scorer = Scorer(config, options) if options.eval_every else None  # refuses a dataset it cannot score
    backend = load_backend(backend_name, options.precision, options.compile, devices)
    trainer = backend.trainer(config)
    writer = trainer.writer  # with a process per device (torch's DDP), process 0 writes the run's files
    start, elapsed = 0, 0.0
    if resume_from is not None:
        start, elapsed, before = _restore(trainer, config, resume_from)
        if writer:
            run.truncate(start)
            run.record_resume(start, before, config, devices=(saved_devices, devices))
    elif options.resume:  # stopped before its first checkpoint: nothing was kept, so it starts over
        if writer:
            tqdm.write(f"{run.path} has no checkpoint yet: the run starts over from iteration 0")
            run.truncate(0)
            run.record_resume(0, config, config)
    elif writer:
        run.create(config, backend_name)

    def save_checkpoint(step: int, seconds: float) -> None:
        state = trainer.state_dict()  # on every process: it gathers each one's RNG state
        check_finite_state(state, step, backend_name)
        if not writer:
            return
        metadata = canonical.metadata(config, backend_name, step, seconds, devices)
        try:
            run.save_checkpoint(step, state, metadata, options.keep_every)
        except OSError as err:
            latest = run.latest_checkpoint()
            raise SaveFailed(
                f"error: could not save iteration {step}'s checkpoint in {run.checkpoints_dir} "
                f"({err.strerror or err}); "
                + (f"the last good one, {latest.name}, is intact" if latest else "no checkpoint was saved before")
                + f". Free the space or fix the permissions, then continue with: dcgan train --resume --out {run.path}"
            ) from None

    o = config.optim
    fixed = fixed_noise(config)
    watch = Watch()
    records: list[dict] = []
    step = saved = start
    rollbacks = 0
    session_start = time.perf_counter()
    stopping = None  # the signal the processes agreed to stop on
    bar = tqdm(
        total=total,
        initial=start,
        disable=not (options.progress and writer),
        unit="it",
        dynamic_ncols=True,
        desc=f"{config.preset} {backend_name}",
    )
    board = TensorBoard(run.path / "tensorboard") if options.tensorboard and writer else None
    with ThreadPoolExecutor(max_workers=1) as prefetch, run.metrics_log() if writer else _no_log() as log:
        upcoming = prefetch.submit(_iteration_inputs, dataset, schedule, config, step) if step < total else None
        try:
            while step < total and (stopping := trainer.should_stop(stop.signal)) is None:
                reals, noise = upcoming.result()
                if step + 1 < total:  # prepare the next batch while this step runs
                    upcoming = prefetch.submit(_iteration_inputs, dataset, schedule, config, step + 1)
                t0 = time.perf_counter()
                try:
                    metrics = {k: float(v) for k, v in trainer.train_step(reals, noise.z_d, noise.z_g).items()}
                except BaseException:  # the step may have updated part of the state (D, not G): never saved
                    saved = step
                    raise
                seconds = time.perf_counter() - t0
                if not all(math.isfinite(v) for v in metrics.values()):
                    try:
                        check_finite(metrics, step + 1, backend_name, trainer.state_dict())
                    except Diverged as diverged:
                        latest = run.latest_checkpoint()
                        if rollbacks == config.optim.divergence_rollbacks or latest is None:
                            raise
                        rollbacks += 1
                        config, trainer, step = _roll_back(backend, config, run, latest, diverged)
                        bar.write(
                            f"diverged at iteration {diverged.step}: rolled back to iteration "
                            f"{step}, learning rates halved (lr_d {config.optim.lr_d:g}, lr_g {config.optim.lr_g:g}); "
                            f"rollback {rollbacks} of {config.optim.divergence_rollbacks}"
                        )
                        records = [r for r in records if r["step"] <= step]
                        bar.n = saved = step
                        upcoming = prefetch.submit(_iteration_inputs, dataset, schedule, config, step)
                        continue
                step += 1
                record = {
                    "step": step,
                    **metrics,
                    "images_per_s": schedule.batch_size * o.d_steps / seconds,
                    "time": elapsed + time.perf_counter() - session_start,
                }
                if scorer is not None and writer and (step % options.eval_every == 0 or step == total):
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
                warning = watch.observe(record)
                if warning and writer:
                    bar.write(warning)
                if writer and (step % sample_every == 0 or step == total):
                    grid = trainer.sample(fixed)
                    run.save_sample(step, grid)
                    if board is not None:
                        board.images(step, "samples", grid)
                if step % options.checkpoint_every == 0 and step < total:
                    save_checkpoint(step, elapsed + time.perf_counter() - session_start)
                    saved = step
        except (Diverged, SaveFailed):
            saved = step  # a diverged state, or a disk that cannot take it: the checkpoints stay as they are
            raise
        finally:
            bar.close()
            if board is not None:
                board.close()
            if step > saved:  # never lose work: the last finished iteration is saved, unless a step failed after it
                save_checkpoint(step, elapsed + time.perf_counter() - session_start)
    if writer:
        run.write_summaries(f"{config.preset} on {backend_name}, {config.data.dataset}")
    if stopping is not None and step < total:
        raise Interrupted(stopping, step, run.path)
    return records if writer else []


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


def _restore(trainer: Trainer, config: Config, file: Path) -> tuple[int, float, Config]:
    """Loads a run's checkpoint into `trainer`; returns its step, elapsed seconds and the
    config it was saved under."""
    arrays, metadata = checkpoint.load(file)
    if metadata.get("preset") != config.preset:
        raise ConfigError("--resume", str(file), f"a checkpoint of {config.preset} (it holds {metadata.get('preset')})")
    canonical.validate(arrays, config, source=str(file))
    trainer.load_state_dict(arrays)
    saved = checkpoint.saved_config(metadata, file, "--resume")
    return (*checkpoint.saved_progress(metadata, file, "--resume"), saved)


def _roll_back(backend, config: Config, run: RunDir, latest: Path, diverged: Diverged) -> tuple[Config, Trainer, int]:
    """optim.divergence_rollbacks: a new trainer from the run's last checkpoint, both learning
    rates halved; the metrics and grids after it are dropped and resumes.jsonl says why."""
    o = config.optim
    halved = validate(apply_overrides(config, {"optim.lr_d": o.lr_d / 2, "optim.lr_g": o.lr_g / 2}))
    trainer = backend.trainer(halved)
    step, _, _ = _restore(trainer, halved, latest)
    if trainer.writer:
        run.truncate(step)
        run.record_resume(step, config, halved, reason=f"rollback after divergence at iteration {diverged.step}")
    return halved, trainer, step


@contextmanager
def _no_log():
    """The metrics log of a process that writes no files."""
    yield lambda record: None


def _iteration_inputs(dataset: ImageDataset, schedule: Schedule, config: Config, step: int):
    reals = np.stack([dataset.batch(idx) for idx in schedule.batch_indices(config, step)])
    return reals, iteration_noise(config, step, schedule.batch_size)


class SaveFailed(RunStopped):
    """A checkpoint could not be written (a full disk, a permission error); the run stops."""


class Interrupted(RunStopped):
    """SIGINT or SIGTERM stopped the run after a whole iteration, which was saved."""

    def __init__(self, signum: int, step: int, run_dir: Path):
        self.signum, self.step, self.run_dir = signum, step, run_dir
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} after iteration {step}, which is saved; "
            f"continue with: dcgan train --resume --out {run_dir}"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for a process ended by a signal


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

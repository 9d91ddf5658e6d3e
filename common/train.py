"""The training loop, once for every backend: data, noise, step counting, logging,
sample grids, checkpoints and resume. A backend only supplies a `Trainer`
(common/backends.py) whose `train_step` runs one iteration of common/algorithm.py.

A run directory holds:
    run.json                 preset and backend (a run is continued only by the same ones)
    config.toml              the full resolved config
    metrics.jsonl            one line per iteration: step, losses, D(x), D(G(z)), images/s, time
    samples/step_XXXXXX.png  fixed-noise grids, G in eval mode
    checkpoints/step_XXXXXX.safetensors
    loss.png, progress.gif   written when the run ends
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import canonical, checkpoint
from common.algorithm import METRICS, data_order, fixed_noise, iteration_noise
from common.backends import load_backend
from common.config import Config, load_toml
from common.data import ImageDataset, load_dataset
from common.errors import ConfigError
from common.pictures import plot_losses, save_gif, save_grid
from common.presets import make_config


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


@dataclass(frozen=True)
class Schedule:
    """How iterations map onto the data: an iteration takes k batches, an epoch is one pass."""

    batch_size: int
    d_steps: int
    dataset_size: int

    @property
    def iterations_per_epoch(self) -> int:
        return self.dataset_size // (self.batch_size * self.d_steps)

    def batch_indices(self, config: Config, step: int) -> list[np.ndarray]:
        """The dataset indices of the k real batches of iteration `step` (0-based)."""
        per_epoch = self.dataset_size // self.batch_size  # whole batches only, so every step has one shape
        batches = []
        for j in range(self.d_steps):
            global_batch = step * self.d_steps + j
            epoch, position = divmod(global_batch, per_epoch)
            order = data_order(config, epoch, self.dataset_size)
            batches.append(order[position * self.batch_size:(position + 1) * self.batch_size])
        return batches


def open_run(run_dir: Path, config: Config, backend: str, resume: bool) -> Config:
    """Checks `run_dir` and returns the config to train with. Never overwrites another run."""
    run_file = run_dir / "run.json"
    if not run_file.exists():
        if resume:
            raise ConfigError("--out", str(run_dir), "a run directory to resume (it has no run.json)")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError("--out", str(run_dir), "a new or empty directory (this one holds other files)")
        return config
    saved = json.loads(run_file.read_text())
    if (saved["preset"], saved["backend"]) != (config.preset, backend):
        raise ConfigError(
            "--out", str(run_dir),
            f"a directory for a {config.preset} run on {backend}; it holds a {saved['preset']} run on {saved['backend']}",
        )
    if not resume:
        raise ConfigError("--out", str(run_dir), "a new directory, or --resume to continue the run it holds")
    return config


def resumed_config(run_dir: Path, preset: str, overrides: dict) -> Config:
    """The saved run's config, with only the overrides given now on top (validated)."""
    saved = load_toml(run_dir / "config.toml")
    return make_config(preset, {**saved, **overrides})


def train(config: Config, backend_name: str, run_dir: Path, options: RunOptions = RunOptions()) -> list[dict]:
    """Trains until the run has `options.steps` iterations; returns this session's metrics."""
    config = open_run(run_dir, config, backend_name, options.resume)
    dataset = load_dataset(config.data, config.seed)
    o = config.optim
    schedule = Schedule(o.batch_size, o.d_steps, len(dataset))
    if schedule.iterations_per_epoch < 1:
        raise ConfigError("data.dataset", config.data.dataset,
                          f"at least batch_size x d_steps = {o.batch_size * o.d_steps} images (it has {len(dataset)})")
    total = options.steps if options.steps is not None else (options.epochs or 1) * schedule.iterations_per_epoch
    if total < 1:
        raise ConfigError("--steps", total, "a positive number of iterations")
    sample_every = options.sample_every or max(1, min(schedule.iterations_per_epoch, math.ceil(total / 10)))

    latest = checkpoint.latest(run_dir) if options.resume else None
    if options.resume and latest is None:
        raise ConfigError("--resume", str(run_dir), "a run directory with a checkpoint to continue from")
    trainer = load_backend(backend_name, options.precision).trainer(config, compile=options.compile)
    start, elapsed = 0, 0.0
    if latest is not None:
        arrays, metadata = checkpoint.load(latest)
        canonical.validate(arrays, config, source=str(latest))
        trainer.load_state_dict(arrays)
        start, elapsed = int(metadata["step"]), float(metadata["elapsed"])
        _truncate_metrics(run_dir / "metrics.jsonl", start)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps({"preset": config.preset, "backend": backend_name}) + "\n")
        (run_dir / "config.toml").write_text(config.to_toml())

    def save_checkpoint(step: int, seconds: float) -> None:
        checkpoint.save(checkpoint.path_for(run_dir, step), trainer.state_dict(),
                        canonical.metadata(config, backend_name, step, seconds))
        checkpoint.prune(run_dir, options.keep_every)

    fixed = fixed_noise(config)
    records: list[dict] = []
    step = start
    session_start = time.perf_counter()
    bar = tqdm(total=total, initial=start, disable=not options.progress, unit="it", dynamic_ncols=True,
               desc=f"{config.preset} {backend_name}")
    with ThreadPoolExecutor(max_workers=1) as prefetch, open(run_dir / "metrics.jsonl", "a", buffering=1) as log:  # line-buffered: tail -f works
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
                record = {"step": step, **metrics, "images_per_s": o.batch_size * o.d_steps / seconds,
                          "time": elapsed + time.perf_counter() - session_start}
                records.append(record)
                log.write(json.dumps(record) + "\n")
                bar.update(1)
                bar.set_postfix_str(f"loss_D {metrics['loss_D']:.3f} loss_G {metrics['loss_G']:.3f} "
                                    f"D(x) {metrics['D_x']:.2f} D(G(z)) {metrics['D_G_z1']:.2f}/{metrics['D_G_z2']:.2f} "
                                    f"{record['images_per_s']:.0f} img/s")
                if step % sample_every == 0 or step == total:
                    save_grid(run_dir / "samples" / f"step_{step:06d}.png", trainer.sample(fixed))
                if step % options.checkpoint_every == 0 and step < total:
                    log.flush()
                    save_checkpoint(step, elapsed + time.perf_counter() - session_start)
        except KeyboardInterrupt:
            bar.write(f"interrupted: saving step {step}; continue with --resume")
            raise
        except Diverged:
            step = start  # the weights hold the diverged update: keep the checkpoints as they are
            raise
        finally:
            bar.close()
            log.flush()
            if step > start:  # never lose work: the last finished iteration is always saved
                save_checkpoint(step, elapsed + time.perf_counter() - session_start)
    _write_summaries(run_dir, config, backend_name)
    return records


def _iteration_inputs(dataset: ImageDataset, schedule: Schedule, config: Config, step: int):
    reals = np.stack([dataset.batch(idx) for idx in schedule.batch_indices(config, step)])
    return reals, iteration_noise(config, step, schedule.batch_size)


class Diverged(FloatingPointError):
    """A loss or statistic became NaN or infinite; the run stops without saving that state."""


def _check_finite(metrics: dict, step: int, backend: str) -> None:
    bad = [k for k in METRICS if not math.isfinite(metrics[k])]
    if bad:
        raise Diverged(f"training diverged on {backend}: {', '.join(bad)} not finite at step {step} ({metrics}); "
                       "the run's checkpoints are left as they were")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drops lines after the checkpoint being resumed, so metrics.jsonl has each step once."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def _write_summaries(run_dir: Path, config: Config, backend: str) -> None:
    records = read_metrics(run_dir)
    if records:
        plot_losses(run_dir / "loss.png", records, f"{config.preset} on {backend}, {config.data.dataset}")
    save_gif(run_dir / "progress.gif", sorted((run_dir / "samples").glob("step_*.png")))


"""What the training loop (common/train.py) does around its iterations, and when: it opens the
session as the run's `RunStart` says (a new run's files, or a checkpoint restored), then after
each step logs the metrics, shows progress, writes sample grids, scores and checkpoints at
their cadence, honours the stop signal the processes agree on, and on a step that diverged
stops the run or rolls it back to its last checkpoint with both learning rates halved
(optim.divergence_rollbacks). The run's files are common/rundir.py's.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from common import canonical, checkpoint
from common.algorithm import fixed_noise
from common.config import Config, apply_overrides, validate
from common.errors import ConfigError, RunStopped, os_error
from common.rundir import RunDir, RunStart
from common.sample import generator_name
from common.tensorboard import TensorBoard
from common.trainer import Trainer
from common.watch import Diverged, Watch, check_finite, check_finite_state

if TYPE_CHECKING:
    from common.backends import Backend
    from common.train import RunOptions, Schedule, Scorer, StopOnSignal


class Bookkeeping:
    """One training session's bookkeeping. The loop asks `running()` before each iteration,
    runs the step inside `step_in_progress()` and hands its metrics to `record`. `step` is the
    iterations done; `config` and `trainer` are the ones in force, which a roll-back replaces.

    As a context manager it opens the session and, on the way out, whatever ended it, saves
    the last finished iteration unless a step failed, diverged or could not be saved after
    it; `finish` then writes the summaries and says why the session stopped short."""

    def __init__(
        self,
        start: RunStart,
        options: RunOptions,
        schedule: Schedule,
        total: int,
        backend: Backend,
        trainer: Trainer,
        scorer: Scorer | None,
        stop: StopOnSignal,
    ):
        self.start, self.options, self.total = start, options, total
        self.run, self.backend_name = start.run, start.backend
        self.backend, self.trainer, self.config = backend, trainer, start.config
        self.writer = trainer.writer  # with a process per device (torch's DDP), process 0 writes the run's files
        self.scorer, self.stop = scorer, stop
        self.images_per_step = schedule.batch_size * start.config.optim.d_steps
        self.sample_every = options.sample_every or max(1, min(schedule.iterations_per_epoch, math.ceil(total / 10)))
        self.fixed = fixed_noise(start.config)
        self.watch = Watch()
        self.records: list[dict] = []
        self.rollbacks = 0
        self.stopping: int | None = None  # the signal the processes agreed to stop on
        self.step = self.saved = 0
        self.checkpointed = False  # whether the run has a checkpoint of iteration `saved`
        self.elapsed = 0.0  # the run's training seconds before this session

    # ------------------------------------------------------------------ the session

    def __enter__(self) -> Bookkeeping:
        self.step, self.elapsed = self._open()
        self.saved = self.step
        self.session_start = time.perf_counter()
        self.bar = tqdm(
            total=self.total,
            initial=self.step,
            disable=not (self.options.progress and self.writer),
            unit="it",
            dynamic_ncols=True,
            desc=f"{self.config.preset} {self.backend_name}",
        )
        tensorboard = self.options.tensorboard and self.writer
        self.board = TensorBoard(self.run.path / "tensorboard") if tensorboard else None
        self.files = ExitStack()
        self.log = self.files.enter_context(self.run.metrics_log() if self.writer else _no_log())
        if self.trainer.ema_generator is not None and self.writer:
            average = generator_name(self.config, averaged=True)
            self.bar.write(f"sample grids and --eval-every scores: {average} (--eval-every scores G too: fd_raw)")
        return self

    def _open(self) -> tuple[int, float]:
        """Starts the session as `start` says; returns the step it starts from and the run's
        training seconds so far. What the session is asked to do, its target, is the first
        thing it writes (once the checkpoint it resumes from has loaded: a damaged one is
        refused with nothing written), before any iteration, so a session stopped from here
        on leaves a run that `--resume` alone takes to that target."""
        start, run = self.start, self.run
        target = self.options.target()
        if start.resume_from is not None:
            step, elapsed, before = _restore(self.trainer, self.config, start.resume_from)
            self.checkpointed = True
            if self.writer:
                run.save_target(target)
                run.truncate(step)
                run.record_resume(step, before, self.config, devices=(start.saved_devices, start.devices))
            return step, elapsed
        if start.starts_over:  # stopped before its first checkpoint: nothing was kept, so it starts over
            if self.writer:
                run.save_target(target)
                tqdm.write(f"{run.path} has no checkpoint yet: the run starts over from iteration 0")
                run.truncate(0)
                run.record_resume(0, self.config, self.config)
        elif self.writer:
            run.create(self.config, self.backend_name, target=target)
        return 0, 0.0

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None and issubclass(kind, (Diverged, SaveFailed)):
            self.saved = self.step  # a diverged state, or a disk that cannot take it: the checkpoints stay as they are
        with self.files:
            self.bar.close()
            if self.board is not None:
                self.board.close()
            if self.step > self.saved:  # never lose work: the last finished iteration is saved
                self._save()

    def finish(self) -> list[dict]:
        """After the loop: loss.png and progress.gif, then Interrupted if a signal stopped the
        run short of its total. Returns the session's metrics (none on a process that writes
        no files)."""
        if self.writer:
            self.run.write_summaries(f"{self.config.preset} on {self.backend_name}, {self.config.data.dataset}")
        if self.stopping is not None and self.step < self.total:
            raise Interrupted(self.stopping, self.step, self.run.path, self.checkpointed)
        return self.records if self.writer else []

    # ------------------------------------------------------------------ each iteration

    def running(self) -> bool:
        """Whether to run another iteration: the run is short of its total and no process
        received SIGINT or SIGTERM (the processes agree, so all stop together)."""
        if self.step >= self.total:
            return False
        self.stopping = self.trainer.should_stop(self.stop.signal)
        return self.stopping is None

    @contextmanager
    def step_in_progress(self):
        """Around one step. A step that raises (a peer process lost, memory) may have updated
        part of the state (D, not G), so nothing after the last finished iteration is saved."""
        try:
            yield
        except BaseException:
            self.saved = self.step
            raise

    def record(self, metrics: dict[str, float], seconds: float) -> None:
        """A finished step's metrics, which took `seconds`: logged, shown, and followed by the
        scores, grid and checkpoint due at this iteration. Non-finite ones roll the run back
        (the next step is then the one after its last checkpoint) or stop it."""
        if not all(math.isfinite(v) for v in metrics.values()) and self._rolled_back(metrics):
            return
        self.step += 1
        record = {
            "step": self.step,
            **metrics,
            "images_per_s": self.images_per_step / seconds,
            "time": self._seconds(),
        }
        if self.scorer is not None and self.writer and self._due(self.options.eval_every):
            began = time.perf_counter()
            record.update(self.scorer.scores(self.trainer))
            # The scoring's own seconds, which the next records' `time` includes: a run's
            # training time at any iteration is its `time` less the eval_s logged before it.
            record["eval_s"] = time.perf_counter() - began
        self.records.append(record)
        self.log(record)
        if self.board is not None:
            self.board.scalars(self.step, {k: v for k, v in record.items() if k != "step"})
        self._show(record)
        if self.writer and self._due(self.sample_every):
            grid = self.trainer.sample(self.fixed, averaged=self.trainer.ema_generator is not None)
            self.run.save_sample(self.step, grid)
            if self.board is not None:
                self.board.images(self.step, "samples", grid)
        if self.step % self.options.checkpoint_every == 0 and self.step < self.total:
            self._save()

    def _due(self, every: int) -> bool:
        """Whether what happens every `every` iterations (and after the last) happens now."""
        return self.step % every == 0 or self.step == self.total

    def _seconds(self) -> float:
        """The run's training seconds until now, over all its sessions."""
        return self.elapsed + time.perf_counter() - self.session_start

    def _show(self, record: dict) -> None:
        """The progress bar's step and figures, and what the watch warns of."""
        self.bar.update(1)
        self.bar.set_postfix_str(
            f"loss_D {record['loss_D']:.3f} loss_G {record['loss_G']:.3f} "
            f"D(x) {record['D_x']:.2f} D(G(z)) {record['D_G_z1']:.2f}/{record['D_G_z2']:.2f} "
            f"{record['images_per_s']:.0f} img/s"
        )
        warning = self.watch.observe(record)
        if warning and self.writer:
            self.bar.write(warning)

    def _save(self) -> None:
        """The checkpoint of the iteration just finished; a disk that cannot take it stops the
        run with SaveFailed, naming the last good one."""
        seconds = self._seconds()
        state = self.trainer.state_dict()  # on every process: it gathers each one's RNG state
        check_finite_state(state, self.step, self.backend_name)
        if self.writer:
            metadata = canonical.metadata(self.config, self.backend_name, self.step, seconds, self.start.devices)
            try:
                self.run.save_checkpoint(self.step, state, metadata, self.options.keep_every)
            except OSError as err:
                what = f"could not save iteration {self.step}'s checkpoint ({os_error(err)})"
                raise SaveFailed(f"error: {what}; {saved_so_far(self.run)}") from None
        self.saved = self.step
        self.checkpointed = True

    # ------------------------------------------------------------------ divergence

    def _rolled_back(self, metrics: dict[str, float]) -> bool:
        """Non-finite metrics: rolls back to the run's last checkpoint while
        optim.divergence_rollbacks allows, else raises Diverged."""
        try:
            check_finite(metrics, self.step + 1, self.backend_name, self.trainer.state_dict())
        except Diverged as diverged:
            latest = self.run.latest_checkpoint()
            if self.rollbacks == self.config.optim.divergence_rollbacks or latest is None:
                raise
            self.rollbacks += 1
            self._roll_back(latest, diverged)
            return True
        return False

    def _roll_back(self, latest: Path, diverged: Diverged) -> None:
        """A new trainer from the run's last checkpoint, both learning rates halved; the
        metrics and grids after it are dropped and resumes.jsonl says why."""
        o = self.config.optim
        halved = validate(apply_overrides(self.config, {"optim.lr_d": o.lr_d / 2, "optim.lr_g": o.lr_g / 2}))
        trainer = self.backend.trainer(halved)
        step, _, _ = _restore(trainer, halved, latest)
        if trainer.writer:
            self.run.truncate(step)
            reason = f"rollback after divergence at iteration {diverged.step}"
            self.run.record_resume(step, self.config, halved, reason=reason)
        self.config, self.trainer, self.step = halved, trainer, step
        self.bar.write(
            f"diverged at iteration {diverged.step}: rolled back to iteration "
            f"{step}, learning rates halved (lr_d {halved.optim.lr_d:g}, lr_g {halved.optim.lr_g:g}); "
            f"rollback {self.rollbacks} of {halved.optim.divergence_rollbacks}"
        )
        self.records = [r for r in self.records if r["step"] <= step]
        self.bar.n = self.saved = step


def _restore(trainer: Trainer, config: Config, file: Path) -> tuple[int, float, Config]:
    """Loads a run's checkpoint into `trainer`; returns its step, elapsed seconds and the
    config it was saved under."""
    arrays, metadata = checkpoint.load(file)
    if metadata.get("preset") != config.preset:
        raise ConfigError("--resume", str(file), f"a checkpoint of {config.preset} (it holds {metadata.get('preset')})")
    checkpoint.saved_backend(metadata, file, "--resume")
    canonical.validate(arrays, config, source=str(file))
    trainer.load_state_dict(arrays)
    saved = checkpoint.saved_config(metadata, file, "--resume")
    return (*checkpoint.saved_progress(metadata, file, "--resume"), saved)


def saved_so_far(run: RunDir) -> str:
    """What a run that stopped short keeps, and how it goes on: its latest checkpoint (written
    atomically, so whole whatever stopped the run), or none yet."""
    if not run.run_file.exists():
        return f"nothing was written in {run.path}"
    latest = run.latest_checkpoint()
    if latest is None:
        return f"no checkpoint was saved yet, so dcgan train --resume --out {run.path} starts the run over"
    return (
        f"the run is saved up to iteration {run.saved_steps()[-1]} (its last checkpoint, {latest.name}, is intact); "
        f"continue with: dcgan train --resume --out {run.path}"
    )


@contextmanager
def _no_log():
    """The metrics log of a process that writes no files."""
    yield lambda record: None


class SaveFailed(RunStopped):
    """A checkpoint could not be written (a full disk, a permission error); the run stops."""


class Interrupted(RunStopped):
    """SIGINT or SIGTERM stopped the run after a whole iteration, which was saved (`saved`),
    or before its first, when nothing is trained yet. Either way run.json holds the run's
    target, so `--resume` alone goes on to it."""

    def __init__(self, signum: int, step: int, run_dir: Path, saved: bool):
        self.signum, self.step, self.run_dir = signum, step, run_dir
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} after iteration {step}, which is saved; "
            f"continue with: dcgan train --resume --out {run_dir}"
            if saved
            else f"stopped by {name} before iteration 1: nothing is trained or saved yet; "
            f"start it with: dcgan train --resume --out {run_dir}"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for a process ended by a signal

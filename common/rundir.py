"""The run directory: the one module that knows where a run keeps each of its files::

    run.json                             preset and backend (a run is continued only by the same ones),
                                         and its target: {"steps": N} or {"epochs": E}
    run.lock                             while a process writes the run: its advisory lock, holding its pid
    config.toml                          the full resolved config the run started with
    resumes.jsonl                        each --resume: the step it continued from and the config
                                         values it changed (the checkpoints carry the config in force)
    metrics.jsonl                        one line per iteration: step, losses, D(x), D(G(z)), images/s, time
                                         (and the scores, with --eval-every)
    samples/step_XXXXXX.png              fixed-noise grids, G in eval mode
    checkpoints/step_XXXXXX.safetensors  canonical checkpoints (common/checkpoint.py's file format)
    loss.png, progress.gif               written when a training session ends
    tensorboard/                         event files, with --tensorboard (common/tensorboard.py)

`dcgan train` decides once, with `resolve_run`, how a session of a run starts (`RunStart`:
new, resumed from a checkpoint, started over, or refused) and writes the run through
`RunDir`; `dcgan convert` writes one; `dcgan sample`, `convert` and `parity` open a run's
latest checkpoint with `open_checkpoint`. A directory holding another run, or anything
else, is never written into, and a run has one writer at a time (`RunDir.lock`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import checkpoint
from common.config import Config, apply_overrides, load_toml, validate
from common.errors import ConfigError
from common.pictures import plot_losses, save_gif, save_grid
from common.presets import make_config

_CHECKPOINT_NAME = re.compile(r"step_(\d{6,})\.safetensors$")
_LOCK_NAME = "run.lock"
_HELD: set[str] = set()  # the real paths of the run locks this process holds


class RunDir:
    """One run's directory, whether it exists yet or not."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.run_file = self.path / "run.json"
        self.config_file = self.path / "config.toml"
        self.metrics_file = self.path / "metrics.jsonl"
        self.resumes_file = self.path / "resumes.jsonl"
        self.lock_file = self.path / _LOCK_NAME
        self.samples_dir = self.path / "samples"
        self.checkpoints_dir = self.path / "checkpoints"

    # ------------------------------------------------------------------ identity and config

    def identity(self) -> tuple[str, str] | None:
        """(preset, backend) of the run this directory holds, or None where it holds none."""
        if not self.run_file.exists():
            return None
        valid = "a run directory whose run.json is a JSON object naming the run's preset and backend"
        try:
            saved = json.loads(self.run_file.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError("--out", str(self.run_file), f"{valid} (it is not JSON: {err})") from None
        if not isinstance(saved, dict):
            raise ConfigError("--out", str(self.run_file), f"{valid} (it holds a {type(saved).__name__})")
        bad = next((key for key in ("preset", "backend") if not isinstance(saved.get(key), str)), None)
        if bad is not None:
            raise ConfigError("--out", str(self.run_file), f"{valid} (its {bad} is {saved.get(bad)!r})")
        return saved["preset"], saved["backend"]

    def saved_config(self, overrides: dict) -> Config:
        """The config in force at the run's latest checkpoint (config.toml before the first),
        with only the overrides given now on top (validated)."""
        preset, _ = self.identity()
        latest = self.latest_checkpoint()
        if latest is None:
            return make_config(preset, {**load_toml(self.config_file), **overrides})
        metadata = checkpoint.read_metadata(latest)
        if metadata.get("preset") != preset:
            raise ConfigError(
                "--resume",
                str(latest),
                f"a checkpoint of this run's preset, {preset} (it holds {metadata.get('preset')})",
            )
        return validate(apply_overrides(checkpoint.saved_config(metadata, latest, "--resume"), overrides))

    def check(self, config: Config, backend: str, resume: bool) -> Path | None:
        """Refuses what would overwrite another run or resume nothing; returns the checkpoint
        to resume from (None for a new run, or one stopped before its first checkpoint, which
        starts over). Writes nothing."""
        identity = self.identity()
        if identity is None:
            if resume:
                raise ConfigError("--out", str(self.path), "a run directory to resume (it has no run.json)")
            if self.path.exists() and not self.path.is_dir():
                raise ConfigError("--out", str(self.path), "a directory for the run (this is a file)")
            if self._holds_files():
                raise ConfigError("--out", str(self.path), "a new or empty directory (this one holds other files)")
            return None
        if identity != (config.preset, backend):
            raise ConfigError(
                "--out",
                str(self.path),
                f"a directory for a {config.preset} run on {backend}; it holds a {identity[0]} run on {identity[1]}",
            )
        if not resume:
            raise ConfigError("--out", str(self.path), "a new directory, or --resume to continue the run it holds")
        return self.latest_checkpoint()

    def record_resume(
        self, step: int, before: Config, now: Config, reason: str = "--resume", devices: tuple[int, int] = (1, 1)
    ) -> dict:
        """Appends to resumes.jsonl the step a resume continues from, why (a --resume, or a
        rollback after divergence) and the config values it changes (dotted keys: [old, new]),
        so the run's files say which config held when. config.toml stays the config the run
        started with."""
        changed = {key: [old, new] for key, (old, new) in _flat_changes(before.to_dict(), now.to_dict()).items()}
        if devices[0] != devices[1]:  # --devices: the global batch changes with it
            changed["devices"] = list(devices)
        record = {"step": step, "reason": reason, "changed": changed, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(self.resumes_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def create(
        self,
        config: Config,
        backend: str,
        valid: str = "a new or empty directory for the run",
        target: dict[str, int] | None = None,
    ) -> None:
        """Makes the directory of a new run (it must be new or empty: else `valid` says what
        would be) with run.json, holding `target` where given, and config.toml."""
        if self.path.exists() and (not self.path.is_dir() or self._holds_files()):
            raise ConfigError("--out", str(self.path), valid)
        self.path.mkdir(parents=True, exist_ok=True)
        record = {"preset": config.preset, "backend": backend, **({"target": target} if target else {})}
        _write_atomically(self.run_file, json.dumps(record) + "\n")
        self.config_file.write_text(config.to_toml())

    def _holds_files(self) -> bool:
        """Whether the directory holds anything but a lock file (a run killed before it wrote
        run.json leaves only that)."""
        return self.path.is_dir() and any(p.name != _LOCK_NAME for p in self.path.iterdir())

    # ------------------------------------------------------------------ target and lock

    def saved_target(self) -> dict[str, int] | None:
        """How long the run was last asked to be: run.json's target, {"steps": N} or
        {"epochs": E}; None for a run that holds none (`dcgan convert` writes none)."""
        target = json.loads(self.run_file.read_text()).get("target")
        if target is None:
            return None
        if not (
            isinstance(target, dict)
            and len(target) == 1
            and all(unit in ("steps", "epochs") and type(n) is int and n > 0 for unit, n in target.items())
        ):
            valid = f'a run whose run.json target is {{"steps": N}} or {{"epochs": E}}, not {target!r}'
            raise ConfigError("--out", str(self.path), valid)
        return target

    def save_target(self, target: dict[str, int]) -> None:
        """Records in run.json, atomically, how long the run is now asked to be, so that a
        resume that gives no --steps or --epochs goes on to it."""
        record = json.loads(self.run_file.read_text())
        _write_atomically(self.run_file, json.dumps({**record, "target": target}) + "\n")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the run's advisory lock for the block: flock(2) on run.lock, which holds this
        process's pid, so that a run has one writer. Another process is refused at once, with a
        ConfigError naming the holder's pid, before it writes anything. The OS drops the lock
        with the process that holds it, however that ends (SIGKILL included), so a killed run
        is never locked out. Taken again by the process that holds it, the lock is already
        held. On the way out run.lock is removed, and so are the directories made for it that
        stayed empty (a new run refused before it started leaves nothing)."""
        made = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.lock_file)
        if key in _HELD:
            yield
            return
        try:
            fd = self._acquire()
        except BaseException:
            _remove_empty(made)
            raise
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.remove(key)
            if _same_file(fd, self.lock_file):  # removed while held, so no process locks a file no longer there
                self.lock_file.unlink()
            os.close(fd)
            _remove_empty(made)

    def refuse_if_locked(self) -> None:
        """Refuses the run at once, as `lock` does, where another process writes it; holds
        nothing (a launcher's processes take the lock themselves: the one that writes)."""
        with self.lock():
            pass

    def _acquire(self) -> int:
        """run.lock opened, locked and holding this process's pid. A holder removes the file
        as it lets go, so a file locked after that is no longer run.lock: it is opened again."""
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _holder(fd)
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES):  # not another holder: the system's own error
                    raise
                raise ConfigError(
                    "--out",
                    str(self.path),
                    f"a run that no other process is writing: {holder} is writing it (its pid is in "
                    f"{self.lock_file}); wait for it to end, or stop it",
                ) from None
            if _same_file(fd, self.lock_file):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return fd
            os.close(fd)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"step_{step:06d}.safetensors"

    def saved_steps(self) -> list[int]:
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.checkpoints_dir.iterdir() if (m := _CHECKPOINT_NAME.match(p.name)))

    def latest_checkpoint(self) -> Path | None:
        steps = self.saved_steps()
        return self.checkpoint_path(steps[-1]) if steps else None

    def saved_devices(self) -> int:
        """The data-parallel width of the run's latest checkpoint (1 before the first)."""
        latest = self.latest_checkpoint()
        return checkpoint.saved_devices(checkpoint.read_metadata(latest), latest) if latest else 1

    def save_checkpoint(
        self, step: int, arrays: dict[str, np.ndarray], metadata: dict[str, str], keep_every: int = 0
    ) -> Path:
        """Writes step's checkpoint (atomically), then prunes the older ones (see `prune`)."""
        path = self.checkpoint_path(step)
        checkpoint.save(path, arrays, metadata)
        self.prune(keep_every)
        return path

    def prune(self, keep_every: int) -> None:
        """Deletes all but the latest checkpoint and those at multiples of `keep_every` steps."""
        steps = self.saved_steps()
        for step in steps[:-1]:
            if keep_every <= 0 or step % keep_every:
                self.checkpoint_path(step).unlink()

    # ------------------------------------------------------------------ metrics, samples, summaries

    @contextmanager
    def metrics_log(self) -> Iterator[Callable[[dict], None]]:
        """A function that appends one record to metrics.jsonl, line-buffered so `tail -f` works."""
        with open(self.metrics_file, "a", buffering=1) as log:
            yield lambda record: log.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        """metrics.jsonl's records. A last line with no newline (the process killed mid-write)
        is left out; a bad line anywhere else is refused by name."""
        if not self.metrics_file.exists():
            return []
        lines = self.metrics_file.read_text().split("\n")[:-1]  # what follows the last newline was cut short
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise ConfigError(
                    "--out", str(self.path), f"a run whose metrics.jsonl is JSON lines (line {number} is not)"
                ) from None
        return records

    def truncate(self, step: int) -> None:
        """Drops what came after the step being resumed from, so metrics.jsonl has each step
        once (a last line cut short by a kill goes too) and no later grid outlives it. The file
        is cut in place, so a log open for appending (a rollback's) goes on at its new end."""
        if self.metrics_file.exists():
            keep = 0
            for line, record in zip(self.metrics_file.read_bytes().splitlines(keepends=True), self.read_metrics()):
                if record["step"] > step:
                    break
                keep += len(line)
            os.truncate(self.metrics_file, keep)
        for grid in self.samples_dir.glob("step_*.png"):
            if int(grid.stem.removeprefix("step_")) > step:
                grid.unlink()

    def save_sample(self, step: int, images: np.ndarray) -> None:
        save_grid(self.samples_dir / f"step_{step:06d}.png", images)

    def write_summaries(self, title: str) -> None:
        """loss.png from the metrics and progress.gif from the sample grids."""
        records = self.read_metrics()
        if records:
            plot_losses(self.path / "loss.png", records, title)
        save_gif(self.path / "progress.gif", sorted(self.samples_dir.glob("step_*.png")))


@dataclass(frozen=True)
class RunStart:
    """How one `dcgan train` session of a run starts, decided once, before any data is read,
    framework loaded or process started; the command and the training loop both follow it.

    A new run (`resume_from` None, `starts_over` False) is created in an empty directory; a
    resumed one continues from `resume_from`, its latest checkpoint; one stopped before its
    first checkpoint kept nothing to continue from, so it `starts_over` from iteration 0. It
    goes on to `target`: the one this session gives (`new_target`), else the run's own, past
    the `done` iterations the run has."""

    run: RunDir
    backend: str
    config: Config  # the config this session trains under: the checkpoint's, with today's overrides on top
    devices: int  # this session's data-parallel width
    resume_from: Path | None = None
    saved_devices: int = 1  # the width the run had at `resume_from`
    starts_over: bool = False
    target: dict[str, int] = field(default_factory=lambda: {"epochs": 1})  # how long the run is: steps or epochs
    new_target: bool = False  # whether this session gave `target` (else it is the run's saved one, or the default)
    done: int = 0  # the iterations the run has done: `resume_from`'s step


def resolve_run(
    out: str | None,
    preset: str | None,
    backend: str | None,
    overrides: dict,
    resume: bool = False,
    devices: int | None = None,
    steps: int | None = None,
    epochs: int | None = None,
) -> RunStart:
    """`dcgan train`'s run: --out (default runs/PRESET-BACKEND), the preset and backend
    (default dcgan64 on torch; with --resume, the run's own), the config (with --resume, the
    one in force at the run's latest checkpoint) with `overrides` on top, --devices (default
    the run's), and the target, --steps or --epochs (default the run's saved one, else one
    epoch). Refuses, with a ConfigError and before anything is written, a directory that
    holds another run or other files, a run that is not resumed, and a --resume with no run
    to continue."""
    identity = RunDir(out).identity() if resume and out else None  # --resume needs no --preset/--backend
    preset = preset or (identity[0] if identity else "dcgan64")
    backend = backend or (identity[1] if identity else "torch")
    run = RunDir(out or f"runs/{preset}-{backend}")
    if resume and run.config_file.exists() and run.identity() == (preset, backend):
        config = run.saved_config(overrides)
    else:  # a new run; or a mismatch, which `check` refuses by name
        config = make_config(preset, overrides)
    resume_from = run.check(config, backend, resume)
    saved_devices = run.saved_devices() if resume_from else 1
    given = {"steps": steps} if steps is not None else {"epochs": epochs} if epochs is not None else None
    return RunStart(
        run,
        backend,
        config,
        devices or saved_devices,
        resume_from,
        saved_devices,
        resume and resume_from is None,
        target=given or (run.saved_target() if resume else None) or {"epochs": 1},
        new_target=given is not None,
        done=run.saved_steps()[-1] if resume_from else 0,
    )


def find_checkpoint(path: Path | str, source: str = "--checkpoint") -> Path:
    """A checkpoint file, or a run directory's latest checkpoint."""
    path = Path(path)
    if path.is_dir():
        found = RunDir(path).latest_checkpoint()
        if found is None:
            raise ConfigError(source, str(path), "a run directory with a checkpoint under checkpoints/")
        return found
    return path


def open_checkpoint(
    path: Path | str, source: str = "--checkpoint", unverified: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, str], Config]:
    """A checkpoint file (or a run directory's latest): its arrays, metadata and config, the
    arrays validated against the config (`unverified`: common.checkpoint.load's)."""
    return checkpoint.read(find_checkpoint(path, source), source, unverified)


def _write_atomically(path: Path, text: str) -> None:
    """`text` written to a temporary name, flushed to disk and renamed into place, so a crash
    never leaves `path` half-written."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file `fd` is the file at `path` now."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (found.st_dev, found.st_ino)


def _holder(fd: int) -> str:
    """The process whose pid a lock file holds, by its pid. The holder writes it as soon as
    it has the lock, so an empty file is read again for a moment."""
    for _ in range(20):
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if pid:
            return f"process {pid}"
        time.sleep(0.05)
    return "another process"


def _remove_empty(folders: list[Path]) -> None:
    """Removes the folders, deepest first, that a lock made and nothing else filled."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty: a run was written into it
            return


def _flat_changes(before: dict, now: dict, prefix: str = "") -> dict[str, tuple]:
    """The values that differ between two nested config dicts, under dotted keys."""
    changes = {}
    for key in before.keys() | now.keys():
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes.update(_flat_changes(old, new, f"{prefix}{key}."))
        elif old != new:
            changes[f"{prefix}{key}"] = (old, new)
    return dict(sorted(changes.items()))

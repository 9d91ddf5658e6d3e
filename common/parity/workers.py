"""One process per (backend, precision): the harness every parity job runs in.

Keras fixes its backend when it is first imported, and JAX and Keras take float64 as a
process-wide setting (jax_enable_x64, Keras's floatx), so no process can hold two Keras
backends, or one backend in two precisions. Each (backend, precision) therefore gets a worker
process of its own (`python -m common.parity`, common/parity/__main__.py), all handed one job
directory: job.json, naming the job's kind, and the arrays the caller gives. Each worker writes
its results in a folder of its own there, which the caller reads back before the directory goes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
Key = tuple[str, str]  # (backend, precision)
T = TypeVar("T")


@dataclass(frozen=True)
class Job:
    """What one worker is handed: the job (job.json), its backend and precision, the arrays the
    caller gave, and the folder for its results."""

    spec: dict
    dir: Path
    backend: str
    precision: str

    @classmethod
    def open(cls, job_dir: Path, backend: str, precision: str) -> Job:
        return cls(json.loads((job_dir / "job.json").read_text()), job_dir, backend, precision)

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        return load_file(str(self.dir / f"{name}.safetensors"))

    @property
    def out(self) -> Path:
        return _out(self.dir, (self.backend, self.precision))


def _out(job_dir: Path, key: Key) -> Path:
    """The folder the worker of `key` writes its results in."""
    return job_dir / ".".join(key)


def run_workers(
    kind: str,
    job: dict,
    keys: Sequence[Key],
    read: Callable[[Path, Key], T],
    arrays: dict[str, dict[str, np.ndarray]] | None = None,
    parallel: int | None = None,
    timeout: float | None = None,
    log: Callable[[str], object] = print,
    done: Callable[[Key, T | str], object] | None = None,
) -> dict[Key, T | str]:
    """Runs the job `kind` (a kind of common/parity/__main__.py) described by `job`, with
    `arrays` (name -> arrays), in one worker per key, `parallel` at a time (default: one per
    core), each for at most `timeout` seconds. Returns, for each key, what `read` makes of the
    folder its worker wrote, or the worker's error report; `done`, if given, is handed each
    key's as soon as its worker is done, while every worker's folder still exists."""
    with tempfile.TemporaryDirectory(prefix="dcgan-parity-") as tmp:
        job_dir = Path(tmp)
        for name, named in (arrays or {}).items():
            save_file(
                {k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in named.items()},
                str(job_dir / f"{name}.safetensors"),
            )
        (job_dir / "job.json").write_text(json.dumps({"kind": kind, **job}))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}

        def work(key: Key) -> T | str:
            result = run_one(key)
            if done is not None:
                done(key, result)
            return result

        def run_one(key: Key) -> T | str:
            out = _out(job_dir, key)
            out.mkdir()
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "common.parity", str(job_dir), *key],
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                log(f"  {key[0]} {key[1]}: FAILED")
                return f"{key[0]} ({key[1]}) worker did not finish in {timeout} s"
            log(f"  {key[0]} {key[1]}: " + ("FAILED" if done.returncode else "done"))
            if done.returncode:
                return f"{key[0]} ({key[1]}) worker exited {done.returncode}:\n{done.stdout[-4000:]}"
            return read(out, key)

        with ThreadPoolExecutor(max_workers=parallel or max(1, min(len(keys), os.cpu_count() or 1))) as pool:
            return dict(zip(keys, pool.map(work, keys)))

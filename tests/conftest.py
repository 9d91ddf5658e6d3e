"""Settings for the whole test session, and for every process the tests start.

JAX compiles each distinct XLA program once per process, and on a CPU even a single small op
costs ~0.1 s to compile. The suite starts dozens of JAX and Keras-on-JAX processes (parity
workers, `dcgan train` / `--resume` / `sample` chains, benchmark workers) that compile many
of the same programs, so they share JAX's persistent compilation cache, every entry of it,
in a directory of this session's own: nothing compiled by an earlier run is reused. The same
goes for the suite's own cache (DCGAN_CACHE_DIR: the test set's features that `dcgan eval`
computes once and every scoring process reads), so the session never trusts an earlier one.

`make test` runs the suite on every core (up to 4) with pytest-xdist (`-n auto --dist loadfile`). Most
of the suite's time is a few expensive fixtures (the parity workers, the benchmark's smoke run,
the training chains), each shared by the tests of one file, so each file's tests run on one
xdist worker, which computes its fixtures once. The xdist workers share the session's JAX
caches: the controller makes them, and they inherit them through the environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION_CACHE = "DCGAN_TESTS_CACHE"  # set by the controller, read by its xdist workers
_OWNER = "PYTEST_XDIST_WORKER" not in os.environ or _SESSION_CACHE not in os.environ
_CACHE = tempfile.mkdtemp(prefix="dcgan-tests-cache-") if _OWNER else os.environ[_SESSION_CACHE]
os.environ.update(
    {
        _SESSION_CACHE: _CACHE,
        "DCGAN_CACHE_DIR": os.path.join(_CACHE, "dcgan-suite"),
        "JAX_COMPILATION_CACHE_DIR": os.path.join(_CACHE, "jax"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
        # The suite runs more framework processes than there are cores. OpenMP's threads (PyTorch's)
        # spin while they wait for work, taking the cores from the other processes: passive
        # waiting halved a torch step's time here while another process was busy.
        "OMP_WAIT_POLICY": "PASSIVE",
    }
)
for _folder in ("DCGAN_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR"):
    os.makedirs(os.environ[_folder], exist_ok=True)


ROOT = Path(__file__).resolve().parents[1]


class Dcgan:
    """Runs `dcgan ARGS` as a user does, in a process of its own from the repository's root
    (`dcgan` is common.cli's console script): `dcgan("train", "--steps", "1", ...)`. With
    check (the default) a non-zero exit fails the test and shows the command's stderr.
    `python` runs any other Python command line the same way (a script, `-m torch.distributed.run`)."""

    def __call__(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        return self.python("-m", "common.cli", *args, check=check, timeout=timeout)

    def python(self, *argv: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done


@pytest.fixture(scope="session")
def dcgan() -> Dcgan:
    """The one way the tests start `dcgan` (and other Python commands) in a process of their own."""
    return Dcgan()


def pytest_sessionfinish(session, exitstatus):
    if _OWNER:
        shutil.rmtree(_CACHE, ignore_errors=True)

"""Settings for the whole test session, and for every process the tests start.

JAX compiles each distinct XLA program once per process, and on a CPU even a single small op
costs ~0.1 s to compile. The suite starts dozens of JAX and Keras-on-JAX processes (parity
workers, `dcgan train` / `--resume` / `sample` chains, benchmark workers) that compile many
of the same programs, so they share JAX's persistent compilation cache, every entry of it,
in a directory of this session's own: nothing compiled by an earlier run is reused.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_JAX_CACHE = tempfile.mkdtemp(prefix="dcgan-tests-jax-cache-")
os.environ.update(
    {
        "JAX_COMPILATION_CACHE_DIR": _JAX_CACHE,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_JAX_CACHE, ignore_errors=True)

"""Runs one worker process per backend (Keras allows one backend per process), all at once,
and hands each test the report of the backend it is parametrised with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.backends import BACKENDS
from common.presets import PRESETS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def reports(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("parity")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    workers = {
        backend: subprocess.Popen(
            [sys.executable, "-m", "tests.parity._worker", backend, str(out / f"{backend}.json")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for backend in BACKENDS
    }
    results: dict[str, dict] = {}
    for backend, worker in workers.items():
        log, _ = worker.communicate(timeout=600)
        if worker.returncode != 0:
            results[backend] = {"error": f"worker for {backend} exited {worker.returncode}:\n{log[-4000:]}"}
        else:
            results[backend] = json.loads((out / f"{backend}.json").read_text())
    return results


@pytest.fixture(params=list(BACKENDS))
def backend(request) -> str:
    return request.param


@pytest.fixture(params=list(PRESETS))
def preset(request) -> str:
    return request.param


@pytest.fixture
def report(reports, backend, preset) -> dict:
    result = reports[backend]
    if "error" in result:
        pytest.fail(result["error"])
    return result[preset]

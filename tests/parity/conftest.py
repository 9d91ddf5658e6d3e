"""Builds every preset on every backend in workers of common.parity's harness, one process per
backend (Keras allows one backend per process), all at once, and hands each test the report of
the backend it is parametrised with (common/parity/structure.py)."""

from __future__ import annotations

import pytest

from common.backends import BACKENDS
from common.parity import structure
from common.presets import PRESETS


@pytest.fixture(scope="session")
def reports() -> dict[str, dict | str]:
    return structure.describe_builds(parallel=len(BACKENDS), timeout=600, log=lambda *_: None)


@pytest.fixture(params=list(BACKENDS))
def backend(request) -> str:
    return request.param


@pytest.fixture(params=list(PRESETS))
def preset(request) -> str:
    return request.param


@pytest.fixture
def report(reports, backend, preset) -> dict:
    result = reports[backend]
    if isinstance(result, str):
        pytest.fail(result)
    return result[preset]

"""The line each generated report in docs/ opens with: the command, the date, the commit and
the machine it was made on, so that a figure can be traced to the code that produced it
(the benchmark results record the same fields, benchmarks/environment.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.environment import environment  # noqa: E402


def made_by(command: str) -> str:
    env = environment()
    cpu = env["cpu"]
    gpus = ", ".join(env["gpus"]) or "none"
    return (
        f"Made by `{command}` on {env['date']} at commit `{env['commit']}`, on {cpu['model']} "
        f"({cpu['usable_cpus']} usable CPUs; flags {', '.join(cpu['flags'])}); GPU: {gpus}."
    )

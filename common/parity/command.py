"""`dcgan parity`: the numeric parity table for one preset's random weights or one
checkpoint's, on the backends and in the precisions asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import canonical
from common.config import Config
from common.parity.measurement import run_compared
from common.parity.report import format_table, trajectories


def checkpoint_weights(path: Path) -> tuple[Config, dict[str, np.ndarray]]:
    """A checkpoint's config and the state parity compares: its networks and Adam's state (a
    fresh Adam's where it holds none), without the RNG state, which parity draws itself."""
    from common.rundir import open_checkpoint

    arrays, _, config = open_checkpoint(path)
    state = {k: v for k, v in arrays.items() if not k.startswith("rng.")}
    if not canonical.has_optimizer(state):
        state.update(canonical.fresh_optimizer(config))
    return config, state


def compare(
    config: Config,
    state: dict[str, np.ndarray],
    name: str,
    backends: list[str],
    precisions: list[str],
    batch_size: int,
    seed: int,
    markdown: Path | None = None,
) -> int:
    """Runs `state` through every backend in every precision, one process each, and prints
    the table (and writes it to `markdown`); 1 if a check failed or a worker broke."""
    print(
        f"parity: {name}, batch {batch_size}, {', '.join(backends)} in {', '.join(precisions)}; "
        "one process per backend and precision"
    )
    compared = run_compared(
        {config.preset: (config, state)},
        backends,
        precisions,
        batch_size=batch_size,
        seed=seed,
        log=lambda line: print(line, flush=True),
    )[config.preset]
    broken = [message for message in compared.results.values() if isinstance(message, str)]
    comparisons = compared.comparisons
    report = "\n\n".join([format_table(comparisons, f"## {name}"), *broken])
    if "float32" in precisions:
        curves = trajectories(compared.results, "float32")
        report += "\n\nfloat32 loss curves (reported, not judged):\n\n```\n" + curves + "\n```"
    print(report)
    if markdown is not None:
        markdown.write_text(report + "\n")
    failed = [c for c in comparisons if c.passed is False]
    for c in failed:
        print(f"\nFAIL {c.pair[0]} vs {c.pair[1]}, {c.precision}, {c.check}:\n{c.detail}")
    return 1 if failed or broken else 0

"""`dcgan parity`: the numeric parity table for one preset's random weights or one
checkpoint's, on the backends and in the precisions asked for."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from common import canonical
from common.backends import BACKENDS
from common.errors import ConfigError
from common.parity.inputs import random_state
from common.parity.measurement import run_compared
from common.parity.report import format_table, trajectories
from common.presets import make_config


def run_command(args: argparse.Namespace, overrides: Callable[[argparse.Namespace], dict]) -> int:
    """Prints the table (and writes it to --markdown); 1 if a check failed or a worker broke.
    `overrides` reads the config flags (--config, --set) as `dcgan`'s other commands do."""
    if args.checkpoint:
        from common.rundir import open_checkpoint

        if args.preset or args.config or args.set:
            raise ConfigError(
                "--checkpoint", args.checkpoint, "a checkpoint alone: its config is the one it was saved with"
            )
        arrays, _, config = open_checkpoint(Path(args.checkpoint))
        state = {k: v for k, v in arrays.items() if not k.startswith("rng.")}
        if not canonical.has_optimizer(state):
            state.update(canonical.fresh_optimizer(config))
        name = f"{config.preset} from {args.checkpoint}"
    else:
        config = make_config(args.preset or "dcgan64", overrides(args))
        state, name = random_state(config, args.seed), f"{config.preset}, random weights (seed {args.seed})"
    backends = args.backends or list(BACKENDS)
    print(
        f"parity: {name}, batch {args.batch_size}, {', '.join(backends)} in {', '.join(args.precision)}; "
        "one process per backend and precision"
    )
    compared = run_compared(
        {config.preset: (config, state)},
        backends,
        args.precision,
        batch_size=args.batch_size,
        seed=args.seed,
        log=lambda line: print(line, flush=True),
    )[config.preset]
    broken = [message for message in compared.results.values() if isinstance(message, str)]
    comparisons = compared.comparisons
    report = "\n\n".join([format_table(comparisons, f"## {name}"), *broken])
    if "float32" in args.precision:
        curves = trajectories(compared.results, "float32")
        report += "\n\nfloat32 loss curves (reported, not judged):\n\n```\n" + curves + "\n```"
    print(report)
    if args.markdown:
        Path(args.markdown).write_text(report + "\n")
    failed = [c for c in comparisons if c.passed is False]
    for c in failed:
        print(f"\nFAIL {c.pair[0]} vs {c.pair[1]}, {c.precision}, {c.check}:\n{c.detail}")
    return 1 if failed or broken else 0

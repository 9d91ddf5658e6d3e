"""`dcgan parity`: the same weights and inputs through every backend, each pair compared on
the forward pass, the gradients, Adam's update and whole training iterations (common/parity/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.backends import BACKENDS, PRECISIONS
from common.cli import Distinct, config_args, config_overrides, output_file, positive_int, seed
from common.errors import ConfigError
from common.presets import make_config


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "parity",
        help="run the same weights and inputs through every backend and compare "
        "each pair: forward, gradients, Adam, training iterations (common/parity/)",
    )
    config_args(parser)
    parser.add_argument(
        "--checkpoint", help="compare on these weights (a checkpoint file or run directory) instead of random ones"
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        action=Distinct,
        choices=list(BACKENDS),
        help="two or more, each compared with the others (default: all five)",
    )
    parser.add_argument("--precision", nargs="+", action=Distinct, choices=list(PRECISIONS), default=list(PRECISIONS))
    parser.add_argument("--batch-size", type=positive_int, default=4, help="examples per batch (4)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random weights and inputs")
    parser.add_argument("--markdown", type=output_file, help="also write the table to this file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from common.memory import check_training
    from common.parity.command import checkpoint_weights, compare
    from common.parity.inputs import random_state

    backends = args.backends or list(BACKENDS)
    if len(backends) < 2:
        raise ConfigError("--backends", " ".join(backends), "two or more backends: parity compares each pair of them")
    if args.checkpoint:
        if args.preset or args.config or args.set:
            raise ConfigError(
                "--checkpoint", args.checkpoint, "a checkpoint alone: its config is the one it was saved with"
            )
        config, state = checkpoint_weights(Path(args.checkpoint))
        name = f"{config.preset} from {args.checkpoint}"
    else:
        config = make_config(args.preset or "dcgan64", config_overrides(args))
        state, name = random_state(config, args.seed), f"{config.preset}, random weights (seed {args.seed})"
    check_training(config, args.batch_size)
    return compare(
        config,
        state,
        name,
        backends=backends,
        precisions=args.precision,
        batch_size=args.batch_size,
        seed=args.seed,
        markdown=args.markdown,
    )

"""`dcgan describe`: each network's layers, output shapes and parameter counts, read off the
framework-free spec or off the model one backend builds."""

from __future__ import annotations

import argparse
import json

from common.backends import BACKENDS, load_backend
from common.cli import config_args, config_overrides
from common.presets import make_config


def add_parser(commands) -> None:
    parser = commands.add_parser("describe", help="print each network's layers, output shapes and parameter counts")
    config_args(parser)
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="read the figures off the model this backend builds (default: the framework-free spec)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from common.describe import describe, format_table

    config = make_config(args.preset or "dcgan64", config_overrides(args))
    description = describe(config, load_backend(args.backend) if args.backend else None)
    print(json.dumps(description, indent=1) if args.json else format_table(description), end="\n" if args.json else "")
    return 0

"""The `dcgan` command. Bad input ends in one line naming the bad value, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys

from common.backends import BACKENDS, load_backend
from common.config import load_toml, parse_set
from common.errors import ConfigError
from common.presets import PRESETS, make_config


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="dcgan64", help="one of: " + ", ".join(PRESETS) + " (default dcgan64)")
    parser.add_argument("--config", metavar="FILE", help="a TOML file of overrides, e.g. [model] ngf = 32")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        help="override one value, e.g. --set model.ngf=32 (repeatable; applied after --config)")


def _make_config(args: argparse.Namespace):
    overrides = load_toml(args.config) if args.config else {}
    overrides.update(parse_set(args.set))
    return make_config(args.preset, overrides)


def cmd_describe(args: argparse.Namespace) -> None:
    from common.describe import describe, format_table

    config = _make_config(args)
    backend = load_backend(args.backend) if args.backend else None
    description = describe(config, backend)
    print(json.dumps(description, indent=1) if args.json else format_table(description), end="" if not args.json else "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcgan", description="One DCGAN in PyTorch, JAX/Flax and Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True)

    describe = commands.add_parser("describe", help="print each network's layers, output shapes and parameter counts")
    _config_args(describe)
    describe.add_argument("--backend", choices=list(BACKENDS), help="read the figures off the model this backend builds "
                          "(default: the framework-free spec)")
    describe.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    describe.set_defaults(run=cmd_describe)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the table
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ConfigError as err:
        print(f"dcgan: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

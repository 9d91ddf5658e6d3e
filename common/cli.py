"""The `dcgan` command: the table of its subcommands (each a module of common/commands/, and
those other packages add), the argument types and config flags they share, and `main`. Bad
input ends in one line naming the bad value and what is valid (argparse's errors in two: the
second says where the options are listed), never a traceback.

The exit status is `run_command`'s, whatever the command: 0 only where its `run` returned 0;
2 for bad input; a stopped run's own code; 1 for what the machine refused (a full disk, a
read-only file system, memory: one line naming it) and for a bug (an unexpected exception,
which ends in its traceback, or a `run` that returned anything but an exit code)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import NoReturn

from common.config import INT_MAX, SEED_MAX, load_toml, parse_set
from common.errors import ConfigError, RunStopped, environment_error
from common.presets import PRESETS

# Subcommands that packages above `common` add to `dcgan` (pyproject.toml's entry points):
# each is a function that takes the subparsers and adds its own, with `run` set.
# benchmarks/ adds `dcgan bench` this way, so that `common` never imports it.
COMMAND_PLUGINS = "dcgan.commands"


def config_args(parser: argparse.ArgumentParser, preset_help: str = "(default dcgan64)") -> None:
    """The flags of every command that builds a model: --preset, --config and --set."""
    parser.add_argument("--preset", help="one of: " + ", ".join(PRESETS) + " " + preset_help)
    parser.add_argument("--config", metavar="FILE", help="a TOML file of overrides, e.g. [model] ngf = 32")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one value, e.g. --set model.ngf=32 (repeatable; applied after --config)",
    )


def config_overrides(args: argparse.Namespace, shortcuts: dict | None = None) -> dict:
    """The config flags' overrides: --config's file, then a command's shortcut flags that were
    given (dotted key -> value), then --set; later wins."""
    overrides = load_toml(args.config) if args.config else {}
    overrides.update({k: v for k, v in (shortcuts or {}).items() if v is not None})
    overrides.update(parse_set(args.set))
    return overrides


def positive_int(text: str) -> int:
    """argparse's type for counts: a positive integer, or a one-line usage error. Counts stop
    at common.config.INT_MAX, as the config's do: past it a count is a slip, and past int64
    it would fail deep inside numpy."""
    return _integer(text, 1, INT_MAX, f"a positive integer up to {INT_MAX}")


def non_negative_int(text: str) -> int:
    """argparse's type for counts where 0 means none."""
    return _integer(text, 0, INT_MAX, f"a non-negative integer up to {INT_MAX}")


def seed(text: str) -> int:
    """argparse's type for every --seed: what the config's seed takes (numpy's generators take
    no negative one; common.config.SEED_MAX is the largest every backend takes)."""
    return _integer(text, 0, SEED_MAX, f"a non-negative integer up to {SEED_MAX}, the largest seed every backend takes")


def _integer(text: str, lo: int, hi: int, what: str) -> int:
    """`text` as an integer in [lo, hi], or a one-line usage error saying it is not `what`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"{value} is not {what}")
    return value


def _under_a_file(path: Path) -> Path | None:
    """The file on the way to `path` (one of its parents that exists and is no directory), if any."""
    return next((p for p in path.parents if p.exists() and not p.is_dir()), None)


def run_directory(text: str) -> str:
    """argparse's type for a run's --out: a directory, or a path where one can be made. A file
    there, or on the way there, is refused before any data or framework is loaded."""
    path = Path(text)
    blocking = path if path.exists() and not path.is_dir() else _under_a_file(path)
    if blocking is not None:
        where = f"{text!r} is a file" if blocking == path else f"{text!r} is under the file {str(blocking)!r}"
        raise argparse.ArgumentTypeError(f"{where}: give a directory for the run (new or empty, or a run to --resume)")
    return text


def output_file(text: str) -> Path:
    """argparse's type for a file a command writes (--npz, --json, --markdown, --plot): a path
    where that file can be written under the name given, so a directory, or a path under a
    file, is refused before any work is done rather than after it."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory: give the name of the file to write")
    blocking = _under_a_file(path)
    if blocking is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is under the file {str(blocking)!r}: give a file in a directory")
    return path


def host_port(text: str) -> str:
    """argparse's type for a process's address (--coordinator): HOST:PORT, an IPv6 host in
    brackets, the port 1 to 65535. Checked as it is parsed: jax.distributed would wait its
    whole timeout for an address it can never reach."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or (":" in host and not (host.startswith("[") and host.endswith("]"))):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 10.0.0.1:1234, [::1]:1234)")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} has port {port!r}: a port is a whole number from 1 to 65535")
    return text


class Distinct(argparse.Action):
    """argparse's action for a list flag (nargs="+") whose values each count once: a value
    named twice (a backend compared with itself, a mode timed twice) is refused by name."""

    def __call__(self, parser, namespace, values, option_string=None):
        twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if twice is not None:
            raise argparse.ArgumentError(self, f"{twice!r} is named twice: name each once")
        setattr(namespace, self.dest, values)


class CommandParser(argparse.ArgumentParser):
    """`dcgan`'s parser and its commands' (subparsers take their parent's class, so plugins
    such as `dcgan bench` get it too). A bad argument is two lines, the error and where the
    options are listed: argparse's usage block would bury the error under every option."""

    commands = None  # the subparsers action, once add_subparsers has made it

    def add_subparsers(self, **kwargs):
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def parse_args(self, args=None, namespace=None):
        """argparse's, but an unknown argument is reported by the command it was given to,
        whose --help lists the ones it takes."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self.commands.choices.get(getattr(namespace, self.commands.dest, None)) if self.commands else None
            (command or self).error("unrecognized arguments: " + " ".join(extras))
        return namespace

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nrun '{self.prog} --help' for the options\n")


def build_parser() -> argparse.ArgumentParser:
    """`dcgan` with its commands, in the order `dcgan --help` lists them: common/commands/'s,
    then the plugins' by name. Each command module adds its parser with `run` set to the
    function that runs it from the parsed arguments."""
    # Imported here, not above: the command modules import this one for the shared flags.
    from common.commands import convert, describe, evaluate, parity, sample, train

    parser = CommandParser(prog="dcgan", description="One DCGAN in PyTorch, JAX/Flax and Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in (describe, train, sample, convert, evaluate, parity):
        command.add_parser(commands)
    for plugin in sorted(entry_points(group=COMMAND_PLUGINS), key=lambda p: p.name):
        plugin.load()(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`dcgan ARGV`'s exit status (the console script exits with it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the table

    def command() -> int:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # what a launcher runs again in each process
        return args.run(args)

    return run_command(command)


def run_command(command: Callable[[], int], prog: str = "dcgan") -> int:
    """Runs a command (parsing its arguments, then its `run`) and turns whatever it returns or
    raises into an exit status, so that no failure exits 0: bad input (ConfigError) is one
    line and 2; a stopped run (RunStopped) its own line and code; what the machine refused
    (any OSError, named by path and errno; memory) one line and 1. Anything else is a bug,
    raised on: the interpreter shows its traceback and exits 1. Only a returned 0 is
    success: a `run` that returns None or another non-code broke its contract
    (common/commands/__init__.py), and an int outside 0-255 would reach the shell modulo 256
    (256 as 0), so both exit 1. argparse's own exits (--help, a usage error) pass through as
    SystemExit."""
    try:
        returned = command()
    except ConfigError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except RunStopped as err:  # diverged, a failed save, or SIGINT/SIGTERM (common/bookkeeping.py)
        print(f"{prog}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside a training loop, which stops on its own terms
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        line = environment_error(err)
        if line is None:
            raise  # a bug: Python prints its traceback and exits 1
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 1
    if isinstance(returned, bool) or not isinstance(returned, int) or not 0 <= returned <= 255:
        print(f"{prog}: internal error: the command returned {returned!r}, not an exit code (a bug)", file=sys.stderr)
        return 1
    return returned


if __name__ == "__main__":
    sys.exit(main())

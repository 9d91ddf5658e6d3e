"""No failure exits 0, whatever the command: every subcommand `build_parser()` knows (the
plugins' too) is run with its `run` replaced by one that fails, and `dcgan` must exit
non-zero, in one line for the failures it expects (bad input, what the machine refused); a
bug is raised on, which the interpreter shows with its traceback and exits 1 for. Only a
returned 0 is success. The console script exits with `main()`'s value (`sys.exit(main())`),
which must be an exit code in 0-255."""

from __future__ import annotations

import errno
import os
import sys

import pytest

from common.cli import build_parser, main
from common.errors import ConfigError, environment_error

COMMANDS = sorted(build_parser().commands.choices)
FILE = "out/model.safetensors"


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code), FILE)


# what the replaced `run` raises -> (exit code, what the one line on stderr holds)
RAISED = {
    "bad-input": (ConfigError("--n", 0, "a positive integer"), 2, "dcgan: error: invalid config value --n=0"),
    "disk-full": (_oserror(errno.ENOSPC), 1, f"{FILE}: No space left on device (ENOSPC)"),
    "read-only": (_oserror(errno.EROFS), 1, f"{FILE}: Read-only file system (EROFS)"),
    "name-too-long": (_oserror(errno.ENAMETOOLONG), 1, f"{FILE}: File name too long (ENAMETOOLONG)"),
    "out-of-memory": (MemoryError(), 1, "dcgan: error: out of memory"),
    "framework-out-of-memory": (  # JAX's JaxRuntimeError, a RuntimeError, as it says it
        RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 4000000000000 bytes."),
        1,
        "dcgan: error: out of memory (RESOURCE_EXHAUSTED: Out of memory allocating 4000000000000 bytes.)",
    ),
}
RETURNED = {None: 1, 256: 1, -1: 1, True: 1, "0": 1, 3: 3, 0: 0}


def _argv(name: str) -> list[str]:
    """The least `dcgan NAME` parses: each required option given a placeholder."""
    sub = build_parser().commands.choices[name]
    argv = [name]
    for action in sub._actions:
        if action.required and action.option_strings:
            argv += [action.option_strings[0], "x"]
    return argv


def _replace_run(monkeypatch: pytest.MonkeyPatch, name: str, run) -> None:
    """Replaces the function `dcgan NAME` runs, in the module that defines it, so that the
    parser main() builds picks the replacement."""
    original = build_parser().commands.choices[name].get_default("run")
    monkeypatch.setattr(sys.modules[original.__module__], original.__name__, run)


@pytest.mark.parametrize("failure", RAISED)
@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_that_raises_exits_non_zero(name, failure, monkeypatch, capsys):
    error, code, line = RAISED[failure]

    def run(args):
        raise error

    _replace_run(monkeypatch, name, run)
    assert main(_argv(name)) == code
    err = capsys.readouterr().err
    assert line in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bug_is_raised_on_with_its_traceback(name, monkeypatch):
    """Not said in one line: the interpreter shows where it happened, and exits 1."""

    def run(args):
        raise KeyError("preset")

    _replace_run(monkeypatch, name, run)
    with pytest.raises(KeyError, match="preset"):
        main(_argv(name))


@pytest.mark.parametrize("returned", RETURNED, ids=repr)
@pytest.mark.parametrize("name", COMMANDS)
def test_only_a_returned_zero_exits_zero(name, returned, monkeypatch, capsys):
    _replace_run(monkeypatch, name, lambda args: returned)
    code = main(_argv(name))
    assert code == RETURNED[returned] and type(code) is int
    err = capsys.readouterr().err
    if type(returned) is int and 0 <= returned <= 255:  # an exit code, passed on as it is
        assert err == ""
    else:
        assert f"dcgan: internal error: the command returned {returned!r}, not an exit code" in err, err


def test_the_plugin_commands_are_among_those_checked():
    assert {"describe", "train", "sample", "convert", "eval", "parity", "bench"} <= set(COMMANDS)


@pytest.mark.parametrize(
    "run, message",
    [("lambda args: None", "returned None, not an exit code"), ("lambda args: {}['preset']", "KeyError: 'preset'")],
    ids=["returns-none", "a-bug"],
)
def test_the_console_script_exits_1(run, message, dcgan):
    """`dcgan = common.cli:main` runs as sys.exit(main()): sys.exit(None) would exit 0."""
    done = dcgan.python(
        "-c",
        f"import sys; from common.commands import describe; describe.run = {run};"
        "from common.cli import main; sys.exit(main(['describe']))",
        check=False,
    )
    assert done.returncode == 1 and message in done.stderr, done.stderr


@pytest.mark.parametrize(
    "error, line",
    [
        (OSError(errno.EACCES, os.strerror(errno.EACCES), "a", None, "b"), "a -> b: Permission denied (EACCES)"),
        (OSError("image file is truncated"), "image file is truncated"),
        (  # PyTorch's CPU allocator
            RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4 bytes"),
            "out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate 4 bytes)",
        ),
        (type("OutOfMemoryError", (RuntimeError,), {})("CUDA error"), "out of memory (CUDA error)"),  # torch's type
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), None),
        (ValueError("no"), None),
    ],
)
def test_what_the_machine_refused_is_told_from_a_bug(error, line):
    assert environment_error(error) == line

"""The errors the CLI prints as one line instead of a traceback: bad user input, a run that
had to stop (its work saved up to its last checkpoint), and what the machine refused (a
write, memory), which `environment_error` puts in one line."""

from __future__ import annotations

import errno
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid. Names the key, the value and what is valid.

    The message is one line whatever `valid` quotes: a library's own reason (a downloader's,
    a decoder's) often spans lines, and the CLI promises one line per error.
    """

    def __init__(self, key: str, value: Any, valid: str):
        valid = " ".join(str(valid).split())
        self.key, self.value, self.valid = key, value, valid
        super().__init__(f"invalid config value {key}={value!r}: {valid}")


class RunStopped(Exception):
    """A training run stopped before its end, for the reason its message gives."""

    exit_code = 1


# How the frameworks say an allocation failed, since `common` imports none of them to catch
# their classes: torch.OutOfMemoryError (CUDA), TensorFlow's ResourceExhaustedError, XLA's
# RESOURCE_EXHAUSTED status (JAX's JaxRuntimeError, a RuntimeError), and PyTorch's CPU
# allocator's RuntimeError ("DefaultCPUAllocator: can't allocate memory").
OUT_OF_MEMORY_TYPES = ("OutOfMemoryError", "ResourceExhaustedError")
OUT_OF_MEMORY_MESSAGES = ("RESOURCE_EXHAUSTED", "can't allocate memory", "out of memory")


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` says memory could not be allocated: Python's MemoryError (numpy's too),
    or a framework's allocation failure."""
    if isinstance(err, MemoryError) or type(err).__name__ in OUT_OF_MEMORY_TYPES:
        return True
    return isinstance(err, RuntimeError) and any(m.lower() in str(err).lower() for m in OUT_OF_MEMORY_MESSAGES)


def os_error(err: OSError) -> str:
    """An OSError as one line, as a shell tool says it: the path, the system's reason and
    its errno name (``runs/x/run.json: No space left on device (ENOSPC)``)."""
    reason = " ".join((err.strerror or str(err) or type(err).__name__).split())
    name = errno.errorcode.get(err.errno) if isinstance(err.errno, int) else None
    where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    what = f"{reason} ({name})" if name else reason
    return f"{where}: {what}" if where else what


def environment_error(err: BaseException) -> str | None:
    """One line for a failure the machine caused rather than the program: an OSError (a full
    disk, a read-only file system, a name too long, a permission; any errno, named with its
    path), or memory that could not be allocated. None for anything else, which is a bug."""
    if isinstance(err, OSError):
        return os_error(err)
    if out_of_memory(err):
        first = next(iter(str(err).strip().splitlines()), "")
        return "out of memory" + (f" ({' '.join(first.split())[:300]})" if first else "")
    return None

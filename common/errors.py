"""The errors the CLI prints as one line instead of a traceback: bad user input, and a run
that had to stop (its work saved up to its last checkpoint)."""

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

"""The one error type for bad user input, so the CLI can print it without a traceback."""

from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid. Names the key, the value and what is valid."""

    def __init__(self, key: str, value: Any, valid: str):
        self.key, self.value, self.valid = key, value, valid
        super().__init__(f"invalid config value {key}={value!r}: {valid}")

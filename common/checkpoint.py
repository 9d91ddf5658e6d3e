"""The checkpoint file format: one safetensors file per saved step, written atomically.

A checkpoint holds a trainer's state in the canonical format (common/canonical.py: weights,
BN statistics, Adam's state under the spec's names, in PyTorch's layouts, plus the
framework's own RNG state), so any backend opens it, and metadata: format, preset, source
backend, step, elapsed seconds, the full resolved config and its hash. Files are written to
a temporary name and renamed into place, so a crash never leaves a half-written checkpoint
where a resume would look for one. Where a run keeps its checkpoints is common/rundir.py's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from common import canonical
from common.config import Config, toml_overrides
from common.errors import ConfigError
from common.presets import make_config

FORMAT = "dcgan-suite/1"


def write_atomically(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """A safetensors file written to a temporary name, flushed to disk and renamed into place,
    so a crash never leaves a half-written file under `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    contiguous = {k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in arrays.items()}  # keeps 0-d arrays 0-d
    save_file(contiguous, str(tmp), metadata=metadata)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_file(path: Path, flag: str, missing: str, unreadable: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A safetensors file's arrays and metadata; a missing file is refused as the value of
    `flag`, saying what would be valid (`missing`), and so is an unreadable one (`unreadable`,
    followed by safetensors' reason)."""
    try:
        with safe_open(str(path), "np") as f:
            metadata = f.metadata() or {}
            arrays = {key: f.get_tensor(key) for key in f.keys()}
    except FileNotFoundError:
        raise ConfigError(flag, str(path), missing) from None
    except Exception as err:  # safetensors reports a bad header as its own error type
        raise ConfigError(flag, str(path), f"{unreadable} ({err})") from None
    return arrays, metadata


def save(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    write_atomically(path, arrays, {"format": FORMAT, **metadata})


def load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    arrays, metadata = read_file(
        path, "--checkpoint", "an existing checkpoint file or run directory", "a dcgan-suite safetensors checkpoint"
    )
    if metadata.get("format") != FORMAT:
        raise ConfigError(
            "--checkpoint", str(path), f"a checkpoint of format {FORMAT} (found {metadata.get('format')!r})"
        )
    return arrays, metadata


def read(file: Path, source: str = "--checkpoint") -> tuple[dict[str, np.ndarray], dict[str, str], Config]:
    """A checkpoint file's arrays, metadata and config, the arrays validated against the config."""
    arrays, metadata = load(file)
    for key in ("preset", "config"):
        if key not in metadata:
            raise ConfigError(source, str(file), f"a dcgan-suite checkpoint with metadata {key!r}")
    config = make_config(metadata["preset"], toml_overrides(metadata["config"]))
    canonical.validate(arrays, config, source)
    return arrays, metadata, config

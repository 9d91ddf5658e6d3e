"""The checkpoint file format: one safetensors file per saved step, written atomically.

A checkpoint holds a trainer's state in the canonical format (common/canonical.py: weights,
BN statistics, Adam's state under the spec's names, in PyTorch's layouts, plus the
framework's own RNG state), so any backend opens it, and metadata: format, preset, source
backend, step, elapsed seconds, the full resolved config, and the SHA-256 of all of it.
Files are written to a temporary name and renamed into place, so a crash never leaves a
half-written checkpoint where a resume would look for one; the hash, checked on every load,
catches what happens to a file afterwards (a truncated copy, a flipped bit, edited metadata).
It guards against accidents, not against someone who recomputes it. Where a run keeps its
checkpoints is common/rundir.py's.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import tomllib
from safetensors import safe_open
from safetensors.numpy import save_file

from common import canonical
from common.config import Config, toml_overrides
from common.errors import ConfigError
from common.presets import make_config

FORMAT = "dcgan-suite/2"  # /2 carries `sha256`; /1 files, from before it did, still open unverified
FORMATS = (FORMAT, "dcgan-suite/1")


def content_sha256(arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> str:
    """The SHA-256 of a file's tensors (names, dtypes, shapes and bytes, in name order), then
    of its metadata (keys and values in key order, the hash itself left out)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    for key in sorted(metadata or {}):
        if key != "sha256":
            digest.update(f"{key}={metadata[key]}\n".encode())
    return digest.hexdigest()


def write_atomically(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """A safetensors file written to a temporary name, flushed to disk and renamed into place,
    so a crash never leaves a half-written file under `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    contiguous = {k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in arrays.items()}  # keeps 0-d arrays 0-d
    try:
        save_file(contiguous, str(tmp), metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a permission error, an interrupt: no partial file stays behind
        tmp.unlink(missing_ok=True)
        raise


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


def read_metadata(path: Path) -> dict[str, str]:
    """A checkpoint's metadata alone, without reading its tensors (unverified: `load` checks)."""
    try:
        with safe_open(str(path), "np") as f:
            return f.metadata() or {}
    except Exception as err:
        raise ConfigError("--checkpoint", str(path), f"a dcgan-suite safetensors checkpoint ({err})") from None


def save(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    metadata = {"format": FORMAT, **metadata}
    write_atomically(path, arrays, {**metadata, "sha256": content_sha256(arrays, metadata)})


def load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A checkpoint's arrays and metadata, refused by name unless its content hashes to the
    SHA-256 it carries."""
    arrays, metadata = read_file(
        path, "--checkpoint", "an existing checkpoint file or run directory", "a dcgan-suite safetensors checkpoint"
    )
    if metadata.get("format") not in FORMATS:
        raise ConfigError(
            "--checkpoint", str(path), f"a checkpoint of format {FORMAT} (found {metadata.get('format')!r})"
        )
    if metadata["format"] == FORMAT:
        found = content_sha256(arrays, metadata)
        if metadata.get("sha256") != found:
            raise ConfigError(
                "--checkpoint",
                str(path),
                f"a checkpoint whose content hashes to the sha256 it carries, {metadata.get('sha256')} "
                f"(it hashes to {found}: corrupt or altered)",
            )
    return arrays, metadata


def read(file: Path, source: str = "--checkpoint") -> tuple[dict[str, np.ndarray], dict[str, str], Config]:
    """A checkpoint file's arrays, metadata and config, the arrays validated against the config."""
    arrays, metadata = load(file)
    config = saved_config(metadata, file, source)
    canonical.validate(arrays, config, source)
    return arrays, metadata, config


def saved_config(metadata: dict[str, str], file: Path, source: str = "--checkpoint") -> Config:
    """The config a checkpoint was saved under (its preset, then its full config on top),
    validated like any other: metadata is input too."""
    for key in ("preset", "config"):
        if key not in metadata:
            raise ConfigError(source, str(file), f"a dcgan-suite checkpoint with metadata {key!r}")
    try:
        overrides = toml_overrides(metadata["config"])
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, str(file), f"a checkpoint whose config metadata is TOML ({err})") from None
    return make_config(metadata["preset"], overrides)


def saved_progress(metadata: dict[str, str], file: Path, source: str = "--checkpoint") -> tuple[int, float]:
    """A checkpoint's step and elapsed seconds (0 where it has none, as converted files may)."""
    try:
        step, elapsed = int(metadata.get("step", 0)), float(metadata.get("elapsed", 0.0))
    except ValueError:
        step, elapsed = -1, 0.0
    if step < 0 or not 0 <= elapsed < float("inf"):
        raise ConfigError(
            source,
            str(file),
            f"a checkpoint whose step is a whole number >= 0 and elapsed a number of seconds "
            f"(it has step={metadata.get('step')!r}, elapsed={metadata.get('elapsed')!r})",
        )
    return step, elapsed


def saved_devices(metadata: dict[str, str], file: Path, source: str = "--resume") -> int:
    """The data-parallel width a checkpoint was trained at (1 where it does not say)."""
    value = metadata.get("devices", "1")
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(source, str(file), f"a checkpoint whose devices is a whole number >= 1 (it has {value!r})")
    return int(value)

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

Files of the first format, dcgan-suite/1, carry no hash of their tensors, only `config_hash`
of their config, so nothing shows whether their tensors are the ones written: `load` opens
one only when asked to (`unverified`, which `dcgan convert --unverified` sets to re-save it
in the current format), and refuses any file labelled /1 whose metadata is not /1's or whose
config does not hash to its `config_hash`: a /2 file relabelled to escape its hash check.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tomllib
from safetensors import safe_open
from safetensors.numpy import save_file

from common import canonical
from common.backends import BACKENDS
from common.config import INT_MAX, Config, toml_overrides
from common.errors import ConfigError
from common.presets import make_config

FORMAT = "dcgan-suite/2"  # carries `sha256`, of the tensors and the metadata
FORMAT_V1 = "dcgan-suite/1"  # from before: `config_hash` (of the config) is all it carries
# The metadata a /1 file holds: canonical.metadata's of then, and `note` on a converted
# pytorch/examples model.
V1_METADATA = {"format", "preset", "backend", "step", "elapsed", "config", "config_hash", "note"}
EXAMPLES_BACKEND = "pytorch-examples"  # the `backend` of a file `dcgan convert --from-pytorch-examples` wrote
WRITERS = (*BACKENDS, EXAMPLES_BACKEND)  # what a checkpoint's `backend` may name


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


# How safetensors reports a failed write: its own SafetensorError, not an OSError, with the
# system's errno in its message ("I/O error: No space left on device (os error 28)").
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` for the block to write; flushed to disk and renamed onto
    `path` when the block ends, removed if it raises, so a crash or a full disk never leaves
    a half-written file under `path`, nor spoils the one already there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # a full disk, a permission error, an interrupt: no partial file stays behind
        with contextlib.suppress(OSError):  # where it cannot be removed, it was never written
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None and err.filename in (None, tmp, str(tmp)):
            err.filename = str(path)  # the file that could not be written (a failed write() names none)
        raise


def write_atomically(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """A safetensors file written through `replacing`. A write the system refuses (a full
    disk, a read-only file system, a name too long) raises an OSError with its errno and
    `path`, as any other write does."""
    contiguous = {k: np.ascontiguousarray(v).reshape(np.shape(v)) for k, v in arrays.items()}  # keeps 0-d arrays 0-d
    try:
        with replacing(path) as tmp:
            save_file(contiguous, str(tmp), metadata=metadata)
    except Exception as err:
        code = _OS_ERROR.search(str(err)) if not isinstance(err, OSError) else None
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None


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


def load(path: Path, unverified: bool = False) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A checkpoint's arrays and metadata, refused by name unless its content hashes to the
    SHA-256 it carries; a genuine dcgan-suite/1 file, which carries none, only if `unverified`."""
    arrays, metadata = read_file(
        path, "--checkpoint", "an existing checkpoint file or run directory", "a dcgan-suite safetensors checkpoint"
    )
    if metadata.get("format") == FORMAT_V1:
        _check_v1(path, metadata, unverified)
    elif metadata.get("format") != FORMAT:
        raise ConfigError(
            "--checkpoint", str(path), f"a checkpoint of format {FORMAT} (found {metadata.get('format')!r})"
        )
    else:
        found = content_sha256(arrays, metadata)
        if metadata.get("sha256") != found:
            raise ConfigError(
                "--checkpoint",
                str(path),
                f"a checkpoint whose content hashes to the sha256 it carries, {metadata.get('sha256')} "
                f"(it hashes to {found}: corrupt or altered)",
            )
    return arrays, metadata


def _check_v1(path: Path, metadata: dict[str, str], unverified: bool) -> None:
    """A file labelled dcgan-suite/1 checked by what /1 recorded: its metadata keys, and its
    config against `config_hash`; then refused unless `unverified`, with the command that
    re-saves it in the current format."""
    foreign = sorted(set(metadata) - V1_METADATA)
    if foreign:
        raise ConfigError(
            "--checkpoint",
            str(path),
            f"a checkpoint whose metadata fits its format, {FORMAT_V1}; it has {', '.join(foreign)}, "
            f"which {FORMAT_V1} never wrote (corrupt or altered)",
        )
    config_hash = hashlib.sha256(metadata.get("config", "").encode()).hexdigest()[:16]
    if metadata.get("config_hash") != config_hash:
        raise ConfigError(
            "--checkpoint",
            str(path),
            f"a {FORMAT_V1} checkpoint whose config hashes to the config_hash it carries, "
            f"{metadata.get('config_hash')} (it hashes to {config_hash}: corrupt or altered)",
        )
    if not unverified:
        backend = metadata.get("backend") if metadata.get("backend") in BACKENDS else "torch"
        raise ConfigError(
            "--checkpoint",
            str(path),
            f"a checkpoint of format {FORMAT}, verified by the hash it carries; {FORMAT_V1} files carry none "
            f"of their tensors. If you trust this one, re-save it as {FORMAT} with: dcgan convert "
            f"--checkpoint {path} --backend {backend} --out NEW.safetensors --unverified",
        )


def read(
    file: Path, source: str = "--checkpoint", unverified: bool = False
) -> tuple[dict[str, np.ndarray], dict[str, str], Config]:
    """A checkpoint file's arrays, metadata and config, the metadata validated and the arrays
    validated against the config (`unverified`: see `load`)."""
    arrays, metadata = load(file, unverified)
    saved_backend(metadata, file, source)
    saved_progress(metadata, file, source)
    config = saved_config(metadata, file, source)
    canonical.validate(arrays, config, source)
    return arrays, metadata, config


def saved_backend(metadata: dict[str, str], file: Path, source: str = "--checkpoint") -> str:
    """The backend that wrote a checkpoint: one of BACKENDS, or pytorch-examples for a
    converted pytorch/examples model."""
    backend = metadata.get("backend")
    if backend not in WRITERS:
        raise ConfigError(
            source, str(file), f"a checkpoint whose backend is one of {', '.join(WRITERS)} (it has {backend!r})"
        )
    return backend


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
    if not 0 <= step <= INT_MAX or not 0 <= elapsed < float("inf"):
        raise ConfigError(
            source,
            str(file),
            f"a checkpoint whose step is a whole number in [0, {INT_MAX}] and elapsed a number of seconds "
            f"(it has step={metadata.get('step')!r}, elapsed={metadata.get('elapsed')!r})",
        )
    return step, elapsed


def saved_devices(metadata: dict[str, str], file: Path, source: str = "--resume") -> int:
    """The data-parallel width a checkpoint was trained at (1 where it does not say)."""
    value = metadata.get("devices", "1")
    try:
        devices = int(value)
    except ValueError:  # "2.0", "../2", or a digit int() does not read ("²")
        devices = 0
    if not 1 <= devices <= INT_MAX:
        raise ConfigError(
            source, str(file), f"a checkpoint whose devices is a whole number in [1, {INT_MAX}] (it has {value!r})"
        )
    return devices

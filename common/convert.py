"""`dcgan convert`: a checkpoint to another backend, and pytorch/examples DCGAN weights in.

Two conversions, both ending in the canonical format (common/canonical.py):

* a checkpoint (file or run directory) of any backend through backend B: the state is
  imported into B's trainer and exported again, and written either as one canonical
  `.safetensors` file or as a new run directory for B that `dcgan train --resume` continues;
* the `netG.pth` / `netD.pth` state dicts that pytorch/examples' dcgan/main.py saves, read
  with `torch.load(..., weights_only=True)` only (never a general unpickle), mapped in order
  onto the spec's layers with every shape checked, written as a canonical file without
  optimizer state (an import starts Adam afresh).

`common` imports no framework at module level; torch is imported inside the one function
that reads .pth files (tests/test_boundaries.py lists the exception).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np

from common import canonical, checkpoint
from common.backends import load_backend
from common.config import Config
from common.errors import ConfigError
from common.rundir import RunDir, open_checkpoint

# pytorch/examples' command-line flags and the config keys they set.
EXAMPLES_FLAGS = {"nz": "model.latent_dim", "ngf": "model.ngf", "ndf": "model.ndf", "imageSize": "model.image_size"}
_EXAMPLES_KEY = re.compile(r"^(?:module\.)?main\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3}


# --------------------------------------------------------------------------- checkpoints


def through_backend(arrays: dict[str, np.ndarray], config: Config, backend: str) -> dict[str, np.ndarray]:
    """The canonical state as `backend` holds it: imported into its trainer, exported again.
    rng.* keys are the target framework's own (its trainer's); others are dropped."""
    trainer = load_backend(backend).trainer(config)
    trainer.load_state_dict(arrays)
    return trainer.state_dict()


def write(
    out: Path,
    arrays: dict[str, np.ndarray],
    config: Config,
    backend: str,
    step: int,
    elapsed: float = 0.0,
    note: str | None = None,
) -> Path:
    """One canonical file if `out` ends in .safetensors, else a new run directory for
    `backend` (run.json, config.toml, checkpoints/step_NNNNNN.safetensors). Returns the file."""
    metadata = canonical.metadata(config, backend, step, elapsed)
    if note:
        metadata["note"] = note
    out = Path(out)
    if out.suffix == ".safetensors":
        checkpoint.save(out, arrays, metadata)
        return out
    run = RunDir(out)
    run.create(config, backend, valid="a new or empty directory for the run, or a .safetensors file name")
    return run.save_checkpoint(step, arrays, metadata)


def convert_checkpoint(path: Path, backend: str, out: Path, unverified: bool = False) -> Path:
    """`dcgan convert --checkpoint PATH --backend B --out OUT`; returns the file written.
    `unverified` opens a dcgan-suite/1 file, which carries no hash (common.checkpoint.load):
    the file written carries one."""
    arrays, metadata, config = open_checkpoint(path, unverified=unverified)
    converted = through_backend(arrays, config, backend)
    step, elapsed = checkpoint.saved_progress(metadata, path)
    return write(out, converted, config, backend, step, elapsed)


# --------------------------------------------------------------------------- pytorch/examples


def read_examples_state(path: Path, flag: str) -> dict[str, np.ndarray]:
    """A pytorch/examples DCGAN state dict as float32 numpy arrays, by its own keys (`module.`
    dropped), each refused by name unless it is a float tensor of finite values.

    Read with torch.load(weights_only=True) only: a file holding anything but tensors
    (a pickled module, say) is refused, never unpickled. A file it cannot read is refused
    with what the file is (`_what_it_is`) and what would be read."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(flag, str(path), "an existing .pth file (a state_dict saved by pytorch/examples' dcgan)")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (MemoryError, OSError):  # the machine's refusal, not the file's: dcgan names it (common/cli.py)
        raise
    except Exception as err:  # a bad file raises whatever its bytes lead the reader to (KeyError, IndexError, ...)
        raise ConfigError(flag, str(path), f"{EXAMPLES_FILE}; {_what_it_is(path, err)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(flag, str(path), f"{EXAMPLES_FILE} (found {type(state).__name__})")
    arrays = {}
    for key, value in state.items():
        match = _EXAMPLES_KEY.match(key)
        if not match:
            raise ConfigError(
                flag,
                f"{path} key {key!r}",
                "pytorch/examples DCGAN keys main.<i>.<weight|bias|"
                "running_mean|running_var|num_batches_tracked> (optionally prefixed module.)",
            )
        if match.group(2) == "num_batches_tracked":
            continue
        name = f"{path} key {key!r}"
        if not value.is_floating_point():
            dtype = str(value.dtype).removeprefix("torch.")
            raise ConfigError(flag, f"{name} of dtype {dtype}", "float tensors, as a network's weights are")
        wide = torch.float64 if value.dtype == torch.float64 else torch.float32  # float16, bfloat16: exact in float32
        arrays[f"main.{match.group(1)}.{match.group(2)}"] = _finite_float32(
            value.detach().cpu().to(wide).numpy(), name, flag
        )
    return arrays


def _finite_float32(array: np.ndarray, name: str, flag: str) -> np.ndarray:
    """A float array as the canonical float32, refused by `name` unless its values are finite
    and stay so in float32: a network whose training diverged holds NaN, and converted it
    would draw nothing else."""
    nan, infinite = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    if nan or infinite:
        found = " and ".join(f"{n} {what}" for what, n in (("NaN", nan), ("infinite", infinite)) if n)
        raise ConfigError(
            flag,
            f"{name} holding {found} value{'s' if nan + infinite > 1 else ''}",
            "finite weights (a network whose training diverged holds NaN: convert an earlier epoch's file)",
        )
    with np.errstate(over="ignore"):  # an overflow is reported below, as one line
        converted = array.astype(np.float32)
    overflow = int(np.isinf(converted).sum())  # float64 weights beyond float32's largest, 3.4e38
    if overflow:
        raise ConfigError(
            flag,
            f"{name} holding {overflow} value{'s' if overflow > 1 else ''} past float32's range",
            "weights that fit float32, the canonical dtype",
        )
    return converted


# What --netG and --netD read: torch.load(weights_only=True) reads torch.save's files (a zip
# archive since PyTorch 1.6, a pickle before) and, for a name ending in .safetensors, a
# safetensors file.
EXAMPLES_FILE = (
    "a state_dict of tensors as torch.save(netG.state_dict()) writes it, or a .safetensors file of the same tensors"
)
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _what_it_is(path: Path, err: Exception) -> str:
    """What a file torch.load(weights_only=True) refused is, read from its first bytes and
    never unpickled: empty, a zip archive cut short, a TorchScript archive, a pickle of
    objects besides tensors, an unreadable safetensors file, or none of the formats. torch's
    own message is not repeated: it advises weights_only=False, the general unpickling this
    suite refuses."""
    with open(path, "rb") as f:
        head = f.read(16)
    objects = _GLOBAL.search(str(err)) if isinstance(err, pickle.UnpicklingError) else None
    pickled = f"it pickles {objects.group(1)}, a Python object, besides tensors" if objects else ""
    if not head:
        return "this file is empty"
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip archive
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, EOFError):
            return "this is a zip archive cut short or corrupt, as a copy that did not finish leaves it"
        if any(name.endswith("/constants.pkl") for name in names):
            return "this is a TorchScript archive (torch.jit.save), a program rather than a state_dict"
        if pickled:
            return f"{pickled} (torch.save(netG) saves the whole module: save netG.state_dict())"
        return "this zip archive is not one torch.save wrote (or it is damaged)"
    if head.startswith(b"\x80"):  # a pickle: torch.save's format before PyTorch 1.6
        return f"{pickled or 'this pickle holds more than tensors'}, or it is cut short"
    if path.suffix == ".safetensors":
        first = next(iter(str(err).strip().splitlines()), type(err).__name__)
        return f"this is not a readable safetensors file ({first[:200]})"
    return (
        "this is none of those formats (torch.save's zip archive or pickle, safetensors): "
        f"it starts with the bytes {head[:8].hex(' ')}"
    )


def _examples_order(arrays: dict[str, np.ndarray]) -> list[str]:
    def rank(key: str) -> tuple[int, int]:
        _, index, name = key.split(".")
        return int(index), _ORDER[name]

    return sorted(arrays, key=rank)


def _guess_flags(role: str, arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """What pytorch/examples flags made these nets (their layout: G's first ConvTranspose2d
    is (nz, ngf*8, 4, 4), D's first Conv2d (ndf, nc, 4, 4); each 4/2/1 layer doubles the side)."""
    weights = [arrays[k] for k in _examples_order(arrays) if k.endswith(".weight") and arrays[k].ndim == 4]
    if not weights:
        return {}
    if role == "generator":
        guess = {"nz": weights[0].shape[0], "ngf": weights[0].shape[1] // 8, "channels": weights[-1].shape[1]}
    else:
        guess = {"ndf": weights[0].shape[0], "channels": weights[0].shape[1]}
    guess["imageSize"] = 4 * 2 ** (len(weights) - 1)
    return guess


def _hint(role: str, arrays: dict[str, np.ndarray], config: Config) -> str:
    current = {
        "nz": config.model.latent_dim,
        "ngf": config.model.ngf,
        "ndf": config.model.ndf,
        "imageSize": config.model.image_size,
        "channels": config.model.channels,
    }
    wrong = {k: v for k, v in _guess_flags(role, arrays).items() if current[k] != v}
    if not wrong:
        return ""
    flags = " ".join(f"--set model.channels={v}" if k == "channels" else f"--{k} {v}" for k, v in wrong.items())
    return f"; the file looks like pytorch/examples' net with {flags}"


def map_examples(role: str, arrays: dict[str, np.ndarray], config: Config, flag: str) -> dict[str, np.ndarray]:
    """Examples tensors (in module order) onto canonical.entries(config, role) (in spec
    order), every shape checked; returns canonical keys -> the arrays."""
    keys = _examples_order(arrays)
    targets = canonical.entries(config, role)
    for key, entry in zip(keys, targets):
        if tuple(arrays[key].shape) != entry.shape:
            raise ConfigError(
                flag,
                f"{key} {tuple(arrays[key].shape)}",
                f"{entry.key} of shape {entry.shape} for preset {config.preset} with "
                f"latent_dim={config.model.latent_dim} ngf={config.model.ngf} ndf={config.model.ndf} "
                f"image_size={config.model.image_size}{_hint(role, arrays, config)}",
            )
    if len(keys) != len(targets):
        missing = targets[len(keys)].key if len(keys) < len(targets) else None
        extra = keys[len(targets)] if len(keys) > len(targets) else None
        detail = f"it lacks a tensor for {missing}" if missing else f"it has more, from {extra}"
        raise ConfigError(
            flag,
            f"{len(keys)} tensors",
            f"{len(targets)} tensors for the {role} of preset {config.preset} ({detail}){_hint(role, arrays, config)}",
        )
    return {entry.key: arrays[key] for key, entry in zip(keys, targets)}


def from_pytorch_examples(net_g: Path, net_d: Path | None, config: Config, out: Path) -> tuple[Path, str]:
    """`dcgan convert --from-pytorch-examples`: writes a canonical file (networks only).
    Without netD, D is the torch backend's initialisation from config.seed. Returns the
    file and a one-line description."""
    if Path(out).suffix != ".safetensors":
        raise ConfigError(
            "--out",
            str(out),
            "a .safetensors file name (convert that file with --checkpoint FILE "
            "--backend B --out DIR to get a run directory)",
        )
    converted = map_examples("generator", read_examples_state(net_g, "--netG"), config, "--netG")
    note = None
    if net_d is not None:
        converted.update(map_examples("discriminator", read_examples_state(net_d, "--netD"), config, "--netD"))
    else:
        state = load_backend("torch").trainer(config).state_dict()
        converted.update({e.key: state[e.key] for e in canonical.entries(config, "discriminator")})
        note = f"no --netD: the discriminator is the torch backend's initialisation from seed {config.seed}"
    canonical.validate(converted, config, "--netG")
    file = write(Path(out), converted, config, checkpoint.EXAMPLES_BACKEND, 0, note=note)
    what = "generator and discriminator" if net_d is not None else f"generator (and {note})"
    return file, f"wrote {file}: the {what}, as a {config.preset} canonical state without optimizer state"

"""The canonical state: one framework-neutral set of named arrays for a trained (or training) GAN.

Every backend exports its trainer to this form and imports from it (`Trainer.state_dict` /
`load_state_dict`), so any checkpoint opens on any backend. `common` owns the names and
the layouts; each `*_impl/layout.py` owns only its framework's transposes.

Keys, with the spec's layer names (common/spec.py)::

    generator.convt1.weight              a weighted layer's weight, in the layout below
    generator.convt1.bias                its bias (out_channels,), where the layer has one
    generator.bn1.weight / .bias         batch norm scale (gamma) and offset (beta), (C,)
    generator.bn1.running_mean           batch norm running mean (C,)
    generator.bn1.running_var            running variance (C,), UNBIASED (n / (n - 1)), as PyTorch keeps it
    discriminator.conv1.weight ...       the same for D
    g_optimizer.step                     Adam's step count, int64 scalar (0: no update yet)
    g_optimizer.exp_avg.convt1.weight    Adam's first moment of that parameter, the parameter's layout
    g_optimizer.exp_avg_sq.convt1.weight Adam's second moment (PyTorch's form: eps added after bias correction)
    d_optimizer.*                        the same for D's Adam
    ema_generator.convt1.weight ...      optional (optim.ema > 0): G's moving average, every tensor G
                                         has, its BN running statistics G's own (common/algorithm.py)
    rng.<framework>.*                    optional: a framework's own random state (dropout streams),
                                         which only that framework reads back; others start afresh

Layouts are PyTorch's (LAYOUTS). A file may hold the networks only (a converted
pytorch/examples model): optimizer keys are then absent and an import starts Adam afresh.
The averaged generator's keys are all there or none (`has_ema`): a run that keeps no average,
and every file written before there was one, holds none, and a trainer that keeps one and
imports such a file starts the average from the imported G.

Every tensor is float32 but Adam's step counts, int64 (DTYPES): training stores float32 on
every precision `dcgan train` offers (common/precision.py). Values are held to what training
can leave in a saved state, since the loop saves no state whose weights are not finite
(common/watch.py), so `validate` refuses:

* a weight, bias or BN statistic that is NaN or infinite, and a negative running variance;
* an Adam first moment that is NaN or infinite (an infinite gradient makes the weights NaN
  in the same update, so no saved state holds one);
* an Adam second moment that is NaN or negative. It may be +inf: a squared gradient past
  float32's range leaves it there while the weights stay finite, and Adam goes on from it;
* a negative step count.

rng.* keys are a framework's own state, in its own dtypes and shapes: no rule here covers them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from common.algorithm import EMA_GENERATOR
from common.config import Config
from common.errors import ConfigError
from common.spec import Layer, NetworkSpec, discriminator_spec, generator_spec

# How each kind of tensor is laid out in the canonical state (PyTorch's own layouts).
LAYOUTS = {
    "linear.weight": "(out_features, in_features)",
    "conv.weight": "(out_channels, in_channels, kh, kw): OIHW",
    "conv_transpose.weight": "(in_channels, out_channels, kh, kw): IOHW, PyTorch's ConvTranspose2d (no kernel flip)",
    "bias": "(out_features,)",
    "batch_norm.weight / bias / running_mean / running_var": "(channels,); running_var unbiased",
    "optimizer step": "int64 scalar",
    "images, feature maps": "NCHW",
}

# The dtype of each kind of canonical tensor, by what it holds.
DTYPES = {"weights, BN statistics and Adam's moments": np.dtype(np.float32), "Adam's step counts": np.dtype(np.int64)}

ROLES = ("generator", "discriminator")
OPTIMIZERS = {"generator": "g_optimizer", "discriminator": "d_optimizer"}
MOMENTS = ("exp_avg", "exp_avg_sq")
BN_BUFFERS = ("running_mean", "running_var")
EMA = EMA_GENERATOR  # the role of G's moving average: its keys are ema_generator.<layer>.<name>


@dataclass(frozen=True)
class Entry:
    """One canonical tensor of a network: where it lives and what shape it has."""

    # "generator" | "discriminator" | "ema_generator" (G's moving average) | "features" (`dcgan
    # eval`'s network, common/quality/network.py)
    role: str
    layer: Layer
    name: str  # "weight" | "bias" | "running_mean" | "running_var"

    @property
    def key(self) -> str:
        return f"{self.role}.{self.layer.name}.{self.name}"

    @property
    def trainable(self) -> bool:
        return self.name in ("weight", "bias")

    @property
    def shape(self) -> tuple[int, ...]:
        layer = self.layer
        if layer.kind == "batch_norm":
            return (layer.features,)
        if layer.kind == "linear":
            return (layer.out_features, layer.in_features) if self.name == "weight" else (layer.out_features,)
        if self.name == "bias":
            return (layer.out_channels,)
        k = layer.kernel
        if layer.kind == "conv":
            return (layer.out_channels, layer.in_channels, k, k)
        return (layer.in_channels, layer.out_channels, k, k)


def specs(config: Config) -> dict[str, NetworkSpec]:
    return {"generator": generator_spec(config.model), "discriminator": discriminator_spec(config.model)}


def entries(config: Config, role: str | None = None) -> list[Entry]:
    """Every canonical tensor of the networks, in spec order (parameters in the order the
    frameworks list them: weight, then bias)."""
    return [e for name, spec in specs(config).items() if role in (None, name) for e in network_entries(name, spec)]


def network_entries(role: str, spec: NetworkSpec) -> list[Entry]:
    """Every canonical tensor of one network, keyed under `role`, in spec order."""
    found = []
    for layer in spec.layers:
        if layer.kind == "batch_norm":
            found += [Entry(role, layer, n) for n in ("weight", "bias", *BN_BUFFERS)]
        elif layer.params:
            found += [Entry(role, layer, "weight")] + ([Entry(role, layer, "bias")] if layer.bias else [])
    return found


def ema_entries(config: Config) -> list[Entry]:
    """Every canonical tensor of the averaged generator (optim.ema > 0): G's, under EMA."""
    return network_entries(EMA, generator_spec(config.model))


def has_ema(arrays: dict[str, np.ndarray]) -> bool:
    """Whether a state holds an averaged generator (then `validate` asks for all its keys)."""
    return any(key.startswith(EMA + ".") for key in arrays)


def ema_arrays(arrays: dict[str, np.ndarray], config: Config) -> dict[str, np.ndarray]:
    """What a trainer that keeps the average loads into it: the state's own ema_generator
    tensors, or, from a state that holds none, G's (the average starts from the loaded G)."""
    own = has_ema(arrays)
    return {e.key: arrays[e.key if own else e.key.replace(EMA, "generator", 1)] for e in ema_entries(config)}


def parameters(config: Config, role: str) -> list[Entry]:
    """The trainable tensors of one network, in the order its optimizer holds them."""
    return [e for e in entries(config, role) if e.trainable]


def moment_key(role: str, moment: str, entry: Entry) -> str:
    return f"{OPTIMIZERS[role]}.{moment}.{entry.layer.name}.{entry.name}"


def step_key(role: str) -> str:
    return f"{OPTIMIZERS[role]}.step"


def has_optimizer(arrays: dict[str, np.ndarray]) -> bool:
    return all(step_key(role) in arrays for role in ROLES)


def expected_shapes(config: Config, with_optimizer: bool = True, with_ema: bool = False) -> dict[str, tuple[int, ...]]:
    shapes = {e.key: e.shape for e in entries(config) + (ema_entries(config) if with_ema else [])}
    if with_optimizer:
        for role in ROLES:
            shapes[step_key(role)] = ()
            for e in parameters(config, role):
                shapes.update({moment_key(role, m, e): e.shape for m in MOMENTS})
    return shapes


def validate(arrays: dict[str, np.ndarray], config: Config, source: str = "--checkpoint") -> None:
    """Raises a ConfigError naming the first missing or misshapen tensor, the unknown keys,
    or the first tensor of the wrong dtype or holding values no saved state holds (see the
    module's docstring), saying what it holds."""
    expected = expected_shapes(config, with_optimizer=has_optimizer(arrays), with_ema=has_ema(arrays))
    for key, shape in expected.items():
        if key not in arrays:
            raise ConfigError(
                source, key, f"a canonical state with {key} {shape} for preset {config.preset} (it is missing)"
            )
        if tuple(arrays[key].shape) != shape:
            raise ConfigError(
                source,
                f"{key} {tuple(arrays[key].shape)}",
                f"shape {shape} for preset {config.preset} with this config",
            )
    unknown = sorted(k for k in arrays if k not in expected and not k.startswith("rng."))
    if unknown:
        raise ConfigError(source, ", ".join(unknown[:5]), "keys of the canonical format (common/canonical.py)")
    steps = {step_key(role) for role in ROLES}
    for key in expected:
        kind = "Adam's step counts" if key in steps else "weights, BN statistics and Adam's moments"
        if arrays[key].dtype != DTYPES[kind]:
            raise ConfigError(
                source, f"{key} of dtype {arrays[key].dtype}", f"{DTYPES[kind]}, the canonical dtype of {kind}"
            )
        _check_values(key, arrays[key], source)


def _check_values(key: str, array: np.ndarray, source: str) -> None:
    """Refuses values no saved state holds (the module's docstring lists them), counted."""
    infinite_ok, negative_ok, valid = _allowed_values(key)
    counts = {
        "NaN": np.isnan(array).sum(),
        "infinite": 0 if infinite_ok else np.isinf(array).sum(),
        "negative": 0 if negative_ok else (array < 0).sum(),
    }
    found = [f"{n} {what} value" + ("s" if n > 1 else "") for what, n in counts.items() if n]
    if found:
        raise ConfigError(source, f"{key} holding {' and '.join(found)}", valid)


def _allowed_values(key: str) -> tuple[bool, bool, str]:
    """Whether a tensor may hold infinities and negative values (none may hold NaN), and
    what it holds, as a refusal says it."""
    if key.endswith(".step"):
        return False, False, "a count of Adam's updates, >= 0"
    if ".exp_avg_sq." in key:
        return True, False, "Adam's second moments: numbers >= 0, +inf where a squared gradient overflowed float32"
    if key.endswith(".running_var"):
        return False, False, "a running variance: finite numbers >= 0"
    return False, True, "finite numbers: training saves no state whose weights are not (common/watch.py)"


def fresh_optimizer(config: Config, dtype=np.float32) -> dict[str, np.ndarray]:
    """Adam's state before its first update: step 0, zero moments."""
    arrays = {}
    for role in ROLES:
        arrays[step_key(role)] = np.array(0, dtype=np.int64)
        for e in parameters(config, role):
            arrays.update({moment_key(role, m, e): np.zeros(e.shape, dtype) for m in MOMENTS})
    return arrays


def config_hash(config: Config) -> str:
    """A short hash of the resolved config: two states with equal hashes fit the same model."""
    return hashlib.sha256(config.to_toml().encode()).hexdigest()[:16]


def metadata(config: Config, source_backend: str, step: int, elapsed: float = 0.0, devices: int = 1) -> dict[str, str]:
    """A checkpoint's metadata; `devices` is the data-parallel width it was trained at (the
    global batch was devices x optim.batch_size)."""
    return {
        "preset": config.preset,
        "backend": source_backend,
        "step": str(step),
        "elapsed": repr(elapsed),
        "devices": str(devices),
        "config": config.to_toml(),
        "config_hash": config_hash(config),
    }


# The numpy transposes between PyTorch's kernel layouts and the channels-last ones; each
# framework's layout.py says which applies to which of its kernels.


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    """(out, in, kh, kw) -> (kh, kw, in, out); also IOHW -> (kh, kw, out, in)."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def hwio_to_oihw(k: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def nchw_to_nhwc(images: np.ndarray) -> np.ndarray:
    """Channels-first feature maps (..., C, H, W) as channels-last; vectors pass unchanged."""
    return np.moveaxis(images, -3, -1) if np.ndim(images) >= 4 else images


def nhwc_to_nchw(maps: np.ndarray) -> np.ndarray:
    return np.moveaxis(maps, -1, -3) if np.ndim(maps) >= 4 else maps

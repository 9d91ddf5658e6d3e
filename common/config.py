"""The shared configuration: model, optimisation and data, as frozen dataclasses.

Every framework build reads the same `Config`; nothing about the model or the training
algorithm is decided inside an `*_impl`. Values are validated here, in one place, so that a
bad value fails with one `ConfigError` naming the key, the value and what is valid, before
any framework is imported.

Conventions that the frameworks default to differently are stated once, in the field's
comment, in the PyTorch convention; each build translates them at its edge.

The layer plans are expanded into networks by common/spec.py, which reads this module (this
one imports nothing of it); whether a plan reaches the image size is known only there, so
`common.presets.make_config` builds both specs after `validate`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import tomllib

from common.errors import ConfigError

LAYERS = ("linear", "conv", "conv_transpose")  # a Block's weighted layer (common.spec.WEIGHTED)
# The activation functions: the one table every build maps by name (common.spec.Activation).
ACTIVATIONS = ("relu", "leaky_relu", "tanh")
BLOCK_ACTIVATIONS = (*ACTIVATIONS, "none")  # "none": no activation layer in the block
LATENT_DISTRIBUTIONS = ("normal", "uniform")
INIT_SCHEMES = ("normal", "glorot_uniform")  # of common.spec.INIT_SCHEMES, those a GAN may start from
LOSSES = ("non_saturating",)
G_FAKE_BATCH = ("reuse", "fresh")
# Under data parallelism (--devices N), whose batch BatchNorm normalises by: the global
# batch's statistics (what one device computes), or each device's shard's (what
# DistributedDataParallel computes without SyncBatchNorm; on one device, "ghost" BN over N
# groups). Running statistics move by the mean of the groups' (unbiased) statistics.
BN_STATISTICS = ("global", "per_device")
# The largest integer any key takes: int32's. No size or count gets near it (a network that
# wide fits no memory): a larger value is a slip, and one past int64 would fail deep inside
# numpy or a framework instead of here.
INT_MAX = 2**31 - 1
# The largest seed every backend takes. Keras holds seeds as int32 on torch (uint32 on JAX)
# and seeds a layer with 1000 x its network's seed (2 x seed + 1), plus 500 for a bias, plus
# the layer's index (keras_impl/models.py): at SEED_MAX that is 2,000,001,500 + index, within INT_MAX.
SEED_MAX = 1_000_000


@dataclass(frozen=True)
class Block:
    """One step of a network's layer plan: a weighted layer and what follows it.

    The spec (common/spec.py) expands a block into named layers, in this order:
    [reshape or flatten when the tensor rank must change] weighted layer, batch_norm,
    activation, dropout, [reshape after a generator's linear projection].
    """

    layer: str  # the weighted layer: "linear" | "conv" | "conv_transpose"
    width: int  # output channels as a multiple of ngf/ndf; 0 marks the network's output layer
    kernel: int = 4  # square kernel side (conv and conv_transpose; a linear layer has none)
    stride: int = 2  # conv and conv_transpose only
    padding: int = 1  # PyTorch's Conv2d / ConvTranspose2d `padding`
    bias: bool = False  # whether the weighted layer adds a bias
    batch_norm: bool = False  # BatchNorm after the weighted layer (model.bn_eps, model.bn_momentum)
    activation: str = "none"  # after batch_norm: "relu" | "leaky_relu" | "tanh" | "none"
    dropout: float = 0.0  # probability of dropping, after the activation; 0 means no dropout layer


@dataclass(frozen=True)
class ModelConfig:
    """The two networks: image shape, latent, layer plans and the layers' conventions (`[model]`)."""

    image_size: int = 64  # side of the square images, in pixels
    channels: int = 3  # 3 for RGB, 1 for grey
    latent_dim: int = 100  # length of the latent vector z
    latent_dist: str = "normal"  # z ~ N(0, 1) or U(-1, 1)
    ngf: int = 64  # generator base width
    ndf: int = 64  # discriminator base width
    generator: tuple[Block, ...] = ()  # G's layer plan, z to image ([[model.generator]] tables); set by the preset
    discriminator: tuple[Block, ...] = ()  # D's layer plan, image to one logit; set by the preset
    leaky_slope: float = 0.2  # negative slope of every leaky_relu (PyTorch default 0.01, Keras 0.3)
    bn_eps: float = 1e-5  # added to the batch variance in BatchNorm (PyTorch's default; Keras's is 1e-3)
    bn_momentum: float = 0.1  # weight of the new batch statistic (PyTorch); Flax/Keras momentum = 1 - this
    init: str = "normal"  # "normal": DCGAN's N(0, init_std), BN scale N(1, init_std); "glorot_uniform"
    init_std: float = 0.02  # standard deviation of init "normal"'s draws
    bn_statistics: str = "global"  # BN_STATISTICS: with --devices N, the global batch's or each device's


@dataclass(frozen=True)
class OptimConfig:
    """The training algorithm: batch, the two Adams, the D/G schedule and the loss (`[optim]`)."""

    batch_size: int = 128  # images per D update; per device with --devices N (global batch N x this)
    lr_g: float = 2e-4  # the generator's Adam learning rate
    lr_d: float = 2e-4  # the discriminator's Adam learning rate
    beta1: float = 0.5  # Adam's beta1 for both networks (Radford et al.'s 0.5; Adam's default is 0.9)
    beta2: float = 0.999  # Adam's beta2 for both networks
    eps: float = 1e-8  # Adam's epsilon, added to sqrt(v_hat) as in Kingma & Ba (PyTorch, optax)
    d_steps: int = 1  # k: discriminator updates per generator update (Goodfellow et al., Algorithm 1)
    real_label: float = 1.0  # target for real images; 0.9 is one-sided label smoothing
    loss: str = "non_saturating"  # BCE on logits; G maximises log D(G(z))
    g_fake_batch: str = "reuse"  # G update reuses the D step's fakes ("reuse") or draws new noise ("fresh")
    # The decay of G's exponential moving average (Yazıcı et al. 2019), kept beside G and used
    # for samples and scores (common/algorithm.py); 0 keeps none. 0.999 averages ~1000 iterations.
    ema: float = 0.0
    # A run that diverges (NaN/Inf) goes back to its last checkpoint with both learning rates
    # halved, at most this many times, before it stops; 0 stops at once (common/bookkeeping.py).
    divergence_rollbacks: int = 0


@dataclass(frozen=True)
class DataConfig:
    """Where the training images come from and how they are prepared (`[data]`)."""

    dataset: str = "fashion-mnist"  # fashion-mnist, mnist, fake, a folder of images, tfds:NAME or torchvision:NAME
    data_dir: str = ""  # "" means the dataset's default location
    image_size: int = 0  # 0 means the model's image_size
    channels: int = 0  # 0 means the model's channels
    center_crop: int = 0  # crop a centred square of this size before resizing; 0 means none
    value_range: tuple[float, float] = (-1.0, 1.0)  # pixels are scaled to this range (tanh's)


@dataclass(frozen=True)
class Config:
    """A whole config: the preset it started from, the three sections, and the seed."""

    preset: str  # the preset this config was made from (common/presets.py)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0  # weights, data order and noise all follow it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(_tomlable(self.to_dict()))


SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "data": DataConfig}


# --------------------------------------------------------------------------- validation


def validate(config: Config) -> Config:
    """Checks every value; returns the config with data.image_size/channels resolved.

    Each key's own range is checked first, for the most precise message; then every field,
    whatever checks it has of its own, is held to its type (`_check_types`): an integer up
    to INT_MAX, a finite float, a bool, a string, so that a key added later is checked too.
    Whether the layer plans reach the image size is the spec's to say (common/spec.py builds
    them; `common.presets.make_config` does after this).
    """
    m, o, d = config.model, config.optim, config.data
    for key in ("image_size", "channels", "latent_dim", "ngf", "ndf"):
        _positive_int(f"model.{key}", getattr(m, key))
    _one_of("model.latent_dist", m.latent_dist, LATENT_DISTRIBUTIONS)
    _one_of("model.init", m.init, INIT_SCHEMES)
    _one_of("model.bn_statistics", m.bn_statistics, BN_STATISTICS)
    _in_range("model.leaky_slope", m.leaky_slope, 0.0, 1.0, "a number in [0, 1)", hi_open=True)
    _in_range("model.bn_eps", m.bn_eps, 0.0, math.inf, "a number > 0 and finite", lo_open=True)
    _in_range("model.bn_momentum", m.bn_momentum, 0.0, 1.0, "a number in (0, 1)", lo_open=True, hi_open=True)
    _in_range("model.init_std", m.init_std, 0.0, math.inf, "a number > 0 and finite", lo_open=True)
    for net in ("generator", "discriminator"):
        blocks = getattr(m, net)
        if not blocks:
            raise ConfigError(f"model.{net}", blocks, "a non-empty list of blocks")
        for i, block in enumerate(blocks):
            _validate_block(f"model.{net}[{i}]", block, last=i == len(blocks) - 1)

    _positive_int("optim.batch_size", o.batch_size)
    _positive_int("optim.d_steps", o.d_steps)
    for key in ("lr_g", "lr_d", "eps"):
        _in_range(f"optim.{key}", getattr(o, key), 0.0, math.inf, "a number > 0 and finite", lo_open=True)
    for key in ("beta1", "beta2"):
        _in_range(f"optim.{key}", getattr(o, key), 0.0, 1.0, "a number in [0, 1)", hi_open=True)
    _in_range("optim.real_label", o.real_label, 0.5, 1.0, "a number in (0.5, 1]", lo_open=True)
    _one_of("optim.loss", o.loss, LOSSES)
    _one_of("optim.g_fake_batch", o.g_fake_batch, G_FAKE_BATCH)
    _in_range(
        "optim.ema", o.ema, 0.0, 1.0, "a number in [0, 1): the decay of G's moving average, 0 for none", hi_open=True
    )
    _int("optim.divergence_rollbacks", o.divergence_rollbacks)
    if o.divergence_rollbacks < 0:
        raise ConfigError("optim.divergence_rollbacks", o.divergence_rollbacks, "a whole number >= 0 (0: stop at once)")

    if not d.dataset:
        raise ConfigError("data.dataset", d.dataset, "a dataset name or a folder path")
    for key, model_value in (("image_size", m.image_size), ("channels", m.channels)):
        value = getattr(d, key)
        if value not in (0, model_value):
            raise ConfigError(f"data.{key}", value, f"0 (the model's) or model.{key}={model_value}")
    _int("data.center_crop", d.center_crop)
    if d.center_crop < 0 or (d.center_crop and d.center_crop < m.image_size):
        raise ConfigError("data.center_crop", d.center_crop, f"0 (none) or a size >= model.image_size={m.image_size}")
    if tuple(d.value_range) != (-1.0, 1.0):
        raise ConfigError("data.value_range", d.value_range, "[-1.0, 1.0], the range of the generator's tanh")
    seed = config.seed  # numpy's generators take no negative seed; SEED_MAX is Keras's
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
        raise ConfigError("seed", seed, f"a non-negative integer up to {SEED_MAX}, the largest every backend takes")
    _check_types("", config)

    return dataclasses.replace(config, data=dataclasses.replace(d, image_size=m.image_size, channels=m.channels))


def _validate_block(key: str, block: Block, last: bool) -> None:
    _one_of(f"{key}.layer", block.layer, LAYERS)
    _one_of(f"{key}.activation", block.activation, BLOCK_ACTIVATIONS)
    _int(f"{key}.width", block.width)
    if last and block.width != 0:
        raise ConfigError(f"{key}.width", block.width, "0 on the last block, which is the network's output")
    if not last and block.width <= 0:
        raise ConfigError(
            f"{key}.width", block.width, "a positive multiple of the base width (0 only on the last block)"
        )
    for name in ("kernel", "stride"):
        _positive_int(f"{key}.{name}", getattr(block, name))
    _int(f"{key}.padding", block.padding)
    if block.padding < 0 or block.padding >= block.kernel:
        raise ConfigError(f"{key}.padding", block.padding, f"an integer in [0, kernel={block.kernel})")
    _in_range(f"{key}.dropout", block.dropout, 0.0, 1.0, "a number in [0, 1)", hi_open=True)


def _check_types(prefix: str, obj: Any) -> None:
    """Every field of a config dataclass (and of the sections and blocks in it) held to its
    annotated type: TOML and Python both give integers of any size and floats that are
    infinite or NaN, which no key takes."""
    for name, kind in typing.get_type_hints(type(obj)).items():
        _check_type(f"{prefix}{name}", kind, getattr(obj, name))


def _check_type(key: str, kind: Any, value: Any) -> None:
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, kind):
            raise ConfigError(key, value, f"a {kind.__name__}")
        _check_types(f"{key}.", value)
    elif typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, "a list")
        kinds = [args[0]] * len(value) if args and args[-1] is Ellipsis else args
        if len(kinds) != len(value):
            raise ConfigError(key, value, f"a list of {len(kinds)} values")
        for i, (item_kind, item) in enumerate(zip(kinds, value)):
            _check_type(f"{key}[{i}]", item_kind, item)
    elif kind is int:
        _int(key, value)
    elif kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ConfigError(key, value, "a finite number")
    elif kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, value, "true or false")
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(key, value, "a string")
    else:
        raise TypeError(f"no check for {kind}")  # a programming error: a field of a type not handled here


def _int(key: str, value: Any) -> None:
    """An int (not a bool) up to INT_MAX; each key's lower bound is checked where it is used."""
    if not isinstance(value, int) or isinstance(value, bool) or value > INT_MAX:
        raise ConfigError(key, value, f"an integer up to {INT_MAX}")


def _positive_int(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= INT_MAX:
        raise ConfigError(key, value, f"a positive integer up to {INT_MAX}")


def _one_of(key: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(key, value, "one of " + ", ".join(valid))


def _in_range(key, value, lo, hi, valid, lo_open=False, hi_open=False) -> None:
    """A finite number in [lo, hi] (an open end excluded): no key takes infinity, even one
    with no upper bound (`hi` = math.inf)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(key, value, valid)
    if (value < lo or (lo_open and value == lo)) or (value > hi or (hi_open and value == hi)):
        raise ConfigError(key, value, valid)


# --------------------------------------------------------------------------- overrides


def apply_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """Returns `config` with dotted keys replaced (`{"model.ngf": 32}`), type-checked.

    Values are the parsed TOML values (int, float, str, bool, list, table). The result is
    not validated; call `validate` once all overrides are in.
    """
    sections = {name: getattr(config, name) for name in SECTIONS}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section == "seed" and not name:
            top["seed"] = _coerce("seed", int, value)
            continue
        if section not in SECTIONS or not name:
            raise ConfigError(
                key, value, "a key of the form section.name, section one of " + ", ".join(SECTIONS) + ", or seed"
            )
        types = typing.get_type_hints(SECTIONS[section])
        if name not in types:
            raise ConfigError(key, value, f"a known key; {section} has: " + ", ".join(types))
        sections[section] = dataclasses.replace(sections[section], **{name: _coerce(key, types[name], value)})
    return dataclasses.replace(config, **sections, **top)


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parses `--set key=value` strings; values are TOML literals, else plain strings."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", item, "key=value, for example model.ngf=32")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        overrides[key.strip()] = value
    return overrides


def load_toml(path: str | Path) -> dict[str, Any]:
    """Reads a TOML override file (`[model] ngf = 32`) into dotted keys."""
    path = Path(path)
    try:
        return toml_overrides(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("--config", str(path), "an existing TOML file") from None
    except IsADirectoryError:
        raise ConfigError("--config", str(path), "a TOML file (this is a directory)") from None
    except OSError as err:
        raise ConfigError("--config", str(path), f"a readable TOML file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            "--config", str(path), f"a TOML file, which is UTF-8 text (byte {err.start} is not)"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("--config", str(path), f"valid TOML ({err})") from None


def toml_overrides(text: str) -> dict[str, Any]:
    """TOML text (a saved config.toml, or a file of overrides) -> dotted keys."""
    overrides: dict[str, Any] = {}
    for section, values in tomllib.loads(text).items():
        if isinstance(values, dict):
            for name, value in values.items():
                overrides[f"{section}.{name}"] = value
        else:
            overrides[section] = values
    overrides.pop("preset", None)  # a saved run's config.toml names its preset; the caller chooses one
    return overrides


def _coerce(key: str, kind: Any, value: Any) -> Any:
    origin = typing.get_origin(kind)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, value, "true or false")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, value, "an integer")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(key, value, "a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, value, "a string")
    if origin is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, "a list")
        if args and args[-1] is Ellipsis:
            return tuple(_coerce(f"{key}[{i}]", args[0], v) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(key, value, f"a list of {len(args)} values")
        return tuple(_coerce(f"{key}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value)))
    if kind is Block:
        if isinstance(value, Block):
            return value
        if not isinstance(value, dict):
            raise ConfigError(key, value, "a table with keys " + ", ".join(f.name for f in dataclasses.fields(Block)))
        types = typing.get_type_hints(Block)
        unknown = set(value) - set(types)
        if unknown:
            raise ConfigError(
                f"{key}.{sorted(unknown)[0]}", value[sorted(unknown)[0]], "a known block key: " + ", ".join(types)
            )
        if "layer" not in value or "width" not in value:
            raise ConfigError(key, value, "a table with at least `layer` and `width`")
        return Block(**{k: _coerce(f"{key}.{k}", types[k], v) for k, v in value.items()})
    raise TypeError(f"no coercion for {kind}")  # a programming error, not user input


def _tomlable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _tomlable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tomlable(v) for v in value]
    return value

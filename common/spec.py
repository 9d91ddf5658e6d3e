"""The architecture spec: each network as an ordered list of named layers, from the config.

This is the one description every framework builds from. Shapes are given per example
(no batch axis) in PyTorch's channels-first layout, CHW; the JAX and Keras builds run
channels-last and translate at their edge. Output shapes and parameter counts are computed
here analytically, with no framework, so the parity suite can hold each build to them.

Layer names are shared by all builds: the layers of plan block i are called `fc{i}`,
`conv{i}` or `convt{i}` (the weighted layer), `bn{i}`, `act{i}`, `pool{i}`, `drop{i}`, and
`reshape{i}` / `flatten{i}` where the tensor rank changes. A reader finds `convt2` under
that name in PyTorch, Flax and Keras alike.

The generator and discriminator are expanded here from the config's layer plans
(`generator_spec`, `discriminator_spec`); other networks are written in the same layers
directly (`dcgan eval`'s feature network, common/quality/network.py). This module reads the
config; the config knows nothing of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import prod
from typing import ClassVar

from common.config import ACTIVATIONS, Block, ModelConfig
from common.errors import ConfigError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Layer:
    """Base of every layer spec: a name, the input shape, and derived output shape and size."""

    kind: ClassVar[str]
    name: str
    in_shape: Shape

    @property
    def out_shape(self) -> Shape:
        return self.in_shape

    @property
    def params(self) -> int:
        """Trainable parameters (BN running statistics are state, not parameters)."""
        return 0


@dataclass(frozen=True)
class Linear(Layer):
    kind: ClassVar[str] = "linear"
    out_features: int
    bias: bool

    @property
    def in_features(self) -> int:
        return self.in_shape[0]

    @property
    def out_shape(self) -> Shape:
        return (self.out_features,)

    @property
    def params(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class Conv(Layer):
    """nn.Conv2d(in, out, kernel, stride, padding): zero padding of `padding` on each side."""

    kind: ClassVar[str] = "conv"
    out_channels: int
    kernel: int
    stride: int
    padding: int
    bias: bool

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    def out_size(self, size: int) -> int:
        return (size + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_shape(self) -> Shape:
        _, h, w = self.in_shape
        return (self.out_channels, self.out_size(h), self.out_size(w))

    @property
    def params(self) -> int:
        weights = self.in_channels * self.out_channels * self.kernel**2
        return weights + (self.out_channels if self.bias else 0)


@dataclass(frozen=True)
class ConvTranspose(Conv):
    """nn.ConvTranspose2d(in, out, kernel, stride, padding): out = (in - 1)·stride - 2·padding + kernel."""

    kind: ClassVar[str] = "conv_transpose"

    def out_size(self, size: int) -> int:
        return (size - 1) * self.stride - 2 * self.padding + self.kernel

    def in_size(self, size: int) -> int | None:
        """The input size that gives output `size`, or None if none does."""
        numerator = size + 2 * self.padding - self.kernel
        if numerator < 0 or numerator % self.stride:
            return None
        return numerator // self.stride + 1


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch norm over the channel axis (the feature axis for a vector).

    `momentum` is PyTorch's: the weight of the new batch statistic.
    """

    kind: ClassVar[str] = "batch_norm"
    eps: float
    momentum: float

    @property
    def features(self) -> int:
        return self.in_shape[0]

    @property
    def params(self) -> int:
        return 2 * self.features  # scale (gamma) and offset (beta)


@dataclass(frozen=True)
class Activation(Layer):
    """An elementwise function, one of common.config.ACTIVATIONS, which every build maps by name."""

    kind: ClassVar[str] = "activation"
    fn: str
    negative_slope: float = 0.0  # leaky_relu only

    def __post_init__(self):
        if self.fn not in ACTIVATIONS:  # the config refuses it first; this catches a hand-written spec
            raise ValueError(f"activation {self.fn!r} of {self.name}: not one of {', '.join(ACTIVATIONS)}")


@dataclass(frozen=True)
class MaxPool(Layer):
    """nn.MaxPool2d(kernel, stride): the largest value of each kernel x kernel window, no
    padding, a partial window at the edge dropped (out = floor((in - kernel) / stride) + 1)."""

    kind: ClassVar[str] = "max_pool"
    kernel: int
    stride: int

    def out_size(self, size: int) -> int:
        return (size - self.kernel) // self.stride + 1

    @property
    def out_shape(self) -> Shape:
        c, h, w = self.in_shape
        return (c, self.out_size(h), self.out_size(w))


@dataclass(frozen=True)
class Dropout(Layer):
    kind: ClassVar[str] = "dropout"
    rate: float


@dataclass(frozen=True)
class Reshape(Layer):
    """A vector to a CHW feature map, as PyTorch's `view(-1, C, H, W)` orders it."""

    kind: ClassVar[str] = "reshape"
    shape: Shape

    @property
    def out_shape(self) -> Shape:
        return self.shape


@dataclass(frozen=True)
class Flatten(Layer):
    """A CHW feature map to a vector, in PyTorch's C-major order."""

    kind: ClassVar[str] = "flatten"

    @property
    def out_shape(self) -> Shape:
        return (prod(self.in_shape),)


# The weighted layer a plan Block names (common.config.LAYERS), by name.
WEIGHTED = {cls.kind: cls for cls in (Linear, Conv, ConvTranspose)}

INIT_SCHEMES = ("normal", "glorot_uniform", "kaiming_uniform")


@dataclass(frozen=True)
class Init:
    """How weights start. "normal": DCGAN's rule, weights N(0, std), BN scale N(1, std);
    "glorot_uniform": U(±sqrt(6 / (fan_in + fan_out))), BN scale 1; biases 0 in both.
    "kaiming_uniform": PyTorch's own default for Linear and Conv2d (``kaiming_uniform_`` with
    a = sqrt(5), He et al. 2015), weights and biases U(±1/sqrt(fan_in)), BN scale 1; `std`
    unused. BN offsets start at 0 in all three."""

    scheme: str
    std: float

    def __post_init__(self):
        if self.scheme not in INIT_SCHEMES:
            raise ValueError(f"init scheme {self.scheme!r}: not one of {', '.join(INIT_SCHEMES)}")

    def weight_std(self, layer: Layer) -> float:
        """The standard deviation the weights of `layer` are drawn with."""
        if self.scheme == "normal":
            return self.std
        return self.weight_limit(layer) / 3**0.5  # a uniform on ±a has std a/sqrt(3)

    def weight_limit(self, layer: Layer) -> float:
        """The bound a of the uniform U(±a) the weights of `layer` are drawn from (uniform schemes)."""
        return self.glorot_limit(layer) if self.scheme == "glorot_uniform" else self.fan_in_limit(layer)

    def bias_limit(self, layer: Layer) -> float:
        """The bound a of the uniform U(±a) the biases of `layer` are drawn from; 0: they start at 0."""
        return self.fan_in_limit(layer) if self.scheme == "kaiming_uniform" else 0.0

    @staticmethod
    def glorot_limit(layer: Layer) -> float:
        """Glorot's uniform bound for `layer`: sqrt(6 / (fan_in + fan_out))."""
        if isinstance(layer, Linear):
            fans = layer.in_features + layer.out_features
        else:
            fans = (layer.in_channels + layer.out_channels) * layer.kernel**2
        return (6 / fans) ** 0.5

    @staticmethod
    def fan_in_limit(layer: Layer) -> float:
        """1/sqrt(fan_in), fan_in as PyTorch reads it off the weight's dimension 1: in_features,
        in_channels·k² for a convolution, out_channels·k² for a transposed one (IOHW)."""
        if isinstance(layer, Linear):
            fan_in = layer.in_features
        elif isinstance(layer, ConvTranspose):
            fan_in = layer.out_channels * layer.kernel**2
        else:
            fan_in = layer.in_channels * layer.kernel**2
        return 1 / fan_in**0.5

    @property
    def bn_scale_std(self) -> float:
        return self.std if self.scheme == "normal" else 0.0


@dataclass(frozen=True)
class NetworkSpec:
    name: str  # "generator" | "discriminator" | "features" (common/quality/network.py)
    in_shape: Shape
    layers: tuple[Layer, ...]
    init: Init

    @property
    def out_shape(self) -> Shape:
        return self.layers[-1].out_shape

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


# --------------------------------------------------------------------------- building


class _Unreachable(Exception):
    """The plan cannot produce the wanted shape at this image size (turned into a ConfigError)."""


def generator_spec(model: ModelConfig) -> NetworkSpec:
    """z (latent_dim,) -> image (channels, image_size, image_size)."""
    return _reachable_or_error(_generator_spec, model)


def discriminator_spec(model: ModelConfig) -> NetworkSpec:
    """image (channels, image_size, image_size) -> one logit (1,)."""
    return _reachable_or_error(_discriminator_spec, model)


def _generator_spec(model: ModelConfig) -> NetworkSpec:
    for i, block in enumerate(model.generator[1:], start=1):
        if block.layer != "conv_transpose":
            raise ConfigError(
                f"model.generator[{i}].layer", block.layer, "conv_transpose (only the first block may be linear)"
            )
    target = (model.channels, model.image_size, model.image_size)
    start = _generator_start_size(model)
    layers: list[Layer] = []
    shape: Shape = (model.latent_dim,)
    for i, block in enumerate(model.generator, start=1):
        out_channels = model.channels if block.width == 0 else block.width * model.ngf
        if block.layer == "linear":
            layers += _expand(model, block, i, shape, out_channels * start * start)
            layers.append(Reshape(f"reshape{i}", layers[-1].out_shape, (out_channels, start, start)))
        else:
            if len(shape) == 1:  # a latent vector enters a convolution as a 1x1 map
                layers.append(Reshape(f"reshape{i}", shape, (shape[0], 1, 1)))
                shape = layers[-1].out_shape
            layers += _expand(model, block, i, shape, out_channels)
        shape = layers[-1].out_shape
    if shape != target:
        raise _Unreachable(f"the generator plan ends at {_fmt(shape)}, not {_fmt(target)}")
    return NetworkSpec("generator", (model.latent_dim,), tuple(layers), Init(model.init, model.init_std))


def _discriminator_spec(model: ModelConfig) -> NetworkSpec:
    for i, block in enumerate(model.discriminator[:-1]):
        if block.layer != "conv":
            raise ConfigError(
                f"model.discriminator[{i}].layer", block.layer, "conv (only the last block may be linear)"
            )
    shape: Shape = (model.channels, model.image_size, model.image_size)
    in_shape = shape
    layers: list[Layer] = []
    for i, block in enumerate(model.discriminator, start=1):
        out = 1 if block.width == 0 else block.width * model.ndf
        if block.layer == "linear":
            layers.append(Flatten(f"flatten{i}", shape))
            shape = layers[-1].out_shape
        elif min(shape[1:]) + 2 * block.padding < block.kernel:
            raise _Unreachable(f"the discriminator's conv{i} gets a {_fmt(shape)} map, smaller than its kernel")
        layers += _expand(model, block, i, shape, out)
        shape = layers[-1].out_shape
    if len(shape) == 3:
        if shape != (1, 1, 1):
            raise _Unreachable(f"the discriminator plan ends at {_fmt(shape)}, not one logit (1x1x1)")
        layers.append(Flatten(f"flatten{len(model.discriminator)}", shape))
    return NetworkSpec("discriminator", in_shape, tuple(layers), Init(model.init, model.init_std))


def _expand(model: ModelConfig, block: Block, i: int, shape: Shape, out: int) -> list[Layer]:
    """A plan block -> its weighted layer, then batch norm, activation and dropout."""
    weighted = WEIGHTED[block.layer]
    if weighted is Linear:
        layers: list[Layer] = [Linear(f"fc{i}", shape, out, block.bias)]
    else:
        name = "conv" if weighted is Conv else "convt"
        layers = [weighted(f"{name}{i}", shape, out, block.kernel, block.stride, block.padding, block.bias)]
    if block.batch_norm:
        layers.append(BatchNorm(f"bn{i}", layers[-1].out_shape, model.bn_eps, model.bn_momentum))
    if block.activation != "none":
        slope = model.leaky_slope if block.activation == "leaky_relu" else 0.0
        layers.append(Activation(f"act{i}", layers[-1].out_shape, block.activation, slope))
    if block.dropout:
        layers.append(Dropout(f"drop{i}", layers[-1].out_shape, block.dropout))
    return layers


def _generator_start_size(model: ModelConfig) -> int:
    """The side of the map a linear projection must produce so the rest reaches image_size.

    Worked backwards through the transposed convolutions; plans that start with a
    transposed convolution start from a 1x1 map.
    """
    if model.generator[0].layer != "linear":
        return 1
    size = model.image_size
    for block in reversed(model.generator[1:]):
        probe = ConvTranspose("probe", (1, 1, 1), 1, block.kernel, block.stride, block.padding, False)
        previous = probe.in_size(size)
        if not previous:
            raise _Unreachable(
                f"no input size gives {size}x{size} through a conv_transpose "
                f"{block.kernel}/{block.stride}/{block.padding} of the generator plan"
            )
        size = previous
    return size


def _reachable_or_error(build, model: ModelConfig) -> NetworkSpec:
    try:
        return build(model)
    except _Unreachable as err:
        sizes = reachable_image_sizes(model)
        listed = ", ".join(map(str, sizes[:12])) + (" ..." if len(sizes) > 12 else "") if sizes else "none"
        raise ConfigError(
            "model.image_size", model.image_size, f"{err}; image sizes this layer plan reaches: {listed}"
        ) from None


def reachable_image_sizes(model: ModelConfig, largest: int = 512) -> list[int]:
    """Every image size up to `largest` that both networks of this plan can be built for."""
    sizes = []
    for size in range(1, largest + 1):
        candidate = dataclasses.replace(model, image_size=size)
        try:
            _generator_spec(candidate)
            _discriminator_spec(candidate)
        except (_Unreachable, ConfigError):
            continue
        sizes.append(size)
    return sizes


def _fmt(shape: Shape) -> str:
    return "x".join(map(str, shape))

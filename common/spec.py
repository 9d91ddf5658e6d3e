"""The architecture spec: each network as an ordered list of named layers, from the config.

This is the one description every framework builds from. Shapes are given per example
(no batch axis) in PyTorch's channels-first layout, CHW; the JAX and Keras builds run
channels-last and translate at their edge. Output shapes and parameter counts are computed
here analytically, with no framework, so the parity suite can hold each build to them.

Layer names are shared by all builds: the layers of plan block i are called `fc{i}`,
`conv{i}` or `convt{i}` (the weighted layer), `bn{i}`, `act{i}`, `drop{i}`, and
`reshape{i}` / `flatten{i}` where the tensor rank changes. A reader finds `convt2` under
that name in PyTorch, Flax and Keras alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, ClassVar

from common.errors import ConfigError

if TYPE_CHECKING:
    from common.config import Block, ModelConfig

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
    kind: ClassVar[str] = "activation"
    fn: str  # "relu" | "leaky_relu" | "tanh"
    negative_slope: float = 0.0  # leaky_relu only


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


WEIGHTED_KINDS = tuple(cls.kind for cls in (Linear, Conv, ConvTranspose))  # the kinds a Block's `layer` names


@dataclass(frozen=True)
class Init:
    """How weights start. "normal": DCGAN's rule, weights N(0, std), BN scale N(1, std);
    "glorot_uniform": U(±sqrt(6 / (fan_in + fan_out))), BN scale 1. Biases and BN offsets 0."""

    scheme: str
    std: float

    def weight_std(self, layer: Layer) -> float:
        """The standard deviation the weights of `layer` are drawn with."""
        if self.scheme == "normal":
            return self.std
        return self.glorot_limit(layer) / 3**0.5  # a uniform on ±a has std a/sqrt(3)

    @staticmethod
    def glorot_limit(layer: Layer) -> float:
        """Glorot's uniform bound for `layer`: sqrt(6 / (fan_in + fan_out))."""
        if isinstance(layer, Linear):
            fans = layer.in_features + layer.out_features
        else:
            fans = (layer.in_channels + layer.out_channels) * layer.kernel**2
        return (6 / fans) ** 0.5

    @property
    def bn_scale_std(self) -> float:
        return self.std if self.scheme == "normal" else 0.0


@dataclass(frozen=True)
class NetworkSpec:
    name: str  # "generator" | "discriminator"
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
    if block.layer == "linear":
        layers: list[Layer] = [Linear(f"fc{i}", shape, out, block.bias)]
    elif block.layer == "conv":
        layers = [Conv(f"conv{i}", shape, out, block.kernel, block.stride, block.padding, block.bias)]
    else:
        layers = [ConvTranspose(f"convt{i}", shape, out, block.kernel, block.stride, block.padding, block.bias)]
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

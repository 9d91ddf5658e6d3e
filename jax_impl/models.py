"""The networks as Flax NNX modules, built from the shared spec: the generator and
discriminator, and `dcgan eval`'s feature network (jax_impl/features.py).

Each spec layer becomes one attribute under the spec's name, so `Generator(...).convt2` is
the layer the spec calls `convt2`. Feature maps are NHWC, as XLA prefers; the reshape and
flatten layers view vectors in PyTorch's CHW order before moving to NHWC, so a linear
layer's weights mean the same thing here as in the canonical (PyTorch) layout.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from common.config import ModelConfig
from common.spec import Init, Layer, NetworkSpec, discriminator_spec, generator_spec
from jax_impl.convolutions import conv, conv_transpose

# common.config.ACTIVATIONS -> the function computing it (leaky_relu with the spec's slope)
ACTIVATIONS = {
    "relu": lambda x, slope: nnx.relu(x),
    "leaky_relu": lambda x, slope: nnx.leaky_relu(x, negative_slope=slope),
    "tanh": lambda x, slope: nnx.tanh(x),
}


class Activation(nnx.Module):
    def __init__(self, fn: str, negative_slope: float = 0.0):
        self.fn, self.negative_slope = ACTIVATIONS[fn], negative_slope

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x, self.negative_slope)


class MaxPool(nnx.Module):
    """(N, H, W, C) -> the largest value of each window, no padding (nnx.max_pool)."""

    def __init__(self, kernel: int, stride: int):
        self.kernel, self.stride = kernel, stride

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.max_pool(x, (self.kernel, self.kernel), (self.stride, self.stride), "VALID")


class Reshape(nnx.Module):
    """(N, C*H*W) -> (N, H, W, C), with the vector read in PyTorch's C-major order."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape = shape

    def __call__(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0], *self.shape).transpose(0, 2, 3, 1)


class Flatten(nnx.Module):
    """(N, H, W, C) -> (N, C*H*W), in PyTorch's C-major order."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)


class BatchNorm(nnx.BatchNorm):
    """Flax's BatchNorm with PyTorch's statistics, which nnx.BatchNorm computes differently.

    The batch variance is the two-pass mean((x - mean)^2) (Flax defaults to the faster
    E[x^2] - E[x]^2, which loses precision when the mean is large), and the running variance
    is updated with the UNBIASED batch variance, n / (n - 1) times it, as PyTorch's is
    (Flax keeps the biased one). Normalisation uses the biased variance in both. The running
    statistics are held in `param_dtype` (nnx.BatchNorm keeps them in float32 regardless).
    Under mixed precision (dtype bfloat16, param_dtype float32) it computes in float32 and
    returns `dtype`, as Flax's own BatchNorm does: statistics of bfloat16 values lose too much.

    `groups` > 1 normalises each 1/groups of the batch by its own statistics ("ghost" batch
    norm; model.bn_statistics = "per_device" on that many devices, each holding one group),
    and moves the running statistics by the mean of the groups'.
    """

    groups = 1

    def __init__(self, num_features: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.mean = nnx.BatchStat(self.mean[...].astype(self.param_dtype))
        self.var = nnx.BatchStat(self.var[...].astype(self.param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        shape, groups = x.shape, 1 if self.use_running_average else self.groups
        x = x.astype(self.param_dtype).reshape(groups, shape[0] // groups, *shape[1:])
        axes = tuple(range(1, x.ndim - 1))  # within a group, all but the channel (feature) axis
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            mean = x.mean(axes, keepdims=True)
            var = jnp.square(x - mean).mean(axes, keepdims=True)
            n = x[0].size // x.shape[-1]  # values per channel in a group
            momentum = self.momentum  # Flax's: the weight of the old statistic
            batch_mean, batch_var = mean.reshape(-1, shape[-1]).mean(0), var.reshape(-1, shape[-1]).mean(0)
            self.mean[...] = jax.lax.stop_gradient(momentum * self.mean[...] + (1 - momentum) * batch_mean)
            self.var[...] = jax.lax.stop_gradient(momentum * self.var[...] + (1 - momentum) * batch_var * n / (n - 1))
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon) * self.scale[...] + self.bias[...]
        return y.reshape(shape).astype(self.dtype)


class Conv(nnx.Conv):
    """nnx.Conv as make_layer builds it (explicit padding, no dilation, groups or mask),
    computed by jax_impl/convolutions.py: the same values, with an input gradient XLA's CPU
    backend runs far faster (docs/benchmarks.md). Parameters, casts (promote_dtype) and bias
    are Flax's own."""

    def __call__(self, x: jax.Array) -> jax.Array:
        bias = self.bias[...] if self.use_bias else None
        x, kernel, bias = self.promote_dtype((x, self.kernel[...], bias), dtype=self.dtype)
        y = conv(x, kernel, tuple(self.strides), tuple(map(tuple, self.padding)))
        return y + bias if self.use_bias else y


class ConvTranspose(nnx.ConvTranspose):
    """nnx.ConvTranspose as make_layer builds it (explicit padding, no dilation or mask),
    computed by jax_impl/convolutions.py: the same values, with a forward pass and gradients
    XLA's CPU backend runs far faster (docs/benchmarks.md). Parameters, casts (promote_dtype)
    and bias are Flax's own."""

    def __call__(self, x: jax.Array) -> jax.Array:
        bias = self.bias[...] if self.use_bias else None
        x, kernel, bias = self.promote_dtype((x, self.kernel[...], bias), dtype=self.dtype)
        y = conv_transpose(x, kernel, tuple(self.strides), tuple(map(tuple, self.padding)))
        return y + bias if self.use_bias else y


def drawn_flat(draw):
    """An initializer that draws its numbers as one flat vector, reshaped to the parameter's
    shape: draw(key, n, dtype) -> n numbers. The values are those of drawing the shape itself
    (JAX's partitionable threefry numbers the elements in row-major order), and XLA's CPU
    compiler takes about a quarter of the time: ~0.3 s instead of ~1.2 s for each 4-D draw,
    which made compiling the initialisation slower than a training step's."""

    def init(key, shape, dtype=jnp.float32):
        return draw(key, math.prod(shape), dtype).reshape(shape)

    return init


def kernel_init(init: Init, layer: Layer):
    """Weights ~ N(0, std) (DCGAN's rule, Flax's nnx.initializers.normal) or a uniform U(±limit)
    (Glorot's or PyTorch's default), the bound from the spec (common.spec.Init.weight_limit),
    drawn as nnx.initializers.glorot_uniform draws it."""
    if init.scheme == "normal":
        return drawn_flat(lambda key, n, dtype: jax.random.normal(key, (n,), dtype) * init.std)
    return _uniform(init.weight_limit(layer))


def bias_init(init: Init, layer: Layer):
    """Biases U(±limit) where the scheme draws them (common.spec.Init.bias_limit), else zeros."""
    limit = init.bias_limit(layer)
    return _uniform(limit) if limit else nnx.initializers.zeros_init()


def _uniform(limit: float):
    return drawn_flat(lambda key, n, dtype: jax.random.uniform(key, (n,), dtype, -1) * limit)


def bn_scale_init(std: float):
    """BN scale ~ N(1, std): DCGAN's rule (std 0 gives Flax's ones)."""
    return drawn_flat(lambda key, n, dtype: 1.0 + std * jax.random.normal(key, (n,), dtype))


def make_layer(
    layer: Layer, init: Init, rngs: nnx.Rngs, dtype: jnp.dtype = jnp.float32, param_dtype: jnp.dtype | None = None
) -> nnx.Module:
    """One spec layer -> the Flax NNX module that computes it in `dtype`, with parameters of
    `param_dtype` (default: `dtype`; bfloat16 over float32 is Flax's mixed precision)."""
    dtypes = dict(param_dtype=param_dtype or dtype, dtype=dtype)
    if layer.kind == "linear":
        return nnx.Linear(
            layer.in_features,
            layer.out_features,
            use_bias=layer.bias,
            kernel_init=kernel_init(init, layer),
            bias_init=bias_init(init, layer),
            rngs=rngs,
            **dtypes,
        )
    if layer.kind in ("conv", "conv_transpose"):
        k, p = layer.kernel, layer.padding
        if layer.kind == "conv":
            module, padding = Conv, ((p, p), (p, p))
        else:
            # lax pads the stride-dilated input; k - 1 - p on each side equals
            # PyTorch's ConvTranspose2d(padding=p): out = (in - 1)·s - 2p + k.
            module, padding = ConvTranspose, ((k - 1 - p, k - 1 - p), (k - 1 - p, k - 1 - p))
        return module(
            layer.in_channels,
            layer.out_channels,
            (k, k),
            (layer.stride, layer.stride),
            padding=padding,
            use_bias=layer.bias,
            kernel_init=kernel_init(init, layer),
            bias_init=bias_init(init, layer),
            rngs=rngs,
            **dtypes,
        )
    if layer.kind == "batch_norm":
        return BatchNorm(
            layer.features,
            momentum=1.0 - layer.momentum,
            epsilon=layer.eps,
            scale_init=bn_scale_init(init.bn_scale_std),
            rngs=rngs,
            **dtypes,
        )
    if layer.kind == "activation":
        return Activation(layer.fn, layer.negative_slope)
    if layer.kind == "max_pool":
        return MaxPool(layer.kernel, layer.stride)
    if layer.kind == "dropout":
        return nnx.Dropout(layer.rate, rngs=rngs)
    if layer.kind == "reshape":
        return Reshape(layer.shape)
    if layer.kind == "flatten":
        return Flatten()
    raise ValueError(f"unknown layer kind {layer.kind!r}")


class Network(nnx.Module):
    """A spec's layers in order, each an attribute under its spec name."""

    def __init__(
        self, spec: NetworkSpec, *, rngs: nnx.Rngs, dtype: jnp.dtype = jnp.float32, param_dtype: jnp.dtype | None = None
    ):
        self.layer_names = tuple(layer.name for layer in spec.layers)
        for layer in spec.layers:
            setattr(self, layer.name, make_layer(layer, spec.init, rngs, dtype, param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x


class Generator(Network):
    """z: (N, latent_dim) -> images: (N, size, size, channels) in [-1, 1]."""

    def __init__(
        self,
        model: ModelConfig,
        *,
        rngs: nnx.Rngs,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype | None = None,
    ):
        super().__init__(generator_spec(model), rngs=rngs, dtype=dtype, param_dtype=param_dtype)


class Discriminator(Network):
    """images: (N, size, size, channels) -> logits: (N, 1)."""

    def __init__(
        self,
        model: ModelConfig,
        *,
        rngs: nnx.Rngs,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype | None = None,
    ):
        super().__init__(discriminator_spec(model), rngs=rngs, dtype=dtype, param_dtype=param_dtype)

"""The networks as Keras 3 `Sequential` models, built from the shared spec: the generator and
discriminator, and `dcgan eval`'s feature network (keras_impl/features.py).

Written with backend-neutral Keras only, so the same models run on TensorFlow, JAX and
PyTorch (KERAS_BACKEND). Each spec layer becomes the Keras layer of the same name, so
`generator.get_layer("convt2")` is the layer the spec calls `convt2`. Feature maps are
NHWC (Keras's channels_last). Where Keras has no one layer for a spec layer, helper
layers come first under the name plus a suffix (`reshape1_chw`, `conv3_pad`), and the
spec's name stays on the layer whose output the spec describes.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from common.config import ModelConfig
from common.spec import Init, Layer, NetworkSpec, discriminator_spec, generator_spec
from keras_impl.layers import BatchNormalization, Conv2D, Conv2DTranspose, Dense, Dropout, LeakyReLU, Tanh


class DrawnFlat(keras.initializers.Initializer):
    """`initializer`, drawing its numbers as one flat vector reshaped to the weight's shape:
    the same distribution, and on JAX the same values (its threefry numbers the elements in
    row-major order), while XLA's CPU compiler takes ~0.3 s instead of ~1.2 s for each 4-D
    draw. Only for initializers whose draw does not read the shape (not GlorotUniform's fans)."""

    def __init__(self, initializer: keras.initializers.Initializer):
        self.initializer = initializer

    def __call__(self, shape, dtype=None):
        return keras.ops.reshape(self.initializer((math.prod(shape),), dtype), shape)


def _kernel_initializer(layer: Layer, init: Init, seed: int) -> keras.initializers.Initializer:
    """DCGAN's N(0, std), or a uniform U(±limit): Glorot's √(6 / (fan_in + fan_out)), as
    GlorotUniform computes it from the shape, or PyTorch's default 1/√fan_in, the bound from
    the spec (common.spec.Init.weight_limit)."""
    if init.scheme == "normal":
        return DrawnFlat(keras.initializers.RandomNormal(0.0, init.std, seed=seed))
    limit = init.weight_limit(layer)
    return DrawnFlat(keras.initializers.RandomUniform(-limit, limit, seed=seed))


def _bias_initializer(layer: Layer, init: Init, seed: int) -> keras.initializers.Initializer:
    """Biases U(±limit) where the scheme draws them (common.spec.Init.bias_limit), else zeros."""
    limit = init.bias_limit(layer)
    if not limit:
        return keras.initializers.Zeros()
    return keras.initializers.RandomUniform(-limit, limit, seed=seed + 500)  # not the kernel's seed: its numbers


def _gamma_initializer(init: Init, seed: int) -> keras.initializers.Initializer:
    """BN's scale: DCGAN's N(1, std), or ones."""
    if init.scheme == "normal":
        return keras.initializers.RandomNormal(1.0, init.bn_scale_std, seed=seed)
    return keras.initializers.Ones()


def _padding(layer: Layer) -> str:
    """ "valid" or "same" where either equals PyTorch's explicit `padding`; "" where neither does."""
    if layer.padding == 0:
        return "valid"
    k, s, p = layer.kernel, layer.stride, layer.padding
    if layer.kind == "conv_transpose":
        same = k - s == 2 * p  # "same" then pads (k - s) / 2 on each side: out = in·s
    else:
        size = layer.in_shape[1]
        out = -(-size // s)  # "same" output size, ceil(in / s); its padding is split low side first
        same = max((out - 1) * s + k - size, 0) == 2 * p and layer.in_shape[1] == layer.in_shape[2]
    return "same" if same else ""


# common.config.ACTIVATIONS -> the Keras layer computing it, under the spec layer's name
ACTIVATIONS = {
    "relu": lambda layer: layers.Activation("relu", name=layer.name),
    "leaky_relu": lambda layer: LeakyReLU(negative_slope=layer.negative_slope, name=layer.name),
    "tanh": lambda layer: Tanh(name=layer.name),
}


def make_layers(layer: Layer, init: Init, seed: int) -> list[layers.Layer]:
    """One spec layer -> the Keras layers that compute it (the last one carries its name)."""
    name = layer.name
    if layer.kind == "linear":
        return [
            Dense(
                layer.out_features,
                use_bias=layer.bias,
                kernel_initializer=_kernel_initializer(layer, init, seed),
                bias_initializer=_bias_initializer(layer, init, seed),
                name=name,
            )
        ]
    if layer.kind in ("conv", "conv_transpose"):
        conv = Conv2D if layer.kind == "conv" else Conv2DTranspose
        padding = _padding(layer)
        helpers: list[layers.Layer] = []
        if not padding and layer.kind == "conv":
            helpers = [layers.ZeroPadding2D(layer.padding, name=f"{name}_pad")]
        kwargs = dict(
            strides=layer.stride,
            padding=padding or "valid",
            use_bias=layer.bias,
            kernel_initializer=_kernel_initializer(layer, init, seed),
            bias_initializer=_bias_initializer(layer, init, seed),
        )
        main = conv(
            layer.out_channels, layer.kernel, **kwargs, name=name if padding or layer.kind == "conv" else f"{name}_full"
        )
        if not padding and layer.kind == "conv_transpose":
            return [main, layers.Cropping2D(layer.padding, name=name)]  # PyTorch's padding crops the full output
        return helpers + [main]
    if layer.kind == "batch_norm":
        return [
            BatchNormalization(
                momentum=1.0 - layer.momentum,
                epsilon=layer.eps,
                gamma_initializer=_gamma_initializer(init, seed),
                name=name,
            )
        ]
    if layer.kind == "activation":
        return [ACTIVATIONS[layer.fn](layer)]
    if layer.kind == "max_pool":
        return [layers.MaxPooling2D(layer.kernel, layer.stride, padding="valid", name=name)]
    if layer.kind == "dropout":
        return [Dropout(layer.rate, seed=seed, name=name)]
    if layer.kind == "reshape":  # view the vector as CHW, as PyTorch does, then move channels last
        return [layers.Reshape(layer.shape, name=f"{name}_chw"), layers.Permute((2, 3, 1), name=name)]
    if layer.kind == "flatten":  # channels first again, so the vector has PyTorch's order
        return [layers.Permute((3, 1, 2), name=f"{name}_chw"), layers.Flatten(name=name)]
    raise ValueError(f"unknown layer kind {layer.kind!r}")


def _native_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


class Network(keras.Sequential):
    """A spec's layers in order, under the spec's names (dtype: keras.config.floatx())."""

    def __init__(self, spec: NetworkSpec, seed: int):
        stack: list[layers.Layer] = [keras.Input(_native_shape(spec.in_shape))]
        for index, layer in enumerate(spec.layers):
            stack += make_layers(layer, spec.init, seed=seed * 1000 + index)
        super().__init__(stack, name=spec.name)

    def weighted_layer(self, name: str) -> layers.Layer:
        """The Keras layer holding the weights of spec layer `name` (`convt1_full` where a
        Cropping2D after it carries the spec name)."""
        layer = self.get_layer(name)
        return layer if layer.weights else self.get_layer(f"{name}_full")


class Generator(Network):
    """z: (N, latent_dim) -> images: (N, size, size, channels) in [-1, 1]."""

    def __init__(self, model: ModelConfig, seed: int = 0):
        super().__init__(generator_spec(model), seed)


class Discriminator(Network):
    """images: (N, size, size, channels) -> logits: (N, 1)."""

    def __init__(self, model: ModelConfig, seed: int = 0):
        super().__init__(discriminator_spec(model), seed)

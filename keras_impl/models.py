"""The generator and discriminator as Keras 3 `Sequential` models, built from the shared spec.

Written with backend-neutral Keras only, so the same models run on TensorFlow, JAX and
PyTorch (KERAS_BACKEND). Each spec layer becomes the Keras layer of the same name, so
`generator.get_layer("convt2")` is the layer the spec calls `convt2`. Feature maps are
NHWC (Keras's channels_last). Where Keras has no one layer for a spec layer, helper
layers come first under the name plus a suffix (`reshape1_chw`, `conv3_pad`), and the
spec's name stays on the layer whose output the spec describes.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from common.config import ModelConfig
from common.spec import Init, Layer, NetworkSpec, discriminator_spec, generator_spec


def _initializers(init: Init, seed: int) -> tuple[keras.initializers.Initializer, keras.initializers.Initializer]:
    """(kernel initializer, BN gamma initializer): DCGAN's N(0, std) / N(1, std), or Glorot / ones."""
    if init.scheme == "normal":
        return (
            keras.initializers.RandomNormal(0.0, init.std, seed=seed),
            keras.initializers.RandomNormal(1.0, init.bn_scale_std, seed=seed),
        )
    return keras.initializers.GlorotUniform(seed=seed), keras.initializers.Ones()


def mean(x, axis=None):
    """The mean as sum / count. Keras 3.15's ops.mean on JAX averages float64 in float32
    (its result_type("float64", "float32") is float32), an error of 1e-7 where float64
    promises 1e-16; ops.sum keeps the input's dtype on every backend."""
    total = ops.sum(x, axis=axis)
    return total / _count(x, total)


def _count(x, reduced):
    """How many elements of x were reduced into each of `reduced` (dynamic shapes allowed)."""
    return ops.cast(ops.size(x) // ops.size(reduced), x.dtype)


class BatchNormalization(layers.BatchNormalization):
    """Keras's BatchNormalization with PyTorch's statistics, in the input's own dtype.

    In training mode the batch variance is the two-pass mean((x - mean)^2), the same on
    every Keras backend, and the moving variance is updated with the UNBIASED batch
    variance, n / (n - 1) times it, as PyTorch's running_var is (Keras keeps the biased
    one); normalisation uses the biased variance in both. It computes in the dtype of its
    variables: float32 under mixed_bfloat16, whose bfloat16 statistics would lose too much
    (as Keras's own layer does), and float64 in float64, where Keras's own
    result_type(dtype, "float32") is float32 on JAX and torch (Keras 3.15).
    """

    def call(self, inputs, training=None, mask=None):
        inputs = ops.cast(inputs, self.moving_mean.dtype)
        if training and self.trainable:
            axes = self._reduction_axes
            batch_mean = mean(inputs, axis=axes)
            variance = mean(ops.square(inputs - batch_mean), axis=axes)
            n = _count(inputs, batch_mean)
            self.moving_mean.assign(self.moving_mean * self.momentum + batch_mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (n / (n - 1.0)) * (1.0 - self.momentum))
        else:
            batch_mean, variance = self.moving_mean, self.moving_variance
        outputs = ops.batch_normalization(inputs, batch_mean, variance, axis=-1, offset=self.beta, scale=self.gamma,
                                          epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)


class LeakyReLU(layers.LeakyReLU):
    """keras.layers.LeakyReLU, with float64 kept exact. Keras's own calls tf.nn.leaky_relu on
    TensorFlow, whose slope is a float32 attribute: in float64 it multiplies by 0.2000000030,
    not 0.2; there this computes max(x, slope·x) from ops instead. Below float64 Keras's own
    is exact and is one fused kernel (torch's and TensorFlow's leaky_relu) where the ops are
    three, and three more in the backward pass: keras-torch's dcgan64 step ran ~0.2 s slower with them."""

    def call(self, inputs):
        if keras.backend.standardize_dtype(inputs.dtype) != "float64":
            return super().call(inputs)
        return ops.where(inputs > 0, inputs, inputs * ops.convert_to_tensor(self.negative_slope, inputs.dtype))


class Dense(layers.Dense):
    """keras.layers.Dense, with float64 kept in float64: Keras 3.15's ops.matmul on torch
    (and its other binary ops that promote through result_type) computes float64 in float32
    on the JAX and torch backends; ops.einsum keeps the dtype. float32 takes Keras's own path."""

    def call(self, inputs, training=None):
        if keras.backend.standardize_dtype(inputs.dtype) != "float64":
            return super().call(inputs, training=training)
        outputs = ops.einsum("...i,io->...o", inputs, self.kernel)
        return self.activation(outputs + self.bias if self.use_bias else outputs)


class Tanh(layers.Layer):
    """tanh in the input's dtype. Keras 3.15's ops.tanh on JAX computes float64 in float32
    (result_type(float64, float) is float32 there); in float64 this uses the exact identity
    tanh(x) = 2·sigmoid(2x) - 1, whose sigmoid keeps the dtype."""

    def call(self, inputs):
        if keras.backend.standardize_dtype(inputs.dtype) == "float64":
            return 2.0 * ops.sigmoid(2.0 * inputs) - 1.0
        return ops.tanh(inputs)


class Conv2DTranspose(layers.Conv2DTranspose):
    """keras.layers.Conv2DTranspose; on the JAX backend computed by jax_impl/conv_transpose.py,
    the same values as Keras's own lax.conv_transpose with a gradient XLA CPU runs ~20x faster.
    Covers what make_layers builds: channels_last, padding "same"/"valid", no dilation or
    output_padding."""

    def call(self, inputs):
        if keras.backend.backend() != "jax":
            return super().call(inputs)
        from jax_impl.conv_transpose import conv_transpose  # keras_impl imports jax only on JAX

        # Keras's kernel is (kh, kw, out, in) and its lax call flips and swaps it (transpose_kernel=True).
        kernel = ops.swapaxes(ops.flip(ops.convert_to_tensor(self.kernel), (0, 1)), 2, 3)
        padding = tuple(map(self._lax_padding, self.kernel_size, self.strides))
        outputs = conv_transpose(inputs, kernel, self.strides, padding)
        if self.use_bias:
            outputs = ops.add(outputs, ops.reshape(self.bias, (1, 1, 1, self.filters)))
        return self.activation(outputs)

    def _lax_padding(self, k: int, s: int) -> tuple[int, int]:
        """Keras's padding of the stride-dilated input (keras/src/backend/common/backend_utils.py)."""
        if self.padding == "valid":
            return k - 1, max(k, s) - 1
        total = k + s - 2  # "same": out = in·s
        low = min((total + 1) // 2, k - 1)
        return low, total - low


def _padding(layer: Layer) -> str:
    """"valid" or "same" where either equals PyTorch's explicit `padding`; "" where neither does."""
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


def make_layers(layer: Layer, init: Init, seed: int) -> list[layers.Layer]:
    """One spec layer -> the Keras layers that compute it (the last one carries its name)."""
    name = layer.name
    kernel_init, gamma_init = _initializers(init, seed)
    if layer.kind == "linear":
        return [Dense(layer.out_features, use_bias=layer.bias, kernel_initializer=kernel_init, name=name)]
    if layer.kind in ("conv", "conv_transpose"):
        conv = layers.Conv2D if layer.kind == "conv" else Conv2DTranspose
        padding = _padding(layer)
        helpers: list[layers.Layer] = []
        if not padding and layer.kind == "conv":
            helpers = [layers.ZeroPadding2D(layer.padding, name=f"{name}_pad")]
        kwargs = dict(strides=layer.stride, padding=padding or "valid", use_bias=layer.bias, kernel_initializer=kernel_init)
        main = conv(layer.out_channels, layer.kernel, **kwargs, name=name if padding or layer.kind == "conv" else f"{name}_full")
        if not padding and layer.kind == "conv_transpose":
            return [main, layers.Cropping2D(layer.padding, name=name)]  # PyTorch's padding crops the full output
        return helpers + [main]
    if layer.kind == "batch_norm":
        return [BatchNormalization(momentum=1.0 - layer.momentum, epsilon=layer.eps, gamma_initializer=gamma_init, name=name)]
    if layer.kind == "activation":
        if layer.fn == "leaky_relu":
            return [LeakyReLU(negative_slope=layer.negative_slope, name=name)]
        return [Tanh(name=name)] if layer.fn == "tanh" else [layers.Activation(layer.fn, name=name)]
    if layer.kind == "dropout":
        return [layers.Dropout(layer.rate, seed=seed, name=name)]
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

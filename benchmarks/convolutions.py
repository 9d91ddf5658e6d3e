"""A spec layer's convolution as each framework's call, in the layout the project's builds use.

The machine's peak (benchmarks/peak.py) times the model's largest convolution and
benchmarks/layers.py times every convolution's passes; both turn a spec `Layer` into a call
here. PyTorch: channels-last, the weight (in, out, k, k) for a transposed convolution and
(out, in, k, k) for a plain one. JAX: NHWC with HWIO weights; a transposed convolution pads
k - 1 - p on each side, because lax pads the stride-dilated input, which equals PyTorch's
ConvTranspose2d(padding=p). TensorFlow: NHWC; its transposed convolution's kernel is
(k, k, out, in) and its explicit padding crops p on each side. Each function returns
(f, x, w): f(x, w) the layer's forward pass (no bias), x a random batch and w random weights.
"""

from __future__ import annotations

from common.spec import Layer


def torch_convolution(layer: Layer, batch: int, dtype, device="cpu"):
    import torch

    channels_last = torch.channels_last
    transposed = layer.kind == "conv_transpose"
    k = layer.kernel
    x = torch.randn(batch, *layer.in_shape, device=device, dtype=dtype).contiguous(memory_format=channels_last)
    channels = (layer.in_channels, layer.out_channels) if transposed else (layer.out_channels, layer.in_channels)
    w = torch.randn(*channels, k, k, device=device, dtype=dtype).contiguous(memory_format=channels_last)
    conv = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    stride, padding = (layer.stride,) * 2, (layer.padding,) * 2

    def f(x, w):
        return conv(x, w, stride=stride, padding=padding)

    return f, x, w


def jax_convolution(layer: Layer, batch: int, dtype, key, as_built: bool = False):
    """`as_built`: through jax_impl/convolutions.py, as jax_impl builds the layer, rather than
    lax's own call and its autodiff: the same values, passes computed in other forms."""
    import jax
    from jax import lax

    from jax_impl import convolutions

    k, s, p = layer.kernel, (layer.stride,) * 2, layer.padding
    c, h, w_ = layer.in_shape
    x_key, w_key = jax.random.split(key)
    x = jax.random.normal(x_key, (batch, h, w_, c), dtype)
    w = jax.random.normal(w_key, (k, k, layer.in_channels, layer.out_channels), dtype)
    if layer.kind == "conv_transpose":
        pad = ((k - 1 - p,) * 2,) * 2
        ours, theirs = convolutions.conv_transpose, lax.conv_transpose
    else:
        pad = ((p, p),) * 2
        ours = convolutions.conv

        def theirs(x, w, s, pad):
            return lax.conv_general_dilated(x, w, s, pad, dimension_numbers=convolutions.DIMENSIONS)

    conv = ours if as_built else theirs

    def f(x, w):
        return conv(x, w, s, pad)

    return f, x, w


def tensorflow_convolution(layer: Layer, batch: int, dtype):
    import tensorflow as tf

    k, s, p = layer.kernel, layer.stride, layer.padding
    c, h, w_ = layer.in_shape
    x = tf.cast(tf.random.normal((batch, h, w_, c)), dtype)
    padding = [[0, 0], [p, p], [p, p], [0, 0]]
    if layer.kind == "conv_transpose":
        w = tf.cast(tf.random.normal((k, k, layer.out_channels, layer.in_channels)), dtype)
        out_shape = (batch, (h - 1) * s + k - 2 * p, (w_ - 1) * s + k - 2 * p, layer.out_channels)

        def f(x, w):
            return tf.nn.conv2d_transpose(x, w, out_shape, s, padding=padding)
    else:
        w = tf.cast(tf.random.normal((k, k, layer.in_channels, layer.out_channels)), dtype)

        def f(x, w):
            return tf.nn.conv2d(x, w, s, padding=padding)

    return f, x, w

"""Flax's strided and transposed convolutions, with passes that XLA's CPU backend runs quickly.

A training step computes each convolution three ways: its forward pass, its gradient with
respect to the input and its gradient with respect to the kernel. For a stride-s convolution
JAX's autodiff derives the input gradient as a transposed convolution, and lax computes a
transposed convolution as a convolution over an lhs-dilated input (s - 1 zeros between
neighbouring pixels). XLA:CPU runs those several times more slowly than the strided
convolutions they are equal to, and the slower the larger the image (the per-layer table in
docs/benchmarks.md).

The polyphase form needs no dilated input. Split the padded input into its s × s phases (pixel
(s·i + a, s·j + b) goes to position (i, j), channel block (a, b): `space_to_depth`) and the
kernel alike (`phase_kernel`, zero taps added up to a multiple of s): the stride-s convolution
is a stride-1 convolution of an ⌈k/s⌉ × ⌈k/s⌉ kernel over s²·C channels
(`polyphase_conv`). The same products are summed, in another order, and with k a multiple of
s (DCGAN's k = 4, s = 2) none is a zero. Its adjoint, jax.linear_transpose of it, is a
stride-1 convolution too, then the depth-to-space reshape (`adjoint`): the transposed
convolution's forward pass, and the strided one's input gradient, without a dilated input
(this is the "sub-pixel convolution" equivalence: Shi et al. 2016, "Is the deconvolution
layer the same as a convolutional layer?").

Each layer then takes, pass by pass, the form XLA:CPU runs fastest (measured in
docs/benchmarks.md; JAX's autodiff picks otherwise, hence the custom VJPs):

==================  ======================  =========================  ==========================
layer               forward                 input gradient             kernel gradient
==================  ======================  =========================  ==========================
`conv`              lax's strided           `adjoint` (polyphase)      lax's (a dilated kernel)
`conv_transpose`    `adjoint` (polyphase)   lax's strided              a dilated-kernel convolution
==================  ======================  =========================  ==========================

A stride-1 convolution reads no dilated input, and there every pass is lax's own form.

Both take what nnx.Conv and nnx.ConvTranspose pass to lax (NHWC input, HWIO kernel, explicit
padding, no dilation) and return lax's values and gradients (tests/test_convolutions.py).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]
Strides = tuple[int, int]
DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def space_to_depth(x: jax.Array, s: Strides) -> jax.Array:
    """(N, H, W, C) -> (N, H/sh, W/sw, sh·sw·C): pixel (sh·i + a, sw·j + b) to (i, j), block (a, b)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // s[0], s[0], w // s[1], s[1], c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // s[0], w // s[1], s[0] * s[1] * c)


def phase_kernel(kernel: jax.Array, s: Strides) -> jax.Array:
    """(kh, kw, I, O) -> (⌈kh/sh⌉, ⌈kw/sw⌉, sh·sw·I, O): tap (sh·u + a, sw·v + b) to (u, v),
    block (a, b), as space_to_depth orders the input; zero taps up to a multiple of the stride."""
    kh, kw, i, o = kernel.shape
    uh, uw = -(-kh // s[0]), -(-kw // s[1])
    kernel = jnp.pad(kernel, ((0, uh * s[0] - kh), (0, uw * s[1] - kw), (0, 0), (0, 0)))
    kernel = kernel.reshape(uh, s[0], uw, s[1], i, o)
    return kernel.transpose(0, 2, 1, 3, 4, 5).reshape(uh, uw, s[0] * s[1] * i, o)


def polyphase_conv(x: jax.Array, kernel: jax.Array, strides: Strides, padding: Padding) -> jax.Array:
    """lax.conv_general_dilated(x, kernel, strides, padding) as a stride-1 convolution over
    the phases of the padded input; lax's own where the stride is 1, which has no phases to
    split (and whose transpose reads no dilated input)."""
    if tuple(strides) == (1, 1):
        return _strided(x, kernel, strides, padding)
    pads = []
    for size, k, s, (lo, hi) in zip(x.shape[1:3], kernel.shape[:2], strides, padding):
        out = (size + lo + hi - k) // s + 1
        read = s * (out - 1 + -(-k // s))  # the rows the output's windows read, in whole phases
        pads.append((lo, read - size - lo, 0))  # a negative high side crops rows no window reads
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *pads, (0, 0, 0)))
    return lax.conv_general_dilated(
        space_to_depth(x, strides), phase_kernel(kernel, strides), (1, 1), "VALID", dimension_numbers=DIMENSIONS
    )


def adjoint(y: jax.Array, kernel: jax.Array, strides: Strides, padding: Padding, x_shape) -> jax.Array:
    """The adjoint of x -> conv(x, kernel, strides, padding), inputs of x_shape, applied to y."""
    x = jax.ShapeDtypeStruct(tuple(x_shape), y.dtype)
    return jax.linear_transpose(lambda x: polyphase_conv(x, kernel, strides, padding), x)(y)[0]


def _strided(x, kernel, strides, padding):
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DIMENSIONS)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x: jax.Array, kernel: jax.Array, strides: Strides, padding: Padding) -> jax.Array:
    """lax.conv_general_dilated(x, kernel, strides, padding) as nnx.Conv calls it."""
    return _strided(x, kernel, strides, padding)


def _conv_forward(x, kernel, strides, padding):
    return _strided(x, kernel, strides, padding), (x, kernel)


def _conv_backward(strides, padding, residuals, g):
    x, kernel = residuals
    dkernel = jax.vjp(lambda kernel: _strided(x, kernel, strides, padding), kernel)[1](g)[0]
    return adjoint(g, kernel, strides, padding, x.shape), dkernel


conv.defvjp(_conv_forward, _conv_backward)


def _transposed(kernel: jax.Array, padding: Padding) -> tuple[jax.Array, Padding]:
    """The kernel (HWIO, flipped, in and out swapped) and padding k - 1 - p of the strided
    convolution whose adjoint lax.conv_transpose(·, kernel, strides, padding) is."""
    q = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel.shape[:2], padding))
    return jnp.swapaxes(kernel[::-1, ::-1], 2, 3), q


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_transpose(x: jax.Array, kernel: jax.Array, strides: Strides, padding: Padding) -> jax.Array:
    """lax.conv_transpose(x, kernel, strides, padding) as nnx.ConvTranspose calls it: kernel
    (kh, kw, in, out), not transposed; lax pads the stride-dilated input by `padding`."""
    strided_kernel, q = _transposed(kernel, padding)
    out = jax.eval_shape(lambda x, kernel: lax.conv_transpose(x, kernel, strides, padding), x, kernel)
    return adjoint(x, strided_kernel, strides, q, out.shape)


def _conv_transpose_forward(x, kernel, strides, padding):
    return conv_transpose(x, kernel, strides, padding), (x, kernel)


def _conv_transpose_backward(strides, padding, residuals, g):
    """In one spatial dimension, with Wf[t] = W[k - 1 - t] the flipped kernel and q = k - 1 - p,
    y[o] = Σ x[i]·Wf[t] over o = s·i + t - q, so dx[i] = Σ_t g[s·i + t - q]·Wf[t]ᵀ (a stride-s
    convolution of g) and dWf[t] = Σ_i x[i]ᵀ·g[s·i + t - q] (a stride-1 convolution of g with
    x as its kernel, dilated by s: the batch is the contracted axis); dW is dWf flipped."""
    x, kernel = residuals
    strided_kernel, q = _transposed(kernel, padding)
    dx = _strided(g, strided_kernel, strides, q)
    dflipped = lax.conv_general_dilated(
        g, x, (1, 1), q, rhs_dilation=strides, dimension_numbers=("CHWN", "IHWO", "HWCN")
    )
    return dx, dflipped[::-1, ::-1]


conv_transpose.defvjp(_conv_transpose_forward, _conv_transpose_backward)

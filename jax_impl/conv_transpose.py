"""Flax's transposed convolution, with a gradient that XLA's CPU backend computes quickly.

nnx.ConvTranspose calls lax.conv_transpose: an lhs-dilated convolution (s - 1 zeros between
neighbouring inputs, padding `pad`, then a stride-1 correlation with the kernel). XLA CPU
runs the kernel gradient JAX's autodiff derives from it, another lhs-dilated convolution,
far more slowly than the ordinary strided convolutions it is equal to (measured per layer
in docs/benchmarks.md). `conv_transpose` computes lax's own forward pass and defines its VJP
with two ordinary convolutions instead.

In one spatial dimension, with Wf[t] = W[k - 1 - t] the flipped kernel (W is (k, k, in, out))
and q = (k - 1 - pad_lo, k - 1 - pad_hi) the padding of the convolution this one transposes
(PyTorch's ConvTranspose2d `padding`), summing over the batch too::

    y[o]   = sum over i, t with o = s·i + t - q_lo  of  x[i] · Wf[t]
    dx[i]  = sum_t g[s·i + t - q_lo] · Wf[t]^T     a stride-s convolution of g with Wf, padding q
    dWf[t] = sum_i x[i]^T · g[s·i + t - q_lo]      a stride-1 convolution of g with x as the
                                                   kernel, dilated by s, padding q; dW is dWf flipped

For dWf the batch is the contracted feature axis and the output channels the batch axis of g.
Both are exact (the same products, summed in another order).
"""

from __future__ import annotations

from functools import partial

import jax
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_transpose(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Padding) -> jax.Array:
    """lax.conv_transpose(x, kernel, strides, padding) as nnx.ConvTranspose calls it:
    x NHWC, kernel (kh, kw, in, out), explicit lax padding, no dilation, kernel not transposed."""
    return lax.conv_transpose(x, kernel, strides, padding)


def _forward(x, kernel, strides, padding):
    return conv_transpose(x, kernel, strides, padding), (x, kernel)


def _backward(strides, padding, residuals, g):
    x, kernel = residuals
    k = kernel.shape[:2]
    q = [(kd - 1 - lo, kd - 1 - hi) for kd, (lo, hi) in zip(k, padding)]
    flipped = kernel[::-1, ::-1]
    dx = lax.conv_general_dilated(g, flipped, strides, q, dimension_numbers=("NHWC", "HWOI", "NHWC"))
    dflipped = lax.conv_general_dilated(
        g, x, (1, 1), q, rhs_dilation=strides, dimension_numbers=("CHWN", "IHWO", "HWCN")
    )
    return dx, dflipped[::-1, ::-1]


conv_transpose.defvjp(_forward, _backward)

"""Flax's tensor layouts, to and from the canonical (PyTorch) ones (common/canonical.py)::

    canonical                      Flax NNX
    Linear weight (out, in)        nnx.Linear kernel (in, out)
    Conv weight OIHW               nnx.Conv kernel HWIO
    ConvTranspose weight IOHW      nnx.ConvTranspose kernel HWIO, spatially flipped: Flax
                                   (transpose_kernel=False) correlates the stride-dilated input
                                   with its kernel, PyTorch's transposed convolution with the
                                   flipped one
    BN weight / bias               scale / bias
    BN running_mean / running_var  mean / var (unbiased, see jax_impl/models.py BatchNorm)
    feature maps NCHW              NHWC

Each function takes the spec layer's kind (common/spec.py) and the canonical tensor name,
as in every build's layout.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from common.canonical import hwio_to_oihw, oihw_to_hwio

NATIVE_NAMES = {
    "batch_norm": {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"},
    "weighted": {"weight": "kernel", "bias": "bias"},
}
CANONICAL_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias"}  # nnx.Param names


def native_name(kind: str, name: str) -> str:
    """The Flax attribute holding canonical tensor `name` of a spec layer of `kind`."""
    return NATIVE_NAMES["batch_norm" if kind == "batch_norm" else "weighted"][name]


def to_canonical(kind: str, name: str, value: jax.Array) -> np.ndarray:
    """A Flax array of a spec layer of `kind` as a canonical (PyTorch-layout) array."""
    value = np.asarray(value)
    if name != "weight" or kind == "batch_norm":
        return value.copy()
    if kind == "linear":
        return np.ascontiguousarray(value.T)
    if kind == "conv_transpose":
        return np.ascontiguousarray(value.transpose(2, 3, 0, 1)[:, :, ::-1, ::-1])
    return hwio_to_oihw(value)


def from_canonical(kind: str, name: str, array: np.ndarray, like: jax.Array) -> jax.Array:
    """A canonical array as a Flax array of `like`'s dtype, in Flax's layout."""
    if name == "weight" and kind != "batch_norm":
        if kind == "linear":
            array = array.T
        elif kind == "conv_transpose":
            array = array[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
        else:
            array = oihw_to_hwio(array)
    return jnp.asarray(np.ascontiguousarray(array), dtype=like.dtype)

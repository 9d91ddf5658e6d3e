"""Flax's tensor layouts, to and from the canonical (PyTorch) ones (common/canonical.py).

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
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.canonical import hwio_to_oihw, oihw_to_hwio

BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
WEIGHTED_NAMES = {"weight": "kernel", "bias": "bias"}
CANONICAL_NAMES = {**{v: k for k, v in WEIGHTED_NAMES.items()}, "scale": "weight"}  # Param names only


def native_name(module: nnx.Module, name: str) -> str:
    """The Flax attribute holding the canonical tensor `name` ("weight", "running_var", ...)."""
    return (BN_NAMES if isinstance(module, nnx.BatchNorm) else WEIGHTED_NAMES)[name]


def to_canonical(module: nnx.Module, name: str, value) -> np.ndarray:
    value = np.asarray(value)
    if name != "weight" or isinstance(module, nnx.BatchNorm):
        return value.copy()
    if isinstance(module, nnx.Linear):
        return np.ascontiguousarray(value.T)
    if isinstance(module, nnx.ConvTranspose):
        return np.ascontiguousarray(value.transpose(2, 3, 0, 1)[:, :, ::-1, ::-1])
    return hwio_to_oihw(value)


def from_canonical(module: nnx.Module, name: str, array: np.ndarray, dtype) -> jnp.ndarray:
    if name == "weight" and not isinstance(module, nnx.BatchNorm):
        if isinstance(module, nnx.Linear):
            array = array.T
        elif isinstance(module, nnx.ConvTranspose):
            array = array[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
        else:
            array = oihw_to_hwio(array)
    return jnp.asarray(np.ascontiguousarray(array), dtype=dtype)


"""Keras's tensor layouts, to and from the canonical (PyTorch) ones (common/canonical.py)::

    canonical                      Keras 3
    Linear weight (out, in)        Dense kernel (in, out)
    Conv weight OIHW               Conv2D kernel HWIO
    ConvTranspose weight IOHW      Conv2DTranspose kernel HWOI: the same transpose as Conv2D's,
                                   no flip (both are the gradient of a correlation)
    BN weight / bias               gamma / beta
    BN running_mean / running_var  moving_mean / moving_variance (unbiased, see keras_impl/layers.py)
    feature maps NCHW              NHWC (channels_last)

Each function takes the spec layer's kind (common/spec.py) and the canonical tensor name,
as in every build's layout.py.
"""

from __future__ import annotations

import keras
import numpy as np

from common.canonical import hwio_to_oihw, oihw_to_hwio

NATIVE_NAMES = {
    "batch_norm": {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"},
    "weighted": {"weight": "kernel", "bias": "bias"},
}
CANONICAL_NAMES = {"kernel": "weight", "gamma": "weight", "bias": "bias", "beta": "bias"}  # trainable weights


def native_name(kind: str, name: str) -> str:
    """The Keras variable name of canonical tensor `name` of a spec layer of `kind`."""
    return NATIVE_NAMES["batch_norm" if kind == "batch_norm" else "weighted"][name]


def to_canonical(kind: str, name: str, value) -> np.ndarray:
    """A Keras tensor or variable of a spec layer of `kind` as a canonical array."""
    value = np.array(keras.ops.convert_to_numpy(value))  # a copy: on torch, Keras's numpy view shares memory
    if name != "weight" or kind == "batch_norm":
        return value
    return np.ascontiguousarray(value.T) if kind == "linear" else hwio_to_oihw(value)


def from_canonical(kind: str, name: str, array: np.ndarray, like: keras.Variable) -> np.ndarray:
    """A canonical array in Keras's layout at `like`'s dtype, ready for `like.assign`."""
    if name == "weight" and kind == "linear":
        array = array.T
    elif name == "weight" and kind in ("conv", "conv_transpose"):
        array = oihw_to_hwio(array)
    return np.ascontiguousarray(array, dtype=like.dtype)

"""PyTorch's tensor layouts at the canonical edge: none to change.

The canonical format (common/canonical.py) uses PyTorch's own layouts and names: Linear
(out, in), Conv2d OIHW, ConvTranspose2d IOHW, BN weight / bias / running_mean / running_var,
feature maps NCHW. This module exists so that every build answers "where are my framework's
transposes?" in the same file with the same three functions, each taking the spec layer's
kind (common/spec.py) and the canonical tensor name; for PyTorch the answer is only copies (a
checkpoint must not share memory with weights that train on, nor weights with the arrays
they were loaded from).
"""

from __future__ import annotations

import numpy as np
import torch


def native_name(kind: str, name: str) -> str:
    """The module attribute holding canonical tensor `name` of a spec layer of `kind`: the same."""
    return name


def to_canonical(kind: str, name: str, value: torch.Tensor) -> np.ndarray:
    """A tensor of a spec layer of `kind` as a canonical array: a copy, in the same layout."""
    return value.detach().cpu().numpy().copy()


def from_canonical(kind: str, name: str, array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A canonical array as a new tensor with `like`'s dtype, device and memory format
    (channels-last weights get channels-last Adam moments): always a copy, since Adam updates
    its moments in place and must not write into the caller's arrays."""
    return torch.empty_like(like).copy_(torch.from_numpy(np.ascontiguousarray(array)))

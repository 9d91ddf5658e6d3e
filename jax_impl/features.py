"""`dcgan eval`'s feature network in Flax NNX: built from its spec (common/quality/network.py)
and loaded with the weights PyTorch trained (pytorch_impl/features.py), through this build's
layouts (jax_impl/layout.py). Images arrive NCHW and run NHWC; the flatten layer reads them in
PyTorch's C-major order, so the dense weights mean what they mean there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.canonical import nchw_to_nhwc
from common.quality.network import ENTRIES, FEATURE_LAYER, SPEC
from jax_impl.layout import from_canonical, native_name
from jax_impl.models import Network

DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def load(state: dict[str, np.ndarray], precision: str = "float32") -> Network:
    """The network holding canonical `state`, in eval mode, in `precision` ("float32", or
    "float64" where the process has jax_enable_x64)."""
    model = Network(SPEC, rngs=nnx.Rngs(0), dtype=DTYPES[precision])
    for e in ENTRIES:
        variable = getattr(getattr(model, e.layer.name), native_name(e.layer.kind, e.name))
        variable[...] = from_canonical(e.layer.kind, e.name, state[e.key], variable[...])
    model.eval()  # BN normalises with its running statistics; dropout is the identity
    return model


def features_and_logits(model: Network, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, FEATURES), logits (N, CLASSES)) of (N, 1, 28, 28) images in [-1, 1], in
    the model's precision: the outputs of its FEATURE_LAYER and of its last layer."""
    dtype = model.fc5.kernel.dtype
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        f, y = _forward(model, jnp.asarray(nchw_to_nhwc(images[start : start + batch_size]), dtype=dtype))
        features.append(np.asarray(f))
        logits.append(np.asarray(y))
    return np.concatenate(features), np.concatenate(logits)


@nnx.jit
def _forward(model: Network, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The network's output and, on the way, its FEATURE_LAYER's."""
    features = None
    for name in model.layer_names:
        x = getattr(model, name)(x)
        if name == FEATURE_LAYER:
            features = x
    return features, x

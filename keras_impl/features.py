"""`dcgan eval`'s feature network in Keras 3: built from its spec (common/quality/network.py)
and loaded with the weights PyTorch trained (pytorch_impl/features.py), through this build's
layouts (keras_impl/layout.py), on whichever backend Keras runs. Images arrive NCHW and run
NHWC; the flatten layer reads them in PyTorch's C-major order, so the dense weights mean what
they mean there.
"""

from __future__ import annotations

import keras
import numpy as np

from common.canonical import nchw_to_nhwc
from common.quality.network import ENTRIES, FEATURE_LAYER, SPEC
from keras_impl.layout import from_canonical, native_name
from keras_impl.models import Network


def load(state: dict[str, np.ndarray], precision: str = "float32") -> keras.Model:
    """The network holding canonical `state`, as a model of two outputs, its FEATURE_LAYER's
    and its last layer's, computing in `precision` ("float32" or "float64") whatever dtype
    policy the process trains with (mixed_bfloat16 would blur the features)."""
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        network = Network(SPEC, seed=0)
    finally:
        keras.config.set_dtype_policy(policy)
    for e in ENTRIES:
        variables = {v.name: v for v in network.weighted_layer(e.layer.name).variables}
        variable = variables[native_name(e.layer.kind, e.name)]
        variable.assign(from_canonical(e.layer.kind, e.name, state[e.key], variable))
    return keras.Model(network.inputs, [network.get_layer(FEATURE_LAYER).output, network.outputs[0]])


def features_and_logits(model: keras.Model, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, FEATURES), logits (N, CLASSES)) of (N, 1, 28, 28) images in [-1, 1], in
    the model's precision, in eval mode (BN's moving statistics, no dropout)."""
    dtype = model.outputs[1].dtype
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        x = np.ascontiguousarray(nchw_to_nhwc(images[start : start + batch_size]), dtype=dtype)
        f, y = model(keras.ops.convert_to_tensor(x), training=False)
        features.append(keras.ops.convert_to_numpy(f))
        logits.append(keras.ops.convert_to_numpy(y))
    return np.concatenate(features), np.concatenate(logits)

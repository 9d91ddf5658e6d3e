"""`dcgan eval`'s feature network, described once in the spec language (common/spec.py), and
its weights' names.

A small VGG-style classifier of Fashion-MNIST (~92-93% on its test set): three 3x3
conv-BN-ReLU-maxpool blocks, 1 -> 32 -> 64 -> 128 channels (28 -> 14 -> 7 -> 3 pixels), then
a hidden dense layer of FEATURES units and the CLASSES logits, dropout before each dense
layer. The scores are measured in the hidden layer's output (FEATURE_LAYER): Inception-v3's
weights, which FID is defined with, cannot be had offline. It is trained once, in PyTorch
(pytorch_impl/features.py); every backend builds it from SPEC and loads the same weights.

Its weights are a canonical state (common/canonical.py) under the role "features":
`features.conv1.weight`, `features.bn1.running_var`, ... in PyTorch's layouts. Files written
before the network was described here hold PyTorch's names for the same tensors in its own
`nn.Sequential`s (`body.0.weight`, `head.1.bias`); `canonical_state` reads them through
EARLIER_NAMES, unchanged in value.
"""

from __future__ import annotations

import numpy as np

from common import canonical
from common.spec import Activation, BatchNorm, Conv, Dropout, Flatten, Init, Layer, Linear, MaxPool, NetworkSpec

ROLE = "features"  # the canonical keys' prefix
IN_SHAPE = (1, 28, 28)  # grey 28 x 28 images in [-1, 1]
FEATURES = 128  # width of the hidden dense layer, the space the scores are measured in
CLASSES = 10
FEATURE_LAYER = "act4"  # the layer whose output is the features
DROPOUT = 0.3
BN_EPS, BN_MOMENTUM = 1e-5, 0.1  # PyTorch's defaults, which it was trained with


def _spec() -> NetworkSpec:
    layers: list[Layer] = []
    shape = IN_SHAPE
    for i, channels in enumerate((32, 64, 128), start=1):
        conv = Conv(f"conv{i}", shape, channels, kernel=3, stride=1, padding=1, bias=False)
        bn = BatchNorm(f"bn{i}", conv.out_shape, BN_EPS, BN_MOMENTUM)
        act = Activation(f"act{i}", bn.out_shape, "relu")
        pool = MaxPool(f"pool{i}", act.out_shape, kernel=2, stride=2)
        layers += [conv, bn, act, pool]
        shape = pool.out_shape
    flatten = Flatten("flatten4", shape)
    drop4 = Dropout("drop4", flatten.out_shape, DROPOUT)
    fc4 = Linear("fc4", drop4.out_shape, FEATURES, bias=True)
    act4 = Activation(FEATURE_LAYER, fc4.out_shape, "relu")
    drop5 = Dropout("drop5", act4.out_shape, DROPOUT)
    fc5 = Linear("fc5", drop5.out_shape, CLASSES, bias=True)
    # PyTorch's default initialisation, which it was trained from (pytorch_impl/features.py)
    return NetworkSpec(ROLE, IN_SHAPE, (*layers, flatten, drop4, fc4, act4, drop5, fc5), Init("kaiming_uniform", 0.0))


SPEC = _spec()
ENTRIES = canonical.network_entries(ROLE, SPEC)  # every tensor of the weights, in spec order

# PyTorch's names of the tensors in files written before SPEC (`body` and `head`, two
# nn.Sequentials of the same layers, numbered by position) -> the spec's layer names.
EARLIER_NAMES = {
    "body.0": "conv1",
    "body.1": "bn1",
    "body.4": "conv2",
    "body.5": "bn2",
    "body.8": "conv3",
    "body.9": "bn3",
    "body.14": "fc4",
    "head.1": "fc5",
}


def canonical_state(state: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The canonical weights of `state`: as they are, or renamed from EARLIER_NAMES (BN's
    step counter, num_batches_tracked, which evaluation never reads, left out); None when
    `state` is neither, or lacks a tensor or holds one of another shape."""
    renamed = {}
    for key, value in state.items():
        layer, _, name = key.rpartition(".")
        if layer in EARLIER_NAMES and name != "num_batches_tracked":
            renamed[f"{ROLE}.{EARLIER_NAMES[layer]}.{name}"] = value
        elif layer not in EARLIER_NAMES:
            renamed[key] = value
    expected = {entry.key: entry.shape for entry in ENTRIES}
    if set(renamed) != set(expected) or any(tuple(renamed[k].shape) != shape for k, shape in expected.items()):
        return None
    return {key: renamed[key] for key in expected}  # in spec order

"""`dcgan eval`'s feature network in PyTorch: built from its spec (common/quality/network.py),
trained here once, and run on images.

Training stays in PyTorch, where the committed weights were made: `train_classifier` is
deterministic from its seed, and every backend loads the weights it writes (`load` here,
each other build's features.py there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from common.quality.network import ENTRIES, FEATURE_LAYER, SPEC
from pytorch_impl.layout import from_canonical, native_name, to_canonical
from pytorch_impl.models import Network

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    epochs: int = 10,
    batch_size: int = 128,
    progress: Callable[[int], object] = lambda n: None,
) -> dict[str, np.ndarray]:
    """Trains the network on (N, 1, 28, 28) float32 images in [-1, 1]; returns its canonical weights.

    Deterministic from `seed`: the weights start from PyTorch's default initialisation drawn
    from a generator seeded with it, dropout draws from torch's generator seeded with it, the
    batches and flips from numpy's, and torch runs deterministic kernels. Adam at 1e-3, a
    tenth of that for the last third of the epochs, random horizontal flips (garments are
    mostly symmetric). `progress` is handed the images of each batch done."""
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 0xFEA7])
    with _deterministic():
        model = Network(SPEC, seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        slow_from = epochs - max(1, epochs // 3)
        model.train()
        for epoch in range(epochs):
            for group in optimizer.param_groups:
                group["lr"] = 1e-3 if epoch < slow_from else 1e-4
            order = rng.permutation(len(images))
            for start in range(0, len(order) - batch_size + 1, batch_size):
                index = order[start : start + batch_size]
                x = images[index].copy()
                flip = rng.random(len(index)) < 0.5
                x[flip] = x[flip, :, :, ::-1]
                loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(labels[index]).long())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                progress(len(index))
    tensors = model.state_dict()
    return {e.key: to_canonical(e.layer.kind, e.name, tensors[_attribute(e)]) for e in ENTRIES}


def load(state: dict[str, np.ndarray], precision: str = "float32") -> Network:
    """The network holding canonical `state`, in eval mode, in `precision` ("float32" or
    "float64"), on the GPU where there is one."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = Network(SPEC, seed=0).to(device, DTYPES[precision])
    tensors = model.state_dict()
    with torch.no_grad():
        for e in ENTRIES:
            target = tensors[_attribute(e)]
            target.copy_(from_canonical(e.layer.kind, e.name, state[e.key], target))
    return model.eval()


@torch.no_grad()
def features_and_logits(model: Network, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, FEATURES), logits (N, CLASSES)) of (N, 1, 28, 28) images in [-1, 1], in
    the model's precision: the outputs of its FEATURE_LAYER and of its last layer."""
    parameter = next(model.parameters())
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(parameter)
        for name, layer in model.named_children():
            x = layer(x)
            if name == FEATURE_LAYER:
                features.append(x.cpu().numpy())
        logits.append(x.cpu().numpy())
    return np.concatenate(features), np.concatenate(logits)


def _attribute(entry) -> str:
    """The state_dict key of a canonical entry: `conv1.weight`."""
    return f"{entry.layer.name}.{native_name(entry.layer.kind, entry.name)}"


@contextlib.contextmanager
def _deterministic():
    """torch.use_deterministic_algorithms for the duration, restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)

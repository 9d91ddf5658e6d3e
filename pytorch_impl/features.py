"""The feature network of `dcgan eval`: a small Fashion-MNIST classifier, in PyTorch.

Inception-v3's weights, which FID is defined with, cannot be had offline, so the scores are
measured in the penultimate layer of this network instead (common/quality/features.py says
where its weights come from). It is a plain VGG-style convnet: three 3x3 conv-BN-ReLU-maxpool
blocks and one hidden dense layer of FEATURES units, ~92-93% on Fashion-MNIST's test set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

FEATURES = 128  # width of the penultimate layer, the space the scores are measured in
CLASSES = 10


class FeatureNet(nn.Module):
    """28x28 grey images in [-1, 1] -> 10 class logits; `features` stops one layer short."""

    def __init__(self):
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]

        self.body = nn.Sequential(
            *block(1, 32),  # 32 x 14 x 14
            *block(32, 64),  # 64 x 7 x 7
            *block(64, 128),  # 128 x 3 x 3
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(128 * 3 * 3, FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURES, CLASSES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    epochs: int = 10,
    batch_size: int = 128,
    progress: Callable[[int], object] = lambda n: None,
) -> dict[str, np.ndarray]:
    """Trains a FeatureNet on (N, 1, 28, 28) float32 images in [-1, 1]; returns its state.

    Deterministic from `seed`: the weights come from torch's generator seeded with it, the
    batches and flips from numpy's, and torch runs deterministic kernels. Adam at 1e-3, a
    tenth of that for the last third of the epochs, random horizontal flips (garments are
    mostly symmetric). `progress` is handed the images of each batch done."""
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 0xFEA7])
    with _deterministic():
        model = FeatureNet()
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
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def load(state: dict[str, np.ndarray]) -> FeatureNet:
    """A FeatureNet in eval mode holding `state` (as `train_classifier` returns it)."""
    model = FeatureNet()
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return model.eval()


@torch.no_grad()
def features_and_logits(model: FeatureNet, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, FEATURES), logits (N, CLASSES)) of (N, 1, 28, 28) images in [-1, 1]."""
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        f = model.features(torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], np.float32)))
        features.append(f.numpy())
        logits.append(model.head(f).numpy())
    return np.concatenate(features), np.concatenate(logits)


@contextlib.contextmanager
def _deterministic():
    """torch.use_deterministic_algorithms for the duration, restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)

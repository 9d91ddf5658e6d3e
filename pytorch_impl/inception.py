"""Inception-v3's pool features, the space FID is defined in (Heusel et al. 2017), for
`dcgan eval --features inception --weights FILE`.

The network is torch-fidelity's FeatureExtractorInceptionV3, the TensorFlow FID network ported
to PyTorch, which torchmetrics' FrechetInceptionDistance also uses. Its weights cannot be
downloaded here, so they come from a local file only: torch-fidelity's
weights-inception-2015-12-05-6726825d.pth, or any state dict of the same network. The file is
read with `torch.load(weights_only=True)` only, so a file holding anything but tensors is
refused, never unpickled; torch-fidelity, which would unpickle it in full, gets the tensors
read, re-saved to memory. It is the one part of `dcgan eval` that needs PyTorch (and
torch-fidelity: the `inception` extra).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from common.errors import ConfigError
from common.images import to_uint8

NAME = "inception-v3-compat"  # torch-fidelity's name for this network
FEATURES = "2048"  # the pool layer's width, torch-fidelity's name for it
EXPECTED = "a state dict of torch-fidelity's Inception-v3 (weights-inception-2015-12-05-6726825d.pth)"


def load(weights: Path) -> torch.nn.Module:
    """The network with `weights`, refused by name when the file is not such a state dict."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError("--weights", str(weights), f"an existing file: {EXPECTED}") from None
    except Exception as err:  # not a torch file, or one holding more than tensors
        raise ConfigError("--weights", str(weights), f"{EXPECTED} ({type(err).__name__})") from None
    if not isinstance(state, dict):
        raise ConfigError("--weights", str(weights), f"{EXPECTED} (it holds a {type(state).__name__})")
    tensors_only = io.BytesIO()  # torch-fidelity calls torch.load(path, weights_only=False) on what it gets
    torch.save(state, tensors_only)
    tensors_only.seek(0)
    try:
        return FeatureExtractorInceptionV3(NAME, [FEATURES], feature_extractor_weights_path=tensors_only)
    except RuntimeError as err:  # load_state_dict's missing / unexpected keys or shapes
        raise ConfigError("--weights", str(weights), f"{EXPECTED}: {str(err).splitlines()[0]}") from None


@torch.no_grad()
def features(model: torch.nn.Module, images: np.ndarray, batch_size: int = 50, progress=None) -> np.ndarray:
    """(N, 2048) pool features of (N, C, H, W) images in [-1, 1]: as 8-bit RGB (grey repeated
    to three channels), the network resizes them to 299 x 299 itself."""
    found = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(to_uint8(images[start : start + batch_size]))
        if batch.shape[1] == 1:
            batch = batch.repeat(1, 3, 1, 1)
        found.append(model(batch)[0].numpy())
        if progress is not None:
            progress(len(batch))
    return np.concatenate(found).astype(np.float64)

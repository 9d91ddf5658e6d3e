"""The generator and discriminator as PyTorch `nn.Sequential` models, built from the shared spec.

Each spec layer becomes one module under the spec's name, so `Generator(...).convt2` is the
layer the spec calls `convt2`, and state_dict keys read `convt2.weight`, `bn2.running_mean`.
Feature maps are NCHW, the spec's own layout: nothing is transposed here.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from common.config import ModelConfig
from common.spec import Init, Layer, NetworkSpec, discriminator_spec, generator_spec


class GhostBatchNorm(nn.modules.batchnorm._BatchNorm):
    """PyTorch's batch norm; with `groups` > 1, in training, each 1/groups of the batch is
    normalised by its own statistics ("ghost" batch norm), and the running statistics move by
    the mean of the groups'. That is what model.bn_statistics = "per_device" computes on
    `groups` DDP processes (pytorch_impl/distributed.py), on one device: the reference the
    data-parallel tests hold DDP to."""

    groups = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1 or not self.training:
            return super().forward(x)
        # Each group moves copies of the statistics (batch norm's backward pass keeps the
        # tensors it was given, so the buffers themselves are not updated in place mid-pass).
        outputs, moved = [], []
        for chunk in x.chunk(self.groups):
            mean, var = self.running_mean.clone(), self.running_var.clone()
            outputs.append(F.batch_norm(chunk, mean, var, self.weight, self.bias, True, self.momentum, self.eps))
            moved.append((mean, var))
        with torch.no_grad():
            self.running_mean.copy_(torch.stack([m for m, _ in moved]).mean(0))
            self.running_var.copy_(torch.stack([v for _, v in moved]).mean(0))
            self.num_batches_tracked.add_(1)
        return torch.cat(outputs)


class BatchNorm1d(GhostBatchNorm, nn.BatchNorm1d):
    pass


class BatchNorm2d(GhostBatchNorm, nn.BatchNorm2d):
    pass


def set_bn_groups(network: nn.Module, groups: int) -> None:
    """Every batch norm of `network` normalises each 1/groups of its batch on its own."""
    for module in network.modules():
        if isinstance(module, GhostBatchNorm):
            module.groups = groups


def make_layer(layer: Layer) -> nn.Module:
    """One spec layer -> the PyTorch module that computes it."""
    if layer.kind == "linear":
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    if layer.kind == "conv":
        return nn.Conv2d(
            layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding, bias=layer.bias
        )
    if layer.kind == "conv_transpose":
        return nn.ConvTranspose2d(
            layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding, bias=layer.bias
        )
    if layer.kind == "batch_norm":
        norm = BatchNorm2d if len(layer.in_shape) == 3 else BatchNorm1d
        return norm(layer.features, eps=layer.eps, momentum=layer.momentum)
    if layer.kind == "activation":
        return (
            {"relu": nn.ReLU, "tanh": nn.Tanh}[layer.fn]()
            if layer.fn != "leaky_relu"
            else nn.LeakyReLU(layer.negative_slope)
        )
    if layer.kind == "dropout":
        return nn.Dropout(layer.rate)
    if layer.kind == "reshape":
        return nn.Unflatten(1, layer.shape)
    if layer.kind == "flatten":
        return nn.Flatten()
    raise ValueError(f"unknown layer kind {layer.kind!r}")


@torch.no_grad()
def init_weights(network: nn.Sequential, init: Init, generator: torch.Generator) -> None:
    """DCGAN's init (or Glorot's) on every weighted layer; biases and BN offsets start at 0."""
    for module in network:
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if init.scheme == "normal":
                nn.init.normal_(module.weight, 0.0, init.std, generator=generator)
            else:
                nn.init.xavier_uniform_(module.weight, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.normal_(module.weight, 1.0, init.bn_scale_std, generator=generator)
            nn.init.zeros_(module.bias)


class Network(nn.Sequential):
    """A spec's layers in order, each under its spec name."""

    def __init__(self, spec: NetworkSpec, seed: int):
        super().__init__(OrderedDict((layer.name, make_layer(layer)) for layer in spec.layers))
        self.spec = spec
        init_weights(self, spec.init, torch.Generator().manual_seed(seed))


class Generator(Network):
    """z: (N, latent_dim) -> images: (N, channels, size, size) in [-1, 1]."""

    def __init__(self, model: ModelConfig, seed: int = 0):
        super().__init__(generator_spec(model), seed)


class Discriminator(Network):
    """images: (N, channels, size, size) -> logits: (N, 1)."""

    def __init__(self, model: ModelConfig, seed: int = 0):
        super().__init__(discriminator_spec(model), seed)

"""The generator and discriminator as PyTorch `nn.Sequential`s, built from the shared spec.

Each spec layer becomes one module under the spec's name, so `Generator(...).convt2` is the
layer the spec calls `convt2`, and state_dict keys read `convt2.weight`, `bn2.running_mean`.
Feature maps are NCHW, the spec's own layout: nothing is transposed here.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from common.config import ModelConfig
from common.spec import Init, Layer, NetworkSpec, discriminator_spec, generator_spec


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
        norm = nn.BatchNorm2d if len(layer.in_shape) == 3 else nn.BatchNorm1d
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

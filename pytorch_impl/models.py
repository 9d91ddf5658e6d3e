"""The networks as PyTorch `nn.Sequential` models, built from the shared spec: the generator
and discriminator, and `dcgan eval`'s feature network (pytorch_impl/features.py).

Each spec layer becomes one module under the spec's name, so `Generator(...).convt2` is the
layer the spec calls `convt2`, and state_dict keys read `convt2.weight`, `bn2.running_mean`.
Feature maps are NCHW, the spec's own layout: nothing is transposed here.
"""

from __future__ import annotations

import math
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


# common.config.ACTIVATIONS -> the module computing it from its spec layer
ACTIVATIONS = {
    "relu": lambda layer: nn.ReLU(),
    "leaky_relu": lambda layer: nn.LeakyReLU(layer.negative_slope),
    "tanh": lambda layer: nn.Tanh(),
}


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
        return ACTIVATIONS[layer.fn](layer)
    if layer.kind == "max_pool":
        return nn.MaxPool2d(layer.kernel, layer.stride)
    if layer.kind == "dropout":
        return nn.Dropout(layer.rate)
    if layer.kind == "reshape":
        return nn.Unflatten(1, layer.shape)
    if layer.kind == "flatten":
        return nn.Flatten()
    raise ValueError(f"unknown layer kind {layer.kind!r}")


# common.spec.INIT_SCHEMES -> how a weight is drawn
WEIGHT_INITS = {
    "normal": lambda w, init, generator: nn.init.normal_(w, 0.0, init.std, generator=generator),
    "glorot_uniform": lambda w, init, generator: nn.init.xavier_uniform_(w, generator=generator),
    "kaiming_uniform": lambda w, init, generator: nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator),
}


@torch.no_grad()
def init_weights(network: nn.Sequential, init: Init, generator: torch.Generator) -> None:
    """The spec's init on every weighted layer (common.spec.Init), drawn from `generator`:
    DCGAN's, Glorot's, or PyTorch's own default (reset_parameters' draws, in its order)."""
    for module in network:
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            WEIGHT_INITS[init.scheme](module.weight, init, generator)
            if module.bias is not None and init.scheme == "kaiming_uniform":
                bound = 1 / math.sqrt(nn.init._calculate_fan_in_and_fan_out(module.weight)[0])
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            if init.scheme == "kaiming_uniform":  # PyTorch's default draws nothing for BN
                nn.init.ones_(module.weight)
            else:
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

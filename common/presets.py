"""Named presets, one per published DCGAN write-up the suite reproduces.

Each preset says where it comes from and every deliberate difference from its source.
`make_config(name, overrides)` is the one way a config is made: preset, then overrides,
then validation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.config import Block, Config, ModelConfig, OptimConfig, apply_overrides, validate
from common.errors import ConfigError
from common.spec import discriminator_spec, generator_spec


@dataclass(frozen=True)
class Preset:
    name: str
    source: str  # one line: where it comes from
    differences: tuple[str, ...]  # every deliberate difference from that source
    config: Config


def _up(width: int, bn: bool = True, act: str = "relu", **kw: Any) -> Block:
    """A generator block: transposed convolution 4/2/1 (doubles the side), BN, activation."""
    return Block("conv_transpose", width, batch_norm=bn, activation=act, **kw)


def _down(width: int, bn: bool = True, act: str = "leaky_relu", **kw: Any) -> Block:
    """A discriminator block: convolution 4/2/1 (halves the side), BN, LeakyReLU."""
    return Block("conv", width, batch_norm=bn, activation=act, **kw)


# Radford et al.'s DCGAN as the PyTorch tutorial and pytorch/examples write it.
DCGAN64_MODEL = ModelConfig(
    image_size=64,
    channels=3,
    latent_dim=100,
    latent_dist="normal",
    ngf=64,
    ndf=64,
    generator=(
        _up(8, stride=1, padding=0),  # z as 1x1 -> (ngf*8) x 4 x 4
        _up(4),  # (ngf*4) x 8 x 8
        _up(2),  # (ngf*2) x 16 x 16
        _up(1),  # ngf x 32 x 32
        _up(0, bn=False, act="tanh"),  # channels x 64 x 64
    ),
    discriminator=(
        _down(1, bn=False),  # ndf x 32 x 32
        _down(2),  # (ndf*2) x 16 x 16
        _down(4),  # (ndf*4) x 8 x 8
        _down(8),  # (ndf*8) x 4 x 4
        Block("conv", 0, stride=1, padding=0),  # one logit, 1 x 1
    ),
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "dcgan64",
            "Radford et al. (2015) as the PyTorch DCGAN tutorial and pytorch/examples' dcgan write it: CelebA 64x64",
            (
                "D returns a logit and the loss is BCE on logits; the source's Sigmoid + BCELoss is the same function, "
                "computed stably",
                "default dataset is Fashion-MNIST (offline, replicated to 3 channels) instead of CelebA; "
                "give a folder for CelebA",
            ),
            Config("dcgan64", DCGAN64_MODEL, OptimConfig(batch_size=128)),
        ),
        Preset(
            "pokemon64",
            "Dive into Deep Learning's (d2l.ai) DCGAN on Pokemon sprites 64x64: BN on every D block, lr 0.005, "
            "batch 256",
            (
                "BN eps is 0.8 because the source passes 0.8 as BatchNorm2d's second positional argument, which is eps "
                "(probably meant as a momentum); kept as written so the model matches",
                "D returns a logit with BCE on logits instead of Sigmoid + BCELoss (the same function)",
                "default dataset is Fashion-MNIST (offline) instead of the Pokemon sprites; give a folder for those",
            ),
            Config(
                "pokemon64",
                dataclasses.replace(
                    DCGAN64_MODEL,
                    bn_eps=0.8,
                    discriminator=(_down(1),) + DCGAN64_MODEL.discriminator[1:],
                ),
                OptimConfig(batch_size=256, lr_g=0.005, lr_d=0.005),
            ),
        ),
        Preset(
            "svhn32",
            "a Udacity-style PyTorch DCGAN notebook on SVHN 32x32: linear projection, 3-conv D, z ~ U(-1, 1)",
            (
                "weights start from DCGAN's N(0, 0.02) rule; the notebook keeps PyTorch's default init",
                "label smoothing is off by default as in the notebook's call; --set optim.real_label=0.9 turns it on",
                "D returns a logit with BCE on logits, as the notebook's BCEWithLogitsLoss",
                "default dataset is Fashion-MNIST (offline) instead of SVHN; give a folder or tfds:svhn_cropped",
            ),
            Config(
                "svhn32",
                ModelConfig(
                    image_size=32,
                    channels=3,
                    latent_dim=100,
                    latent_dist="uniform",
                    ngf=32,
                    ndf=32,
                    generator=(
                        Block("linear", 4, bias=True),  # z -> (conv_dim*4) x 4 x 4, no BN, no activation
                        _up(2),  # (conv_dim*2) x 8 x 8
                        _up(1),  # conv_dim x 16 x 16
                        _up(0, bn=False, act="tanh"),  # 3 x 32 x 32
                    ),
                    discriminator=(
                        _down(1, bn=False),  # conv_dim x 16 x 16
                        _down(2),  # (conv_dim*2) x 8 x 8
                        _down(4),  # (conv_dim*4) x 4 x 4
                        Block("linear", 0, bias=True),  # 2048 -> one logit
                    ),
                ),
                OptimConfig(batch_size=128, g_fake_batch="fresh"),
            ),
        ),
        Preset(
            "mnist28",
            "the Flux (Julia) model zoo's DCGAN on MNIST 28x28: Dense -> 7x7x256, ConvT 5x5, Dropout in D, latent 300",
            (
                "Flux reshapes the dense output column-major to 7x7x256 (WHCN); here it is viewed as 256x7x7 (CHW) "
                "- the same model up to a fixed permutation of the dense layer's outputs",
                "weights use Glorot-uniform like Flux, with biases 0 and BN scale 1 as Flux starts them",
                "Adam betas are DCGAN's (0.5, 0.999); the write-up does not show its optimiser line",
                "default dataset is Fashion-MNIST (same shape as MNIST, offline); --set data.dataset=mnist for MNIST",
            ),
            Config(
                "mnist28",
                ModelConfig(
                    image_size=28,
                    channels=1,
                    latent_dim=300,
                    latent_dist="normal",
                    ngf=64,
                    ndf=64,
                    init="glorot_uniform",
                    generator=(
                        Block("linear", 4, bias=True, batch_norm=True, activation="relu"),  # 300 -> 256 x 7 x 7
                        _up(2, kernel=5, stride=1, padding=2, bias=True),  # 128 x 7 x 7
                        _up(1, bias=True),  # 64 x 14 x 14
                        _up(0, bn=False, act="tanh", bias=True),  # 1 x 28 x 28
                    ),
                    discriminator=(
                        _down(1, bn=False, bias=True, dropout=0.25),  # 64 x 14 x 14
                        _down(2, bn=False, bias=True, dropout=0.25),  # 128 x 7 x 7
                        Block("linear", 0, bias=True),  # 6272 -> one logit
                    ),
                ),
                OptimConfig(batch_size=128, g_fake_batch="fresh"),
            ),
        ),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError("preset", name, "one of " + ", ".join(PRESETS))
    return PRESETS[name]


def make_config(preset: str, overrides: Mapping[str, Any] | None = None) -> Config:
    """The preset's config with `overrides` (dotted keys) applied, validated and resolved; its
    networks' specs are built once here, which refuses an image size its plans cannot reach."""
    config = validate(apply_overrides(get_preset(preset).config, overrides or {}))
    generator_spec(config.model)
    discriminator_spec(config.model)
    return config

"""One training iteration in PyTorch: common/algorithm.py's algorithm, as the PyTorch
tutorial writes it (real and fake passes through D, one G forward reused when asked).

Metrics are returned as 0-d tensors, with no `.item()` inside the step: the loop reads them
after the step, so the step itself never waits on the host. Forward passes run under
`autocast` (bfloat16 for "bf16", a no-op otherwise); logits are read in float32 at least,
so the losses are, and backward runs outside it, as PyTorch's AMP recipe has it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """bfloat16 logits (under autocast) as float32; float32 and float64 stay as they are."""
    return logits.float() if logits.dtype == torch.bfloat16 else logits


def d_loss(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, real_label: float):
    """BCE of D on a real batch (target real_label) plus on a fake batch (target 0), as two passes."""
    real_logits = _at_least_float32(discriminator(real))
    fake_logits = _at_least_float32(discriminator(fake))
    loss = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label)) + (
        F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    )
    return loss, torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()


def g_loss(discriminator: nn.Module, fake: torch.Tensor):
    """The non-saturating generator loss: BCE of D(G(z)) against the real target 1."""
    logits = _at_least_float32(discriminator(fake))
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits)), torch.sigmoid(logits).mean()


def d_step(
    generator: nn.Module,
    discriminator: nn.Module,
    d_optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
    real_label: float,
    keep_fake: bool,
    autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext,
):
    """One D update on a real batch and G(z). Returns G(z), with G's graph when `keep_fake`
    (the G step reuses it), and D's loss, D(x) and D(G(z))."""
    with torch.set_grad_enabled(keep_fake), autocast():
        fake = generator(z)
    d_optimizer.zero_grad(set_to_none=True)
    with autocast():
        loss_D, D_x, D_G_z1 = d_loss(discriminator, real, fake.detach(), real_label)
    loss_D.backward()
    d_optimizer.step()
    return fake, (loss_D, D_x, D_G_z1)


def g_step(
    discriminator: nn.Module,
    g_optimizer: torch.optim.Optimizer,
    fake: torch.Tensor,
    autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext,
):
    """One G update through the (already updated) D, from fakes that carry G's graph.
    Returns G's loss and D(G(z))."""
    with autocast():
        loss_G, D_G_z2 = g_loss(discriminator, fake)
    g_optimizer.zero_grad(set_to_none=True)
    loss_G.backward()
    g_optimizer.step()
    return loss_G, D_G_z2


def train_step(
    generator: nn.Module,
    discriminator: nn.Module,
    g_optimizer: torch.optim.Optimizer,
    d_optimizer: torch.optim.Optimizer,
    reals: torch.Tensor,  # (k, N, C, H, W)
    z_d: torch.Tensor,  # (k, N, latent)
    z_g: torch.Tensor | None,  # (N, latent), or None to reuse the last D step's fakes
    real_label: float,
    autocast: Callable[[], AbstractContextManager] = contextlib.nullcontext,
    ema_generator: nn.Module | None = None,  # G's moving average, where the run keeps one
    ema_decay: float = 0.0,
) -> dict[str, torch.Tensor]:
    k = reals.shape[0]
    for j in range(k):
        keep_fake = z_g is None and j == k - 1  # keep G's graph only for the fake G reuses
        fake, (loss_D, D_x, D_G_z1) = d_step(
            generator, discriminator, d_optimizer, reals[j], z_d[j], real_label, keep_fake, autocast
        )
    if z_g is not None:
        with autocast():
            fake = generator(z_g)
    loss_G, D_G_z2 = g_step(discriminator, g_optimizer, fake, autocast)
    if ema_generator is not None:
        update_ema(ema_generator, generator, ema_decay)
    return {
        "loss_D": loss_D.detach(),
        "loss_G": loss_G.detach(),
        "D_x": D_x.detach(),
        "D_G_z1": D_G_z1.detach(),
        "D_G_z2": D_G_z2.detach(),
    }


@torch.no_grad()
def update_ema(ema_generator: nn.Module, generator: nn.Module, decay: float) -> None:
    """common/algorithm.py's average after a G update, in place: each parameter
    decay·ema + (1 - decay)·G, two products and a sum as every backend computes it; every
    buffer (BN's running statistics, and its batch count) copied from G. `generator` may be
    wrapped (torch.compile, DDP): both list the same tensors in the same order."""
    for averaged, current in zip(ema_generator.parameters(), generator.parameters(), strict=True):
        averaged.mul_(decay).add_(current * (1 - decay))
    for averaged, current in zip(ema_generator.buffers(), generator.buffers(), strict=True):
        averaged.copy_(current)

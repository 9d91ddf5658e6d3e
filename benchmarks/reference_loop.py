"""The baseline: a training iteration as the PyTorch DCGAN tutorial
(https://pytorch.org/tutorials/beginner/dcgan_faces_tutorial.html) and pytorch/examples'
dcgan/main.py write it, on the same networks and batch as every other mode.

What makes it the tutorials' loop: eager PyTorch in the default NCHW memory format, float32,
real and fake losses backpropagated one after the other, and `.item()` on D(x), D(G(z)) and
both losses every iteration, each a host synchronisation. What is not copied: the tutorial
draws its noise inside the loop and ends D with Sigmoid + BCELoss; here the noise is the
batch's (so every mode does the same work) and D's logits go to BCEWithLogitsLoss, the same
function in one op. It follows the preset's algorithm (k D steps, reused or fresh fakes),
so its FLOPs are every other mode's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from common.algorithm import network_seeds
from common.config import Config
from pytorch_impl.models import Discriminator, Generator


class ReferenceLoop:
    """Duck-types the parts of common.trainer.Trainer that benchmarks/worker.py drives."""

    def __init__(self, config: Config, device: str = "cpu"):
        o = config.optim
        self.config = config
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        g_seed, d_seed = network_seeds(config)
        self.netG = Generator(config.model, seed=g_seed).to(self.device)
        self.netD = Discriminator(config.model, seed=d_seed).to(self.device)
        self.optimizerD = torch.optim.Adam(self.netD.parameters(), lr=o.lr_d, betas=(o.beta1, o.beta2), eps=o.eps)
        self.optimizerG = torch.optim.Adam(self.netG.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2), eps=o.eps)
        self.criterion = nn.BCEWithLogitsLoss()
        torch.manual_seed(config.seed)  # the tutorial's manualSeed: dropout, where a preset has it

    def prepare(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> tuple:
        return tuple(None if a is None else torch.from_numpy(a).to(self.device) for a in (reals, z_d, z_g))

    def step(self, batch: tuple) -> dict[str, float]:
        reals, z_d, z_g = batch
        real_label, fake_label = self.config.optim.real_label, 0.0
        for j in range(reals.shape[0]):
            # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
            self.netD.zero_grad()
            real_cpu = reals[j]
            b_size = real_cpu.size(0)
            label = torch.full((b_size,), real_label, dtype=torch.float, device=self.device)
            output = self.netD(real_cpu).view(-1)
            errD_real = self.criterion(output, label)
            errD_real.backward()
            D_x = output.sigmoid().mean().item()

            fake = self.netG(z_d[j])
            label.fill_(fake_label)
            output = self.netD(fake.detach()).view(-1)
            errD_fake = self.criterion(output, label)
            errD_fake.backward()
            D_G_z1 = output.sigmoid().mean().item()
            errD = errD_real + errD_fake
            self.optimizerD.step()

        # (2) Update G: maximize log(D(G(z)))
        if z_g is not None:
            fake = self.netG(z_g)
        self.netG.zero_grad()
        label.fill_(1.0)  # fake labels are real for the generator cost
        output = self.netD(fake).view(-1)
        errG = self.criterion(output, label)
        errG.backward()
        D_G_z2 = output.sigmoid().mean().item()
        self.optimizerG.step()
        return {"loss_D": errD.item(), "loss_G": errG.item(), "D_x": D_x, "D_G_z1": D_G_z1, "D_G_z2": D_G_z2}

    def rows(self, batch_size: int) -> slice:
        """One process trains on the whole batch, as the tutorial's loop does."""
        return slice(0, batch_size)

    def synchronize(self, outputs) -> None:
        """Nothing to wait for: the .item() calls have synchronised."""

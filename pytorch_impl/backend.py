"""PyTorch's side of the common backend interface (see common/backends.py and common/trainer.py).

Speed choices, each measured by benchmarks/ on a CPU: feature maps and weights are
channels-last (NHWC in memory, still NCHW in shape), which oneDNN's convolutions prefer on
CPU, as cuDNN's do on tensor-core GPUs; "bf16" runs the forward passes under autocast with
float32 losses; batches are moved to the device once by `prepare`.
"""

from __future__ import annotations

import contextlib
import copy
import functools

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from common import canonical, trainer
from common.algorithm import network_seeds
from common.config import Config
from common.precision import TRAINING_PRECISIONS
from pytorch_impl import distributed, features
from pytorch_impl.layout import from_canonical, native_name, to_canonical
from pytorch_impl.models import Discriminator, Generator
from pytorch_impl.step import d_loss, g_loss, train_step


class Backend:
    layout = "NCHW"

    def __init__(self, name: str = "torch", precision: str = "float32", compile: str | None = None, devices: int = 1):
        self.name, self.precision, self.compile = name, precision, compile
        self.devices = devices
        self.dtype = getattr(torch, TRAINING_PRECISIONS[precision].store)
        self.device = "gpu" if torch.cuda.is_available() else "cpu"
        if devices > 1:  # one process per device, under torchrun (pytorch_impl/distributed.py)
            distributed.join(devices)
            self.torch_device = distributed.local_device()
        else:
            self.torch_device = torch.device("cuda" if self.device == "gpu" else "cpu")
        # Strict float32 unless TF32 is asked for (cuDNN's convolutions default to TF32).
        tf32 = TRAINING_PRECISIONS[precision].tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

    def build(self, config: Config) -> tuple[Generator, Discriminator]:
        g_seed, d_seed = network_seeds(config)
        return Generator(config.model, seed=g_seed).to(self.dtype), Discriminator(config.model, seed=d_seed).to(
            self.dtype
        )

    def trainer(self, config: Config) -> Trainer:
        options = dict(device=self.torch_device, precision=self.precision, compile=self.compile)
        if self.devices > 1:
            distributed.check_bn_statistics(config, self.torch_device)
            return DistributedTrainer(config, *self.build(config), **options)
        return Trainer(config, *self.build(config), **options)

    @torch.no_grad()
    def run_layers(self, network, inputs: np.ndarray, training: bool = True) -> list[tuple[str, str, np.ndarray]]:
        network.train(training)
        x = torch.from_numpy(np.asarray(inputs)).to(self.torch_device, self.dtype)
        outputs = []
        for name, module in network.named_children():
            x = module(x)
            outputs.append((name, type(module).__name__, x.cpu().numpy()))
        network.train()
        return outputs

    def parameters(self, network) -> dict[str, dict[str, np.ndarray]]:
        return {
            name: {p_name: p.detach().cpu().numpy() for p_name, p in module.named_parameters()}
            for name, module in network.named_children()
        }

    def feature_network(self, state: dict[str, np.ndarray]):
        """`dcgan eval`'s feature network holding `state` (pytorch_impl/features.py; common.backends.Backend)."""
        model = features.load(state, "float64" if self.precision == "float64" else "float32")
        return functools.partial(features.features_and_logits, model)


class Trainer(trainer.Trainer):
    """G, D and their Adam optimizers on one device; `train_step` runs pytorch_impl/step.py.

    float64 stays contiguous NCHW: PyTorch has no channels-last float64 convolution kernels,
    and its float64 convolution backward refuses a channels-last weight (PyTorch 2.14).
    """

    def __init__(
        self,
        config: Config,
        generator: Generator,
        discriminator: Discriminator,
        device: torch.device | None = None,
        precision: str = "float32",
        compile: str | None = None,
    ):
        o = config.optim
        self.config, self.device = config, device or torch.device("cpu")
        self.dtype = next(generator.parameters()).dtype
        self.memory_format = torch.contiguous_format if self.dtype == torch.float64 else torch.channels_last
        self.generator = generator.to(device, memory_format=self.memory_format)
        self.discriminator = discriminator.to(device, memory_format=self.memory_format)
        # G's moving average (common/algorithm.py): a copy of G that no optimizer sees, always
        # in eval mode, updated by train_step after each G update.
        self.ema_generator = copy.deepcopy(self.generator).requires_grad_(False).eval() if o.ema else None
        adam = dict(betas=(o.beta1, o.beta2), eps=o.eps)
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=o.lr_g, **adam)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=o.lr_d, **adam)
        chosen = TRAINING_PRECISIONS[precision]
        self.autocast = (
            functools.partial(torch.autocast, device.type, dtype=getattr(torch, chosen.compute))
            if chosen.mixed
            else contextlib.nullcontext
        )
        # torch.compile wraps the modules' forward passes (backward follows via AOTAutograd);
        # Adam stays eager.
        self._g = torch.compile(self.generator, mode=compile) if compile else self.generator
        self._d = torch.compile(self.discriminator, mode=compile) if compile else self.discriminator
        torch.manual_seed(config.seed)  # dropout draws from the global generator; its state is checkpointed

    def _tensor(self, array: np.ndarray | None) -> torch.Tensor | None:
        """A canonical (NCHW) batch on this trainer's device at its precision, images channels-last."""
        if array is None:
            return None
        tensor = torch.from_numpy(np.asarray(array)).to(self.device, self.dtype)
        # (k, N, C, H, W) has no channels-last format; each (N, C, H, W) slice of this one is.
        return (
            tensor.movedim(-3, -1).contiguous().movedim(-1, -3)
            if tensor.dim() >= 4 and (self.memory_format == torch.channels_last)
            else tensor
        )

    def prepare(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> tuple:
        return self._tensor(reals), self._tensor(z_d), self._tensor(z_g)

    def step(self, batch: tuple) -> dict[str, torch.Tensor]:
        return train_step(
            self._g,
            self._d,
            self.g_optimizer,
            self.d_optimizer,
            *batch,
            self.config.optim.real_label,
            autocast=self.autocast,
            ema_generator=self.ema_generator,
            ema_decay=self.config.optim.ema,
        )

    def synchronize(self, outputs) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def sample(self, z: np.ndarray, averaged: bool = False) -> np.ndarray:
        generator = self.ema_generator if averaged else self.generator
        training = generator.training
        generator.eval()
        try:
            with self.autocast():
                return generator(self._tensor(z)).float().cpu().numpy()
        finally:
            generator.train(training)

    def gradients(self, real: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        """d loss_D / d D's parameters (on `real` and G(z), detached) and d loss_G / d G's
        parameters (through D), both at the current state, canonical keys; nothing is updated
        but BN running statistics, as by any train-mode forward pass."""
        fake = self.generator(self._tensor(z))  # float32 and float64 only: parity compares these
        loss_D, _, _ = d_loss(self.discriminator, self._tensor(real), fake.detach(), self.config.optim.real_label)
        loss_G, _ = g_loss(self.discriminator, fake)
        grads = {}
        for role, network, loss in (
            ("discriminator", self.discriminator, loss_D),
            ("generator", self.generator, loss_G),
        ):
            entries = canonical.parameters(self.config, role)
            params = [network.get_parameter(_attribute(e)) for e in entries]
            for e, grad in zip(entries, torch.autograd.grad(loss, params)):
                grads[e.key] = to_canonical(e.layer.kind, e.name, grad)
        return grads

    def apply_gradients(self, grads: dict[str, np.ndarray]) -> None:
        """One Adam update of each network with the given canonical gradients."""
        for role, network, optimizer in self._roles():
            for e in canonical.parameters(self.config, role):
                p = network.get_parameter(_attribute(e))
                p.grad = from_canonical(e.layer.kind, e.name, grads[e.key], p)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def _roles(self):
        return (
            ("generator", self.generator, self.g_optimizer),
            ("discriminator", self.discriminator, self.d_optimizer),
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """The canonical state (common/canonical.py), plus torch's global RNG state (dropout)."""
        arrays = {}
        for role, network, optimizer in self._roles():
            tensors = network.state_dict()
            for e in canonical.entries(self.config, role):
                arrays[e.key] = to_canonical(e.layer.kind, e.name, tensors[_attribute(e)])
            step = 0
            for e in canonical.parameters(self.config, role):
                state = optimizer.state.get(network.get_parameter(_attribute(e)), {})
                step = int(state["step"]) if state else 0
                for moment in canonical.MOMENTS:
                    value = to_canonical(e.layer.kind, e.name, state[moment]) if state else np.zeros_like(arrays[e.key])
                    arrays[canonical.moment_key(role, moment, e)] = value
            arrays[canonical.step_key(role)] = np.array(step, dtype=np.int64)
        if self.ema_generator is not None:
            tensors = self.ema_generator.state_dict()
            for e in canonical.ema_entries(self.config):
                arrays[e.key] = to_canonical(e.layer.kind, e.name, tensors[_attribute(e)])
        arrays["rng.torch"] = torch.get_rng_state().numpy()
        return arrays

    @torch.no_grad()
    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        """Loads a canonical state; without optimizer keys Adam starts afresh, and without
        rng.torch the RNG keeps its seeded state."""
        for role, network, optimizer in self._roles():
            tensors = network.state_dict()
            for e in canonical.entries(self.config, role):
                target = tensors[_attribute(e)]
                target.copy_(from_canonical(e.layer.kind, e.name, arrays[e.key], target))
            optimizer.state.clear()
            if canonical.has_optimizer(arrays) and int(arrays[canonical.step_key(role)]) > 0:
                step = torch.tensor(float(arrays[canonical.step_key(role)]))
                for e in canonical.parameters(self.config, role):
                    p = network.get_parameter(_attribute(e))
                    optimizer.state[p] = {
                        "step": step.clone(),
                        **{
                            moment: from_canonical(
                                e.layer.kind, e.name, arrays[canonical.moment_key(role, moment, e)], p
                            )
                            for moment in canonical.MOMENTS
                        },
                    }
        if self.ema_generator is not None:
            tensors, averaged = self.ema_generator.state_dict(), canonical.ema_arrays(arrays, self.config)
            for e in canonical.ema_entries(self.config):
                target = tensors[_attribute(e)]
                target.copy_(from_canonical(e.layer.kind, e.name, averaged[e.key], target))
        if "rng.torch" in arrays:
            torch.set_rng_state(torch.from_numpy(arrays["rng.torch"].copy()))


class DistributedTrainer(Trainer):
    """The single-device Trainer with G and D in DDP, in each of torchrun's processes
    (pytorch_impl/distributed.py, whose docstring gives the GAN's DDP pitfalls and the choice
    made for each). Each process loads and trains on its own rows of the loop's global batch
    (`rows`). Metrics, the stop decision and the saved state agree across processes."""

    writer: bool

    def __init__(self, config: Config, generator, discriminator, device: torch.device, **kwargs):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.writer = self.rank == 0
        self.per_device = config.model.bn_statistics == "per_device"
        if not self.per_device:  # "global" (GPUs only, distributed.check_bn_statistics): the global batch's statistics
            generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        super().__init__(config, generator, discriminator, device=device, **kwargs)
        torch.manual_seed(config.seed + self.rank)  # each device's own dropout masks (distributed.py's docstring)
        ids = [device.index] if device.type == "cuda" else None
        self._g = DistributedDataParallel(self._g, device_ids=ids, forward_sync_buffers=False)
        self._d = DistributedDataParallel(self._d, device_ids=ids, forward_sync_buffers=False)

    def rows(self, batch_size: int) -> slice:
        """This process's 1/world of the global batch: process r loads rows [r·B, (r+1)·B)."""
        per_process = batch_size // self.world
        return slice(self.rank * per_process, (self.rank + 1) * per_process)

    def step(self, batch: tuple) -> dict[str, torch.Tensor]:
        metrics = super().step(batch)
        if self.per_device:
            self._average_buffers()
        # Each process's metrics are means over its rows; their mean is the global batch's.
        values = torch.stack(list(metrics.values())).to(torch.float64)
        dist.all_reduce(values, op=dist.ReduceOp.AVG if values.is_cuda else dist.ReduceOp.SUM)
        if not values.is_cuda:  # gloo has no AVG
            values /= self.world
        return dict(zip(metrics, values))

    @torch.no_grad()
    def _average_buffers(self) -> None:
        """Running statistics: the mean over devices (num_batches_tracked is equal everywhere).
        The average's, copied from G's in the step, are averaged alike, so they stay G's."""
        for network in (self.generator, self.discriminator, self.ema_generator):
            if network is None:
                continue
            for buffer in network.buffers():
                if buffer.is_floating_point():
                    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                    buffer /= self.world

    def should_stop(self, requested: int | None) -> int | None:
        """The signal that stops the loop after this iteration: the highest any process received."""
        flag = torch.tensor([requested or 0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) or None

    def state_dict(self) -> dict[str, np.ndarray]:
        """The canonical state (equal on every process), with every process's RNG state:
        rng.torch is process 0's, as on one device, and rng.torch.rank<r> process r's."""
        arrays = super().state_dict()
        states = [None] * self.world
        dist.all_gather_object(states, arrays["rng.torch"])
        arrays.update({f"rng.torch.rank{r}": state for r, state in enumerate(states) if r > 0})
        return arrays

    def load_state_dict(self, arrays: dict[str, np.ndarray]) -> None:
        super().load_state_dict(arrays)
        if self.rank > 0:
            own = arrays.get(f"rng.torch.rank{self.rank}")
            if own is not None:
                torch.set_rng_state(torch.from_numpy(own.copy()))
            else:  # saved on fewer devices: this device's stream starts afresh, from the seed, rank and step
                step = int(arrays.get(canonical.step_key("generator"), 0))
                torch.manual_seed(int(np.random.SeedSequence([self.config.seed, self.rank, step]).generate_state(1)[0]))


def _attribute(entry: canonical.Entry) -> str:
    """The state_dict key of a canonical entry in its network: `convt2.weight`."""
    return f"{entry.layer.name}.{native_name(entry.layer.kind, entry.name)}"

"""PyTorch's data parallelism: DistributedDataParallel (DDP), one process per device.

`dcgan train --backend torch --devices N` starts itself again under torchrun (`launch`):
N processes on this host, gloo between CPU processes, nccl between GPUs. On several hosts,
start torchrun on each yourself, as PyTorch's DDP tutorial does; every process then runs the
same command:

    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m common.cli train --backend torch --devices 2 --set model.bn_statistics=per_device ...

Every process runs common's loop on the same global batch (its data order and noise), and
trains on its 1/N of it (`DistributedTrainer.prepare`). Process 0 writes the run's files.

The GAN's DDP pitfalls, and the choice made for each:

* G and D are each wrapped in DDP, and each optimizer steps its own network's averaged
  gradients. D runs two forward passes (real, then fake) before one backward pass. That is
  fine for DDP without `find_unused_parameters`: every parameter of D gets its gradient once
  per backward pass, and each forward pass only re-arms the reducer. No `requires_grad` is
  toggled. G's backward pass runs through D, so D's gradients are averaged there too; D's
  next `zero_grad` drops them, as on one device.
* BN buffers: by default DDP broadcasts process 0's buffers at every forward pass
  (`forward_sync_buffers`, formerly `broadcast_buffers`). That would make the running
  statistics process 0's alone, so it is off here. Instead:

  - "per_device" averages the buffers over the processes after each step. The running
    statistics then move by the mean of the devices' statistics, as common/config.py defines.
  - "global" uses torch.nn.SyncBatchNorm, whose statistics are the global batch's on every
    process. SyncBatchNorm runs on GPUs only (it refuses CPU tensors), so on CPU "global" is
    refused by name.

* Dropout (mnist28's D): each process draws its masks from its own stream (seeded
  seed + rank), as independent devices would. With dropout a run therefore equals the
  single-device run in distribution, not bit for bit. Each process's RNG state is saved.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from common import canonical
from common.backends import failed_first
from common.config import Config
from common.errors import ConfigError
from pytorch_impl.backend import Trainer


def launched() -> bool:
    """Whether this process is one of torchrun's (it sets WORLD_SIZE, RANK and LOCAL_RANK)."""
    return "WORLD_SIZE" in os.environ


def launch(devices: int, processes: int, argv: list[str], config: Config) -> int:
    """Runs `python -m common.cli ARGV` as `devices` processes under torchrun on this host;
    returns the exit code of the first process that failed, or 0. Only process 0 prints.
    `processes` is `devices`: one per device.
    `config`, the run's, is checked first, so a refusal comes before any process starts."""
    check_bn_statistics(config, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun would set OMP_NUM_THREADS=1 with a warning; the cores split evenly is the intent.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // devices)))
    options = [*torchrun_options(devices), "--local-ranks-filter=0"]
    args = get_args_parser().parse_args([*options, "-m", "common.cli", *argv])
    try:
        run(args)
    except ChildFailedError as err:
        rank, first = err.get_first_failure()
        return failed_first(rank, devices, first.exitcode)
    except SignalException as err:  # torchrun passed the signal on; the processes saved and stopped
        return 128 + err.sigval
    return 0


def torchrun_options(devices: int) -> list[str]:
    """torchrun's options for `devices` processes on this host (rendezvous on a free local port)."""
    return ["--standalone", f"--nproc-per-node={devices}"]


def python_m(devices: int) -> list[str]:
    """What `python -m` takes before a module's name to run that module as `devices`
    processes under torchrun (what benchmarks/runner.py starts its workers with)."""
    return ["torch.distributed.run", *torchrun_options(devices), "-m"]


def init_process_group(devices: int) -> torch.device:
    """Joins torchrun's process group (once per process); returns this process's device."""
    if not launched():
        raise ConfigError(
            "--devices",
            devices,
            "1 here, or run under torchrun: `dcgan train --devices N` starts torchrun itself "
            "(pytorch_impl/distributed.py shows the command for several hosts)",
        )
    gpu = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
    if dist.get_world_size() != devices:
        raise ConfigError("--devices", devices, f"torchrun's world size, {dist.get_world_size()}")
    if gpu:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def check_bn_statistics(config: Config, device: torch.device) -> None:
    if config.model.bn_statistics == "global" and device.type != "cuda":
        raise ConfigError(
            "model.bn_statistics",
            "global",
            "per_device on torch's CPU: DDP's global statistics come from torch.nn.SyncBatchNorm, which "
            "runs on GPUs only; add --set model.bn_statistics=per_device",
        )


class DistributedTrainer(Trainer):
    """The single-device Trainer with G and D in DDP. The loop's global batch arrives on every
    process, and each trains on its own rows of it. Metrics, the stop decision and the saved
    state agree across processes."""

    writer: bool

    def __init__(self, config: Config, generator, discriminator, device: torch.device, **kwargs):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.writer = self.rank == 0
        self.per_device = config.model.bn_statistics == "per_device"
        if not self.per_device:  # "global" (GPUs only, check_bn_statistics): the global batch's statistics
            generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
            discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        super().__init__(config, generator, discriminator, device=device, **kwargs)
        torch.manual_seed(config.seed + self.rank)  # each device's own dropout masks (module docstring)
        ids = [device.index] if device.type == "cuda" else None
        self._g = DistributedDataParallel(self._g, device_ids=ids, forward_sync_buffers=False)
        self._d = DistributedDataParallel(self._d, device_ids=ids, forward_sync_buffers=False)

    def _shard(self, tensor: torch.Tensor | None, batch_axis: int) -> torch.Tensor | None:
        if tensor is None:
            return None
        rows = tensor.shape[batch_axis] // self.world
        return tensor.narrow(batch_axis, self.rank * rows, rows)

    def prepare(self, reals: np.ndarray, z_d: np.ndarray, z_g: np.ndarray | None) -> tuple:
        reals, z_d, z_g = super().prepare(reals, z_d, z_g)
        return self._shard(reals, 1), self._shard(z_d, 1), self._shard(z_g, 0)

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
        """Running statistics: the mean over devices (num_batches_tracked is equal everywhere)."""
        for network in (self.generator, self.discriminator):
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

"""PyTorch's data parallelism: DistributedDataParallel (DDP), one process per device.

`dcgan train --backend torch --devices N` starts itself again under torchrun (`launch`):
N processes on this host, gloo between CPU processes, nccl between GPUs. On several hosts,
start torchrun on each yourself, as PyTorch's DDP tutorial does; every process then runs the
same command:

    torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m common.cli train --backend torch --devices 2 --set model.bn_statistics=per_device ...

Every process runs common's loop on the same global batches (its data order and noise), and
loads and trains on its own 1/N of each; process 0 writes the run's files. This module starts and joins the
processes; pytorch_impl/backend.py's `DistributedTrainer` trains in each of them.

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

import torch
import torch.distributed as dist

from common.config import Config
from common.errors import ConfigError
from common.launch import failed_first


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


def join(
    devices: int, processes: int | None = None, process_id: int | None = None, coordinator: str | None = None
) -> None:
    """Joins torchrun's process group (once per process). torchrun numbered this process and
    gave it process 0's address (RANK, WORLD_SIZE, MASTER_ADDR), so `processes`, `process_id`
    and `coordinator` are torchrun's to give: `dcgan train` refuses them on torch."""
    if not launched():
        raise ConfigError(
            "--devices",
            devices,
            "1 here, or run under torchrun: `dcgan train --devices N` starts torchrun itself "
            "(pytorch_impl/distributed.py shows the command for several hosts)",
        )
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.get_world_size() != devices:
        raise ConfigError("--devices", devices, f"torchrun's world size, {dist.get_world_size()}")


def local_device() -> torch.device:
    """This process's device: its own GPU (LOCAL_RANK of this host's), or the CPU."""
    if torch.cuda.is_available():
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

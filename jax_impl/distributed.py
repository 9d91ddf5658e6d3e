"""JAX's data parallelism: one step over a Mesh of devices, and over several processes
(`jax.distributed.initialize`).

In one process, `dcgan train --backend jax --devices N` runs one jit-compiled step over a
Mesh of the process's N devices (`data_parallel_mesh`; the step is jax_impl/backend.py's
Trainer's, on batches sharded along the mesh's DATA_AXIS). `--processes P` spreads the same N
devices over P processes of N/P devices each. Every process then runs the same program over
the global Mesh of all processes' devices (JAX's multi-controller SPMD), and XLA's collectives
cross processes: gloo over TCP between CPU processes (JAX's default
jax_cpu_collectives_implementation), NCCL between GPUs.

`dcgan train --backend jax --devices 2 --processes 2` starts the processes on this host itself
(`launch`). On several hosts, start one process per host yourself, each with its own
--process-id and the address of process 0's coordinator:

    dcgan train --backend jax --devices 16 --processes 2 --process-id 0 --coordinator HOST0:1234 ...
    dcgan train --backend jax --devices 16 --processes 2 --process-id 1 --coordinator HOST0:1234 ...

(under Slurm, `srun` runs the same command with --process-id $SLURM_PROCID).

Every process runs common's loop on the same global batch (its data order and noise) and
hands JAX only its own devices' rows (`global_array`). The model's state is replicated, so
each process reads its own copy (`local_copy`): process 0 writes the run's files and
samples on its first device alone, and the processes agree on a signal that stops them
(`Trainer.should_stop`).
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding

from common.config import Config
from common.errors import ConfigError
from common.launch import free_port, run_processes

DATA_AXIS = "data"  # the mesh axis the batch is split along


def data_parallel_mesh(devices: int) -> Mesh:
    """A one-axis mesh of the first `devices` devices, of every process (`join`).
    On a CPU JAX shows one device unless jax_num_cpu_devices asks for more, which only works
    before JAX runs anything; with several processes, joining them asked for this one's."""
    if not jax.distributed.is_initialized():
        try:
            jax.config.update("jax_num_cpu_devices", devices)
        except RuntimeError:  # JAX already running in this process: only the devices it has
            pass
    found = jax.devices()
    if len(found) < devices:
        raise ConfigError(
            "--devices",
            devices,
            f"at most the {len(found)} {jax.default_backend()} device(s) JAX has "
            "(on a CPU, ask for the devices before JAX first runs: in a new process)",
        )
    return Mesh(np.array(found[:devices]), (DATA_AXIS,))


def global_array(array: jax.Array, sharding: NamedSharding) -> jax.Array:
    """`array`, whole and equal on every process, as one array of `sharding` over every process's
    devices: each process gives its own devices their parts (device_put reaches its own alone)."""
    if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):  # a typed key: its raw bits, wrapped again
        return jax.random.wrap_key_data(
            global_array(jax.random.key_data(array), sharding), impl=jax.random.key_impl(array)
        )
    host = np.asarray(array)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def local_copy(array: jax.Array) -> jax.Array:
    """This process's copy of a replicated array: what it reads without the other processes."""
    return array if array.is_fully_addressable else array.addressable_data(0)


def launched() -> bool:
    """Whether this process is already one of the P: it joined them (`join`)."""
    return jax.distributed.is_initialized()


def join(devices: int, processes: int, process_id: int, coordinator: str | None) -> None:
    """Joins the P processes (before JAX first runs): this one holds devices / processes of the
    global Mesh's devices. Without `coordinator`, JAX_COORDINATOR_ADDRESS or JAX's cluster
    detection (Slurm, Open MPI, Kubernetes) gives process 0's address."""
    if jax.distributed.is_initialized():
        return
    jax.config.update("jax_num_cpu_devices", devices // processes)  # a CPU's devices; a GPU's are its own
    try:
        jax.distributed.initialize(coordinator, num_processes=processes, process_id=process_id)
    except (ValueError, RuntimeError) as err:  # no address found, or none answered in time
        raise ConfigError(
            "--coordinator",
            coordinator,
            f"HOST:PORT of process 0, which every process can reach ({err})",
        ) from None


def launch(devices: int, processes: int, argv: list[str], config: Config) -> int:
    """Runs `python -m common.cli ARGV --process-id I` for I < `processes` on this host, with
    a coordinator on a free local port (common.launch.run_processes); on GPUs each process sees its
    own devices / processes of them."""
    coordinator = f"127.0.0.1:{free_port()}"
    per_process = devices // processes
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", ",".join(map(str, range(devices)))).split(",")
    commands, envs = [], []
    for i in range(processes):
        commands.append(
            [sys.executable, "-m", "common.cli", *argv, "--process-id", str(i), "--coordinator", coordinator]
        )
        envs.append({**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpus[i * per_process : (i + 1) * per_process])})
    return run_processes(commands, envs)


def python_m(devices: int) -> list[str]:
    """Nothing: JAX's `devices` devices run in one process unless --processes asks for more."""
    return []

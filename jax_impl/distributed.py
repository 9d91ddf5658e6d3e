"""JAX's data parallelism over several processes: `jax.distributed.initialize`.

In one process, `dcgan train --backend jax --devices N` runs one jit-compiled step over a
Mesh of the process's N devices (jax_impl/backend.py). `--processes P` spreads the same N
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
hands JAX only its own devices' rows (jax_impl/backend.py's `Trainer._array`). The model's
state is replicated, so each process reads its own copy: process 0 writes the run's files and
samples on its first device alone, and the processes agree on a signal that stops them
(`Trainer.should_stop`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile

from common.backends import exit_status, failed_first
from common.config import Config
from common.errors import ConfigError


def launched() -> bool:
    """Whether this process is already one of the P: it joined them (`join`)."""
    return "jax" in sys.modules and sys.modules["jax"].distributed.is_initialized()


def join(devices: int, processes: int, process_id: int, coordinator: str | None) -> None:
    """Joins the P processes (before JAX first runs): this one holds devices / processes of the
    global Mesh's devices. Without `coordinator`, JAX_COORDINATOR_ADDRESS or JAX's cluster
    detection (Slurm, Open MPI, Kubernetes) gives process 0's address."""
    import jax

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
    a coordinator on a free local port (see `run_processes`); on GPUs each process sees its
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


def run_processes(commands: list[list[str]], envs: list[dict[str, str]]) -> int:
    """Runs one process per command and returns the run's exit code: 0, or that of the first
    process that failed, whose number (and, where it is not process 0, last lines) it prints;
    the others are then ended, as they would wait for it in a collective. Only process 0
    prints as it goes. SIGINT and SIGTERM are passed on once to every process, which stop
    together and save; the run's code is then process 0's."""
    children, logs, stopping = [], [], []

    def forward(signum, frame):
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i, (command, env) in enumerate(zip(commands, envs)):
            log = None if i == 0 else tempfile.TemporaryFile()
            # A session of its own: a Ctrl-C reaches this launcher only, which passes it on once.
            children.append(
                subprocess.Popen(command, env=env, stdout=log or None, stderr=log or None, start_new_session=True)
            )
            logs.append(log)
        return _wait(children, logs, stopping)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def _wait(children: list[subprocess.Popen], logs: list, stopping: list[int]) -> int:
    """Waits for every process, or for the first failure where no signal (`stopping`) came."""
    running = set(range(len(children)))
    while running:
        for i in sorted(running):
            try:
                code = children[i].wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            running.discard(i)
            if code == 0 or stopping:
                continue
            tail = []
            if i != 0:
                logs[i].seek(0)
                tail = logs[i].read().decode(errors="replace").strip().splitlines()[-5:]
            return failed_first(i, len(children), code, tail)
    return exit_status(children[0].returncode)


def free_port() -> int:
    """A TCP port on this host that is free now, for a coordinator."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

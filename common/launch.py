"""How `dcgan train --devices N` runs: each backend's data-parallel engine, how many processes
it takes, and how they are started, joined and ended.

Most engines run in the process the command started (JAX's Mesh, Keras's DataParallel and
MirroredStrategy). Two can run in several: torch's DDP always (one process per device,
under torchrun) and JAX with --processes P (joined by jax.distributed). Their modules,
named in LAUNCHERS, implement `Launcher`; `processes`, `launcher`, `join` and `python_m`
below are what the `dcgan` command and the benchmarks call. The counts are checked here,
from these tables, without importing any framework, so a bad --processes is refused at once.
"""

from __future__ import annotations

import importlib
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Protocol

from common.config import Config
from common.errors import ConfigError

# Data parallelism (`dcgan train --devices N`): the global batch is N x optim.batch_size, the
# data order and noise are common's for that global batch, and each engine splits it over N
# devices. What each backend uses, or why it cannot yet.
DATA_PARALLEL: dict[str, str] = {
    "jax": "one jit-compiled step over a Mesh of N devices, the batch sharded by NamedSharding "
    "(on a CPU, N devices of it through jax_num_cpu_devices); with --processes P, the devices of P processes "
    "joined by jax.distributed (gloo between CPU processes)",
    "keras-jax": "keras.distribution.DataParallel: variables replicated, every input split along its axis 0, "
    "so the loop's batches come batch first",
    "keras-tensorflow": "tf.distribute.MirroredStrategy: variables mirrored, each replica's shard of the batch "
    "stepped by Keras's own TensorFlow trainer (on a CPU, N logical devices of it); not with --compile xla",
    "torch": "DistributedDataParallel, one process per device under torchrun (gloo on CPU, nccl on GPU), "
    "started by `dcgan train` itself; process 0 writes the run's files",
}
NO_DATA_PARALLEL: dict[str, str] = {
    "keras-torch": "Keras 3.15's distribution API (keras.distribution) has no torch backend; "
    "see https://github.com/keras-team/keras/issues/23418",
}
# Backends whose data parallelism can run in several processes, and the module (a `Launcher`)
# that starts them: torch always (DDP: one process per device), jax with --processes.
LAUNCHERS = {"torch": "pytorch_impl.distributed", "jax": "jax_impl.distributed"}
PROCESS_PER_DEVICE = ("torch",)


class Launcher(Protocol):
    """What each module of LAUNCHERS defines, as module-level functions (a module implements a
    Protocol, PEP 544): how a run of several processes starts and how each of them joins the
    others. How many there are is `processes`' rule, from the tables above."""

    def launched(self) -> bool:
        """Whether this process is already one of the run's processes (started by `launch`, by
        the engine's own launcher, or by hand), so it runs the command itself."""

    def launch(self, devices: int, processes: int, argv: list[str], config: Config) -> int:
        """Runs `python -m common.cli ARGV` as `processes` processes of `devices` devices on this
        host; returns the run's exit code (`failed_first`'s where a process failed). `config`,
        the run's, is checked first, so a refusal comes before any process starts."""

    def join(self, devices: int, processes: int, process_id: int | None, coordinator: str | None) -> None:
        """Makes this process process `process_id` of `processes` (None: the number and the
        address its launcher gave it), before the framework first runs."""

    def python_m(self, devices: int) -> list[str]:
        """What `python -m` takes before a module's name to run that module on `devices`
        devices (benchmarks/runner.py's workers): nothing where it runs as one process."""


def processes(name: str, devices: int, asked: int | None = None, process_id: int | None = None) -> int:
    """How many processes `devices` devices of `name` run in: torch's DDP one per device; jax
    `asked` (default 1), each holding devices / processes; other backends one. Refuses a
    count the backend cannot run, and a --process-id outside it, by name."""
    default = devices if name in PROCESS_PER_DEVICE else 1
    count = default if asked is None else asked
    if count != default and name not in LAUNCHERS:
        raise ConfigError("--processes", asked, f"1 on {name}: its data parallelism runs in one process")
    if count != default and name in PROCESS_PER_DEVICE:
        raise ConfigError("--processes", asked, f"{devices} on {name}, one per device (DDP), as --devices asks")
    if devices % count:
        raise ConfigError("--processes", asked, f"a divisor of --devices {devices}: each process holds as many")
    if process_id is not None and name in PROCESS_PER_DEVICE:
        raise ConfigError(
            "--process-id", process_id, f"none on {name}: torchrun numbers its processes ({LAUNCHERS[name]} shows how)"
        )
    if process_id is not None and (name not in LAUNCHERS or not 0 <= process_id < count):
        valid = f"0 to {count - 1}, one per process" if count > 1 else f"given with --processes > 1 on {name}"
        raise ConfigError("--process-id", process_id, valid)
    return count


def _module(name: str) -> Launcher | None:
    """`name`'s launcher, or None where it has none, or its framework is missing (which
    load_backend then refuses, naming the extra to install)."""
    if name not in LAUNCHERS:
        return None
    try:
        return importlib.import_module(LAUNCHERS[name])
    except ImportError:
        return None


def launcher(name: str, processes: int) -> Callable[[int, int, list[str], Config], int] | None:
    """`launch(devices, processes, argv, config)` of `name`'s launcher where the run needs
    `processes` > 1 and this process is not yet one of them; None where the command runs here."""
    module = _module(name) if processes > 1 else None
    return None if module is None or module.launched() else module.launch


def join(name: str, devices: int, processes: int, process_id: int, coordinator: str | None) -> None:
    """Makes this process process `process_id` of `processes` (--process-id, --coordinator)."""
    importlib.import_module(LAUNCHERS[name]).join(devices, processes, process_id, coordinator)


def python_m(name: str, devices: int) -> list[str]:
    """What `python -m` takes before a module's name to run it on `devices` devices of `name`."""
    module = _module(name) if devices > 1 else None
    return module.python_m(devices) if module is not None else []


def exit_status(returncode: int) -> int:
    """A process's exit code as a shell gives it: a child killed by signal n (returncode -n) is 128 + n."""
    return returncode if returncode >= 0 else 128 - returncode


def failed_first(process: int, processes: int, returncode: int, lines: Sequence[str] = ()) -> int:
    """The exit code of a run of `processes` processes whose process `process` failed first.
    Only process 0's output is shown, so another one is named, with its last `lines`."""
    code = exit_status(returncode)
    if process != 0:
        message = f"dcgan: error: process {process} of {processes} failed first (exit code {code})"
        print(message, *lines, sep="\n", file=sys.stderr)
    return code


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

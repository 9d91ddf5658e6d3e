"""One benchmark mode in a process of its own: `python -m benchmarks.worker JOB_JSON`.

A fresh process per mode, because Keras fixes its backend per process and so that one
mode's caches, threads and compiled code cannot warm another's. The worker builds the
trainer, puts one batch on the device (the same arrays, from the same seed, in every mode),
times the first call apart (tracing and compilation: `compile_s`), runs the warm-up, says
"ready", and then runs blocks of iterations when the runner asks, so the runner can
interleave the modes' blocks. Each block's time is read after the device has finished
(`Trainer.synchronize`). Messages are JSON lines on the stdout the worker started with;
anything a framework prints goes to stderr.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

import numpy as np

from benchmarks.modes import MODES
from common.algorithm import iteration_noise
from common.errors import ConfigError
from common.presets import make_config


def make_batch(config, batch_size: int, rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Canonical (reals, z_d, z_g) of the preset's shapes: images uniform in [-1, 1] from the
    preset's seed, and the noise of the run's first iteration as common.algorithm draws it,
    from the preset's latent distribution (N(0, 1) or U(-1, 1)); only `rows` of each batch
    of `batch_size` (a process's own, Trainer.rows)."""
    m, o = config.model, config.optim
    shape = (o.d_steps, batch_size, m.channels, m.image_size, m.image_size)
    reals = np.random.default_rng(config.seed).uniform(-1.0, 1.0, shape).astype(np.float32)
    noise = iteration_noise(config, 0, batch_size).rows(rows)
    return reals[:, rows], noise.z_d, noise.z_g


def job_config(job: dict):
    """The preset at the job's batch size (per device). On several devices, per-device BN
    statistics on every backend: what DDP computes, and the one both engines offer on CPU."""
    several = {"model.bn_statistics": "per_device"} if job.get("devices", 1) > 1 else {}
    return make_config(job["preset"], {"optim.batch_size": job["batch_size"], **several})


def build(job: dict):
    """(trainer, "") or (None, why the mode cannot run on the job's device here): the framework
    runs on another device, or load_backend refuses the mode's precision or compiler there
    (TF32 in a framework that sees no GPU). Frameworks are imported here."""
    mode = MODES[job["mode"]]
    config = job_config(job)
    if mode.name == "reference-loop":
        if job.get("devices", 1) > 1:
            return None, "the tutorials' loop runs on one device"
        import torch

        from benchmarks.reference_loop import ReferenceLoop

        found = "gpu" if torch.cuda.is_available() else "cpu"
        if found != job["device"]:
            return None, f"torch runs on the {found} here, not the {job['device']}"
        return ReferenceLoop(config, job["device"]), ""
    from common.backends import load_backend

    try:
        backend = load_backend(mode.backend, job["precision"], mode.compile, job.get("devices", 1))
    except ConfigError as err:
        return None, str(err)
    if backend.device != job["device"]:
        return None, f"{mode.backend} runs on the {backend.device} here, not the {job['device']}"
    return backend.trainer(config), ""


def device_name(job: dict) -> str:
    """The name of the accelerator the mode ran on (the CPU's is in the environment record)."""
    if job["device"] != "gpu":
        return "cpu"
    backend = MODES[job["mode"]].backend
    if backend in ("torch", "keras-torch"):
        import torch

        return torch.cuda.get_device_name()
    if backend in ("jax", "keras-jax"):
        import jax

        return jax.devices()[0].device_kind
    import tensorflow as tf

    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    return details.get("device_name", "gpu")


def peak_memory(job: dict) -> tuple[int, str]:
    """(bytes, what was measured): the GPU allocator's peak on a GPU, else the peak RSS."""
    if job["device"] == "gpu":
        backend = MODES[job["mode"]].backend
        if backend in ("torch", "keras-torch"):
            import torch

            return torch.cuda.max_memory_allocated(), "gpu allocator peak"
        if backend in ("jax", "keras-jax"):
            import jax

            return jax.devices()[0].memory_stats()["peak_bytes_in_use"], "gpu allocator peak"
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"], "gpu allocator peak"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if _process_group() is None:
        return rss, "peak RSS of the worker process"
    import torch
    import torch.distributed as dist

    total = torch.tensor([rss], dtype=torch.int64)
    dist.all_reduce(total)
    return int(total.item()), f"peak RSS summed over the {dist.get_world_size()} worker processes"


def _process_group():
    """torch.distributed, where this worker is one of torchrun's processes; else None."""
    if "WORLD_SIZE" not in os.environ:
        return None
    import torch.distributed as dist

    return dist if dist.is_initialized() else None


def run_block(trainer, batch, iterations: int):
    """Seconds per iteration over a block of `iterations`, the device synchronised at its end."""
    start = time.perf_counter()
    for _ in range(iterations):
        outputs = trainer.step(batch)
    trainer.synchronize(outputs)
    return (time.perf_counter() - start) / iterations, outputs


def serve(job: dict, send, receive) -> None:
    trainer, reason = build(job)
    if trainer is None:
        send({"status": "skipped", "reason": reason})
        return
    config = job_config(job)
    global_batch = job["batch_size"] * job.get("devices", 1)
    batch = trainer.prepare(*make_batch(config, global_batch, trainer.rows(global_batch)))  # this process's part
    compile_s, outputs = run_block(trainer, batch, 1)
    warmup_s = [run_block(trainer, batch, 1)[0] for _ in range(job["warmup"])]
    send({"status": "ready", "compile_s": compile_s, "warmup_s": warmup_s, "device_name": device_name(job)})
    while (command := receive())["do"] == "run":
        times = []
        for _ in range(command["blocks"]):
            seconds, outputs = run_block(trainer, batch, command["inner"])
            times.append(seconds)
        send({"times": times})
    metrics = {name: float(value) for name, value in outputs.items()}
    memory, memory_kind = peak_memory(job)
    send(
        {
            "peak_mem_bytes": memory,
            "peak_mem_kind": memory_kind,
            "metrics": metrics,
            "finite": bool(np.all(np.isfinite(list(metrics.values())))),
        }
    )


def main() -> None:
    job = json.loads(sys.argv[1])
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # frameworks' prints go to stderr

    rank = int(os.environ.get("RANK", 0))  # under torchrun: process 0 talks to the runner

    def send(message: dict) -> None:
        if rank == 0:
            out.write(json.dumps(message) + "\n")
            out.flush()

    def receive() -> dict:
        message = [None]
        if rank == 0:
            line = sys.stdin.readline()
            message[0] = json.loads(line) if line else {"do": "stop"}
        if (dist := _process_group()) is not None:  # the other processes do as process 0 is told
            dist.broadcast_object_list(message, src=0)
        return message[0]

    try:
        if job.get("kind") == "peak":
            from benchmarks.peak import measure

            send(measure(job))
        else:
            serve(job, send, receive)
    except Exception as err:  # the runner reports it against the mode and goes on with the others
        traceback.print_exc()
        send({"status": "error", "reason": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"})


if __name__ == "__main__":
    main()

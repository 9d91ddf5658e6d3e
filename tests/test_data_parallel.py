"""`dcgan train --devices N`: on two CPU devices the data-parallel run is the single-device
run of the same global batch, in float64 within the parity suite's tolerance; the replicas
stay bit-identical; its checkpoints open on one device and back; `--resume` continues it
exactly. JAX and Keras on JAX in one process with two CPU devices (jax_num_cpu_devices), and
JAX in two processes of one CPU device each (jax.distributed, gloo);
Keras on TensorFlow with two logical CPU devices (MirroredStrategy); PyTorch's DDP in two
processes under torchrun (gloo), which on CPU offers per-device statistics only; Keras on
torch, which has no distribution API, is refused by name. Every run keeps G's moving average
(optim.ema), which each comparison covers with the rest of the state.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from common import checkpoint
from common.backends import BACKENDS, load_backend
from common.errors import ConfigError
from common.launch import DATA_PARALLEL, free_port, run_processes
from common.parity import TOLERANCES
from common.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]

# What both scripts share: trained(...) runs two iterations of `batches` (global batches of 8)
# in float64 on `devices` devices, or ghost batch norm over `groups` on one; difference(a, b)
# is the largest float difference over b's keys.
SHARED = """
import importlib, json, signal, sys
import numpy as np
from common.algorithm import iteration_noise
from common.backends import load_backend
from common.cli import main
from common.errors import ConfigError
from common.presets import make_config

GHOST_BN = {"jax": "jax_impl.backend", "keras-jax": "keras_impl.backend",
            "keras-tensorflow": "keras_impl.backend", "torch": "pytorch_impl.models"}  # set_bn_groups

def batches(config):
    m = config.model
    rng = np.random.default_rng(0)
    shape = (1, 8, m.channels, m.image_size, m.image_size)
    return [(rng.uniform(-1, 1, shape), iteration_noise(config, step, 8)) for step in range(2)]

def trained(name, config, devices, groups=1):
    trainer = load_backend(name, "float64", devices=devices).trainer(config)
    if groups > 1:  # ghost batch norm on one device
        for network in (trainer.generator, trainer.discriminator):
            importlib.import_module(GHOST_BN[name]).set_bn_groups(network, groups)
    rows = trainer.rows(8)  # this process's part of the global batch (torch's DDP: its own rows)
    for reals, noise in batches(config):
        own = noise.rows(rows)
        trainer.train_step(reals[:, rows], own.z_d, own.z_g)
    return trainer

def difference(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in b if b[k].dtype.kind == "f")
"""

# In a process of its own: JAX takes its CPU device count, and TensorFlow its logical CPU
# devices, before they first run; the Keras backend is one per process.
SCRIPT = (
    SHARED
    + """
tiny = {"model.ngf": 4, "model.ndf": 4, "optim.batch_size": 4, "optim.ema": 0.9}
config = make_config("mnist28", tiny)

def replicas(trainer):
    if name == "keras-tensorflow":  # every mirrored variable's copies
        gan = trainer.gan
        variables = [*trainer.generator.variables, *trainer.discriminator.variables, *gan.d_optimizer.variables,
                     *gan.g_optimizer.variables, gan.seed_generator.state, *trainer.ema_generator.variables]
        copies = [[np.asarray(c) for c in trainer.strategy.experimental_local_results(v.value)] for v in variables]
        return sorted({len(c) for c in copies}), all(all(np.array_equal(c[0], x) for x in c[1:]) for c in copies)
    if name == "keras-jax":
        networks = (trainer.generator, trainer.discriminator, trainer.ema_generator)
        leaves = [v.value for network in networks for v in network.weights]
    else:
        from flax import nnx
        networks = (trainer.generator, trainer.discriminator, trainer.ema_generator)
        states = [nnx.state(networks, kind) for kind in (nnx.Param, nnx.BatchStat)]
        leaves = [v[...] for state in states for _, v in nnx.to_flat_state(state)]
    shards = [[np.asarray(s.data) for s in x.addressable_shards] for x in leaves]
    return sorted({len(s) for s in shards}), all(all(np.array_equal(s[0], t) for t in s[1:]) for s in shards)

results = {}
for name in sys.argv[2:]:  # each asks for two devices before its framework first runs
    out = sys.argv[1] + "/" + name
    found = {}
    # The user's commands first, in float32: float64 (below) is a process-wide setting of JAX and Keras.
    run = ["--backend", name, "--preset", "mnist28", "--dataset", "fake", "--set", "model.ngf=4", "--set",
           "model.ndf=4", "--set", "optim.ema=0.9", "--batch-size", "4", "--devices", "2", "--no-progress",
           "--checkpoint-every", "2"]
    found["codes"] = [
        main(["train", *run, "--steps", "4", "--out", out + "/straight"]),
        main(["train", *run, "--steps", "2", "--out", out + "/resumed"]),
        main(["train", "--resume", "--steps", "4", "--no-progress", "--out", out + "/resumed"]),  # its 2 devices
        main(["sample", "--checkpoint", out + "/straight", "--out", out + "/grid.png"]),  # one device
    ]
    parallel = trained(name, config, 2)  # per-device batch 4, global 8
    found["devices_holding_each_parameter"], found["replicas_identical"] = replicas(parallel)
    a = parallel.state_dict()
    found["global"] = difference(a, trained(name, config, 1).state_dict())  # the global batch, 8, on one device
    per_device = make_config("mnist28", {**tiny, "model.bn_statistics": "per_device"})
    own = trained(name, per_device, 2).state_dict()
    found["per_device"] = difference(own, trained(name, per_device, 1, groups=2).state_dict())
    found["per_device_vs_global"] = difference(own, a)

    moved = load_backend(name, "float64").trainer(config)  # a data-parallel state on one device, and back
    moved.load_state_dict(a)
    back = load_backend(name, "float64", devices=2).trainer(config)
    back.load_state_dict(moved.state_dict())
    found["round_trip_exact"] = all(np.array_equal(back.state_dict()[k], a[k]) for k in a)

    results[name] = found
print(json.dumps(results))
"""
)


# Each of torchrun's two processes runs this: DDP against ghost batch norm on one device (svhn32:
# no dropout, whose masks each process draws on its own), the stop both processes agree on, and
# `dcgan train --devices 2` as one of torchrun's processes; process 0 reports.
TORCH_SCRIPT = (
    SHARED
    + """
import torch.distributed as dist

out = sys.argv[1]
tiny = {"model.ngf": 4, "model.ndf": 4, "optim.batch_size": 4, "optim.ema": 0.9}
config = make_config("svhn32", {**tiny, "model.bn_statistics": "per_device"})

found = {}
parallel = trained("torch", config, 2)
a = parallel.state_dict()
rank = dist.get_rank()
np.savez(f"{out}/rank{rank}.npz", **{k: v for k, v in a.items() if not k.startswith("rng.")})
found["per_device"] = difference(a, trained("torch", config, 1, groups=2).state_dict())
found["per_device_vs_global"] = difference(a, trained("torch", make_config("svhn32", tiny), 1).state_dict())
try:
    load_backend("torch", "float64", devices=2).trainer(make_config("svhn32", tiny))
except ConfigError as err:
    found["global_refused"] = str(err)
moved = load_backend("torch", "float64").trainer(config)  # a data-parallel state on one device, and back
moved.load_state_dict(a)
parallel.load_state_dict(moved.state_dict())
b = parallel.state_dict()
found["round_trip_exact"] = all(np.array_equal(b[k], a[k]) for k in a if not k.startswith("rng.torch.rank"))
found["agreed_stop"] = parallel.should_stop(signal.SIGTERM if rank == 1 else None)

run = ["--backend", "torch", "--preset", "svhn32", "--dataset", "fake", "--set", "model.ngf=4", "--set",
       "model.ndf=4", "--set", "model.bn_statistics=per_device", "--set", "optim.ema=0.9", "--batch-size", "4",
       "--devices", "2", "--no-progress", "--checkpoint-every", "2"]
found["codes"] = [
    main(["train", *run, "--steps", "4", "--out", out + "/straight"]),
    main(["train", *run, "--steps", "2", "--out", out + "/resumed"]),
]
if rank == 0:
    print(json.dumps(found))
"""
)


# Each of two processes, one CPU device each, joined by jax.distributed, runs this: the global
# batch over both against one device, the stop both agree on, and `dcgan train --processes 2`
# as one of the processes started by hand (--process-id); process 0 reports.
JAX_PROCESSES_SCRIPT = (
    SHARED
    + """
from common.launch import join

out, process_id, coordinator = sys.argv[1], int(sys.argv[2]), sys.argv[3]
join("jax", 2, 2, process_id, coordinator)
tiny = {"model.ngf": 4, "model.ndf": 4, "optim.batch_size": 4, "optim.ema": 0.9}
config = make_config("mnist28", tiny)

found = {}
# The user's commands first, in float32: float64 (below) is a process-wide setting of JAX.
run = ["--backend", "jax", "--preset", "mnist28", "--dataset", "fake", "--set", "model.ngf=4", "--set",
       "model.ndf=4", "--set", "optim.ema=0.9", "--batch-size", "4", "--devices", "2", "--processes", "2",
       "--process-id", str(process_id), "--coordinator", coordinator, "--no-progress", "--checkpoint-every", "2"]
found["codes"] = [
    main(["train", *run, "--steps", "4", "--out", out + "/straight"]),
    main(["train", *run, "--steps", "2", "--out", out + "/resumed"]),
]

parallel = trained("jax", config, 2)
a = parallel.state_dict()
np.savez(f"{out}/process{process_id}.npz", **a)
found["agreed_stop"] = parallel.should_stop(signal.SIGTERM if process_id == 1 else None)
if process_id == 0:  # the global batch on this process's device alone
    found["global"] = difference(a, trained("jax", config, 1).state_dict())
    print(json.dumps(found))
"""
)


def _jax_and_keras(dcgan, out: Path, names: list[str]) -> dict:
    return json.loads(dcgan.python("-c", SCRIPT, str(out), *names).stdout.strip().splitlines()[-1])


def _torch(dcgan, out: Path) -> dict:
    """TORCH_SCRIPT under torchrun; then the user's commands: `dcgan` starts torchrun itself,
    at the width the run's checkpoint records, and a data-parallel checkpoint samples on one device."""
    out.mkdir()
    script = out / "ddp_check.py"
    script.write_text(TORCH_SCRIPT)
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    found = json.loads(dcgan.python(*torchrun, "--local-ranks-filter=0", str(script), str(out)).stdout.splitlines()[-1])
    resume = ["train", "--resume", "--steps", "4", "--no-progress", "--out", str(out / "resumed")]
    sample = ["sample", "--checkpoint", str(out / "straight"), "--out", str(out / "grid.png")]
    for command in (resume, sample):
        found["codes"].append(dcgan(*command).returncode)
    return found


def _jax_processes(dcgan, out: Path) -> dict:
    """JAX_PROCESSES_SCRIPT as two processes; then the user's command: `dcgan train --resume
    --processes 2` starts both itself. (Their checkpoint is the one-process run's, bit for bit,
    whose sampling on one device SCRIPT tests.)"""
    out.mkdir()
    coordinator = f"127.0.0.1:{free_port()}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda i: dcgan.python("-c", JAX_PROCESSES_SCRIPT, str(out), str(i), coordinator), (0, 1)))
    found = json.loads(done[0].stdout.strip().splitlines()[-1])
    found["summaries"] = ["loss.png" in process.stdout for process in done]  # the files are process 0's
    resume = ["train", "--resume", "--steps", "4", "--processes", "2", "--no-progress", "--out", str(out / "resumed")]
    found["codes"].append(dcgan(*resume).returncode)
    return found


@pytest.fixture(scope="module")
def runs(dcgan, tmp_path_factory) -> dict:
    """Every data-parallel backend, four jobs at once: JAX and Keras-JAX in one process with two
    CPU devices, Keras-TensorFlow in one with two logical CPU devices, torch's DDP as two
    processes, and JAX as two processes of one device each."""
    out = tmp_path_factory.mktemp("data-parallel")
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [
            pool.submit(_jax_and_keras, dcgan, out, ["jax", "keras-jax"]),
            pool.submit(_jax_and_keras, dcgan, out, ["keras-tensorflow"]),
            pool.submit(lambda: {"torch": _torch(dcgan, out / "torch")}),
            pool.submit(lambda: {"jax-processes": _jax_processes(dcgan, out / "jax-processes")}),
        ]
        found = {name: result for job in jobs for name, result in job.result().items()}
    names = [*DATA_PARALLEL, "jax-processes"]
    return {name: {**found[name], "out": out / name, "backend": name} for name in names}


@pytest.fixture(params=list(DATA_PARALLEL))
def run(request, runs) -> dict:
    return runs[request.param]


def test_two_devices_compute_the_single_device_run_of_the_global_batch(run):
    """model.bn_statistics "global": the global batch's statistics, as on one device; DDP
    offers them through SyncBatchNorm, on GPUs only, and refuses them on CPU by name."""
    if run["backend"] == "torch":
        assert "model.bn_statistics='global': per_device on torch's CPU" in run["global_refused"]
        return
    assert run["global"] <= TOLERANCES["float64"]["5 iterations"].limit


def test_per_device_statistics_are_ghost_batch_norm_on_one_device(run):
    """model.bn_statistics "per_device": each device's shard, which on one device is BN over
    each half of the batch; a different function from "global", by far more than rounding."""
    assert run["per_device"] <= TOLERANCES["float64"]["5 iterations"].limit
    assert run["per_device_vs_global"] > 1e-6


def test_replicas_stay_bit_identical_on_every_device(run):
    if run["backend"] == "torch":  # each process's state after training
        ranks = [np.load(run["out"] / f"rank{r}.npz") for r in (0, 1)]
        assert ranks[0].files and all(np.array_equal(ranks[0][k], ranks[1][k]) for k in ranks[0].files)
        return
    assert run["devices_holding_each_parameter"] == [2] and run["replicas_identical"]


def test_a_signal_in_one_process_stops_every_process_after_the_same_iteration(runs):
    """With a process per device (torch's DDP), SIGTERM seen by process 1 alone stops process 0 too."""
    assert runs["torch"]["agreed_stop"] == signal.SIGTERM


def test_checkpoints_move_between_one_and_two_devices_and_resume_exactly(run):
    assert run["round_trip_exact"]
    assert run["codes"] == [0, 0, 0, 0]
    straight, resumed = RunDir(run["out"] / "straight"), RunDir(run["out"] / "resumed")
    a, metadata = checkpoint.load(straight.checkpoint_path(4))
    b, _ = checkpoint.load(resumed.checkpoint_path(4))
    assert metadata["devices"] == "2" and all(np.array_equal(a[k], b[k]) for k in a)
    assert (run["out"] / "grid.png").exists()


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b not in DATA_PARALLEL])
def test_backends_without_data_parallelism_refuse_by_name(backend):
    with pytest.raises(ConfigError, match=f"--devices=2: 1 on {backend}"):
        load_backend(backend, devices=2)


def test_jax_in_two_processes_computes_the_single_device_run_of_the_global_batch(runs):
    """jax.distributed: two processes of one CPU device each, gloo between them, run the same
    step over the Mesh of both devices; each process holds the same state."""
    found = runs["jax-processes"]
    assert found["global"] <= TOLERANCES["float64"]["5 iterations"].limit
    processes = [np.load(found["out"] / f"process{i}.npz") for i in (0, 1)]
    assert processes[0].files and all(np.array_equal(processes[0][k], processes[1][k]) for k in processes[0].files)
    assert found["agreed_stop"] == signal.SIGTERM


def test_jax_in_two_processes_is_the_run_of_one_process_with_two_devices_and_resumes_exactly(runs):
    """`dcgan train --processes 2` started by hand (--process-id) and by dcgan itself (the
    resume): the checkpoint process 0 wrote equals the one-process run's on two devices."""
    found = runs["jax-processes"]
    assert found["codes"] == [0, 0, 0]
    assert found["summaries"] == [True, False]  # only process 0, which wrote them, names the run's files
    step4 = [
        checkpoint.load(RunDir(path).checkpoint_path(4))
        for path in (found["out"] / "straight", found["out"] / "resumed", runs["jax"]["out"] / "straight")
    ]
    (a, metadata), (b, _), (one_process, _) = step4
    assert metadata["devices"] == "2" and all(np.array_equal(a[k], b[k]) for k in a)
    assert all(np.array_equal(a[k], one_process[k]) for k in one_process)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_first_process_to_fail_is_named_and_the_others_are_ended(capsys):
    """jax_impl/distributed.py's launcher: process 1 fails while process 0 waits (as it would
    in a collective); the run's code is process 1's, with its last line, and process 0 ends."""
    waiting = _python("import time; time.sleep(600)")
    failing = _python("import sys; print('gloo: connection refused', file=sys.stderr); sys.exit(3)")
    assert run_processes([waiting, failing], [dict(os.environ)] * 2) == 3
    err = capsys.readouterr().err
    assert err.splitlines() == ["dcgan: error: process 1 of 2 failed first (exit code 3)", "gloo: connection refused"]


def test_a_signal_to_the_launcher_reaches_every_process_once(tmp_path):
    """SIGTERM to the launcher is passed on once to each process; they stop in their own time
    (process 0 saving), and the run's code is process 0's."""
    import threading

    stopping = (
        "import signal, sys, time, pathlib\n"
        "seen = []\n"
        "signal.signal(signal.SIGTERM, lambda *a: seen.append(1))\n"
        "pathlib.Path(sys.argv[1]).touch()\n"
        "while not seen: time.sleep(0.01)\n"
        "time.sleep(0.3 if sys.argv[2] == '0' else 0)\n"  # process 0 saves; 1 is done at once
        "pathlib.Path(sys.argv[1]).write_text(str(len(seen)))\n"
        "sys.exit(143)\n"
    )
    marks = [tmp_path / f"process{i}" for i in (0, 1)]
    commands = [[*_python(stopping), str(mark), str(i)] for i, mark in enumerate(marks)]

    def terminate_when_started():
        while not all(mark.exists() for mark in marks):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_when_started, daemon=True).start()
    assert run_processes(commands, [dict(os.environ)] * 2) == 143
    assert [mark.read_text() for mark in marks] == ["1", "1"]  # both finished, each signalled once

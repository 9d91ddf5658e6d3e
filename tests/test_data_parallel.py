"""`dcgan train --devices N`: on two CPU devices the data-parallel run is the single-device
run of the same global batch, in float64 within the parity suite's tolerance; the replicas
stay bit-identical; its checkpoints open on one device and back; `--resume` continues it
exactly. JAX and Keras on JAX here, in one process with two CPU devices (jax_num_cpu_devices);
the backends that cannot yet are refused by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import checkpoint
from common.backends import BACKENDS, DATA_PARALLEL, load_backend
from common.errors import ConfigError
from common.parity import TOLERANCES
from common.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]

# In a process of its own: JAX takes its CPU device count before it first runs.
SCRIPT = """
import json, sys
import numpy as np
from common import checkpoint
from common.algorithm import iteration_noise
from common.backends import load_backend
from common.cli import main
from common.presets import make_config

tiny = {"model.ngf": 4, "model.ndf": 4, "optim.batch_size": 4}
config = make_config("mnist28", tiny)
rng = np.random.default_rng(0)
inputs = [(rng.uniform(-1, 1, (1, 8, 1, 28, 28)), iteration_noise(config, step, 8)) for step in range(2)]

def trained(config, devices, groups=1):
    trainer = load_backend(name, "float64", devices=devices).trainer(config)
    if groups > 1:  # ghost batch norm on one device
        from jax_impl.backend import set_bn_groups
        for network in (trainer.generator, trainer.discriminator):
            set_bn_groups(network, groups)
    for reals, noise in inputs:
        trainer.train_step(reals, noise.z_d, noise.z_g)
    return trainer

def difference(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a if a[k].dtype.kind == "f")

def replicas(trainer):
    if name == "keras-jax":
        leaves = [v.value for v in trainer.generator.weights + trainer.discriminator.weights]
    else:
        from flax import nnx
        networks = (trainer.generator, trainer.discriminator)
        states = [nnx.state(networks, kind) for kind in (nnx.Param, nnx.BatchStat)]
        leaves = [v[...] for state in states for _, v in nnx.to_flat_state(state)]
    shards = [[np.asarray(s.data) for s in x.addressable_shards] for x in leaves]
    return sorted({len(s) for s in shards}), all(all(np.array_equal(s[0], t) for t in s[1:]) for s in shards)

results = {}
for name in sys.argv[2:]:  # jax first: the process's two CPU devices are asked for before JAX runs
    out = sys.argv[1] + "/" + name
    parallel = trained(config, 2)  # per-device batch 4, global 8
    found = {}
    found["devices_holding_each_parameter"], found["replicas_identical"] = replicas(parallel)
    a = parallel.state_dict()
    found["global"] = difference(a, trained(config, 1).state_dict())  # the global batch, 8, on one device
    per_device = make_config("mnist28", {**tiny, "model.bn_statistics": "per_device"})
    if name == "jax":
        own = trained(per_device, 2).state_dict()
        found["per_device"] = difference(own, trained(per_device, 1, groups=2).state_dict())
        found["per_device_vs_global"] = difference(own, a)
    else:
        from common.errors import ConfigError
        try:
            load_backend(name, "float64", devices=2).trainer(per_device)
        except ConfigError as err:
            found["per_device_refused"] = str(err)

    moved = load_backend(name, "float64").trainer(config)  # a data-parallel state on one device, and back
    moved.load_state_dict(a)
    back = load_backend(name, "float64", devices=2).trainer(config)
    back.load_state_dict(moved.state_dict())
    found["round_trip_exact"] = all(np.array_equal(back.state_dict()[k], a[k]) for k in a)

    run = ["--backend", name, "--preset", "mnist28", "--dataset", "fake", "--set", "model.ngf=4", "--set",
           "model.ndf=4", "--batch-size", "4", "--devices", "2", "--no-progress", "--checkpoint-every", "2"]
    found["codes"] = [
        main(["train", *run, "--steps", "4", "--out", out + "/straight"]),
        main(["train", *run, "--steps", "2", "--out", out + "/resumed"]),
        main(["train", "--resume", "--steps", "4", "--no-progress", "--out", out + "/resumed"]),  # its 2 devices
        main(["sample", "--checkpoint", out + "/straight", "--out", out + "/grid.png"]),  # one device
    ]
    results[name] = found
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every data-parallel backend, in one process with two CPU devices."""
    out = tmp_path_factory.mktemp("data-parallel")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), *DATA_PARALLEL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: {**found[name], "out": out / name, "backend": name} for name in DATA_PARALLEL}


@pytest.fixture(params=list(DATA_PARALLEL))
def run(request, runs) -> dict:
    return runs[request.param]


def test_two_devices_compute_the_single_device_run_of_the_global_batch(run):
    """model.bn_statistics "global": the global batch's statistics, as on one device."""
    assert run["global"] <= TOLERANCES["float64"]["5 iterations"].limit


def test_per_device_statistics_are_ghost_batch_norm_on_one_device(run):
    """model.bn_statistics "per_device": each device's shard, which on one device is BN over
    each half of the batch; a different function from "global", by far more than rounding."""
    if run["backend"] != "jax":  # not built there yet: refused by name
        assert "model.bn_statistics='per_device': global on keras-jax" in run["per_device_refused"]
        return
    assert run["per_device"] <= TOLERANCES["float64"]["5 iterations"].limit
    assert run["per_device_vs_global"] > 1e-6


def test_replicas_stay_bit_identical_on_every_device(run):
    assert run["devices_holding_each_parameter"] == [2] and run["replicas_identical"]


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

"""`dcgan train --devices N`: on two CPU devices the data-parallel run is the single-device
run of the same global batch, in float64 within the parity suite's tolerance; the replicas
stay bit-identical; its checkpoints open on one device and back; `--resume` continues it
exactly. JAX here (one process, two CPU devices through jax_num_cpu_devices); the backends
that cannot yet are refused by name.
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
JAX_SCRIPT = """
import json, sys
import numpy as np
from common import checkpoint
from common.algorithm import iteration_noise
from common.backends import load_backend
from common.cli import main
from common.presets import make_config
from common.rundir import RunDir

out = sys.argv[1]
from jax_impl.backend import set_bn_groups
config = make_config("mnist28", {"model.ngf": 4, "model.ndf": 4, "optim.batch_size": 4, "optim.d_steps": 2})
per_device = make_config("mnist28", {"model.ngf": 4, "model.ndf": 4, "optim.batch_size": 4, "optim.d_steps": 2,
                                     "model.bn_statistics": "per_device"})
parallel = load_backend("jax", "float64", devices=2).trainer(config)  # per-device batch 4
single = load_backend("jax", "float64").trainer(config)  # the same global batch, 8, on one device
parallel_own = load_backend("jax", "float64", devices=2).trainer(per_device)  # each device's BN statistics
ghost = load_backend("jax", "float64").trainer(per_device)  # one device, BN over each half of the batch
for network in (ghost.generator, ghost.discriminator):
    set_bn_groups(network, 2)
rng = np.random.default_rng(0)
for step in range(2):
    reals = rng.uniform(-1, 1, (2, 8, 1, 28, 28))
    noise = iteration_noise(config, step, 8)
    for trainer in (parallel, single, parallel_own, ghost):
        trainer.train_step(reals, noise.z_d, noise.z_g)

def difference(one, other):
    a, b = one.state_dict(), other.state_dict()
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a if a[k].dtype.kind == "f")

found = {"global": difference(parallel, single), "per_device": difference(parallel_own, ghost),
         "per_device_vs_global": difference(parallel_own, parallel)}
a = parallel.state_dict()

from flax import nnx
params = nnx.state((parallel.generator, parallel.discriminator), nnx.Param)
shards = [[np.asarray(s.data) for s in v[...].addressable_shards] for _, v in nnx.to_flat_state(params)]
found["devices_holding_each_parameter"] = sorted({len(s) for s in shards})
found["replicas_identical"] = all(all(np.array_equal(s[0], t) for t in s[1:]) for s in shards)

moved = load_backend("jax", "float64").trainer(config)  # a data-parallel state on one device, and back
moved.load_state_dict(a)
back = load_backend("jax", "float64", devices=2).trainer(config)
back.load_state_dict(moved.state_dict())
found["round_trip_exact"] = all(np.array_equal(back.state_dict()[k], a[k]) for k in a)

tiny = ["--backend", "jax", "--preset", "mnist28", "--dataset", "fake", "--set", "model.ngf=4", "--set",
        "model.ndf=4", "--batch-size", "4", "--devices", "2", "--no-progress", "--checkpoint-every", "2"]
found["codes"] = [
    main(["train", *tiny, "--steps", "4", "--out", out + "/straight"]),
    main(["train", *tiny, "--steps", "2", "--out", out + "/resumed"]),
    main(["train", "--resume", "--steps", "4", "--no-progress", "--out", out + "/resumed"]),  # its 2 devices
    main(["sample", "--checkpoint", out + "/straight", "--out", out + "/grid.png"]),  # one device
]
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("data-parallel")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT, str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "out": out}


def test_two_devices_compute_the_single_device_run_of_the_global_batch(jax_run):
    """model.bn_statistics "global": the global batch's statistics, as on one device."""
    assert jax_run["global"] <= TOLERANCES["float64"]["5 iterations"].limit


def test_per_device_statistics_are_ghost_batch_norm_on_one_device(jax_run):
    """model.bn_statistics "per_device": each device's shard, which on one device is BN over
    each half of the batch; a different function from "global", by far more than rounding."""
    assert jax_run["per_device"] <= TOLERANCES["float64"]["5 iterations"].limit
    assert jax_run["per_device_vs_global"] > 1e-6


def test_replicas_stay_bit_identical_on_every_device(jax_run):
    assert jax_run["devices_holding_each_parameter"] == [2] and jax_run["replicas_identical"]


def test_checkpoints_move_between_one_and_two_devices_and_resume_exactly(jax_run):
    assert jax_run["round_trip_exact"]
    assert jax_run["codes"] == [0, 0, 0, 0]
    straight, resumed = RunDir(jax_run["out"] / "straight"), RunDir(jax_run["out"] / "resumed")
    a, metadata = checkpoint.load(straight.checkpoint_path(4))
    b, _ = checkpoint.load(resumed.checkpoint_path(4))
    assert metadata["devices"] == "2" and all(np.array_equal(a[k], b[k]) for k in a)
    assert (jax_run["out"] / "grid.png").exists()


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b not in DATA_PARALLEL])
def test_backends_without_data_parallelism_refuse_by_name(backend):
    with pytest.raises(ConfigError, match=f"--devices=2: 1 on {backend}"):
        load_backend(backend, devices=2)

"""`dcgan train` and `dcgan sample` on every backend, tiny shapes, each backend in its own
processes (Keras fixes its backend per process), all backends at once.

For each backend and two tiny presets (mnist28: fresh noise, dropout, k = 2; dcgan64: the
G update reuses D's fakes), three runs: 4 iterations straight; 2 iterations then --resume
to 4; and `dcgan sample` from the finished run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import checkpoint
from common.algorithm import METRICS
from common.backends import BACKENDS
from common.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "mnist28": ["--set", "model.ngf=4", "--set", "model.ndf=4", "--set", "optim.d_steps=2", "--batch-size", "8"],
    "dcgan64": ["--set", "model.ngf=8", "--set", "model.ndf=8", "--batch-size", "8"],
}


def _dcgan(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "common.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def _chain(backend: str, preset: str, root: Path) -> dict:
    common = [
        "--backend",
        backend,
        "--preset",
        preset,
        "--dataset",
        "fake",
        "--no-progress",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "2",
        *CASES[preset],
    ]
    straight, resumed = root / f"{backend}-{preset}-straight", root / f"{backend}-{preset}-resumed"
    runs = [
        _dcgan("train", *common, "--steps", "4", "--out", str(straight)),
        _dcgan("train", *common, "--steps", "2", "--out", str(resumed), "--keep-every", "2"),
        _dcgan("train", *common, "--steps", "4", "--out", str(resumed), "--keep-every", "2", "--resume"),
        _dcgan(
            "sample",
            "--checkpoint",
            str(straight),
            "--n",
            "6",
            "--seed",
            "3",
            "--out",
            str(straight / "grid.png"),
            "--npz",
            str(straight / "grid.npz"),
        ),
    ]
    return {"straight": straight, "resumed": resumed, "runs": runs}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("training")
    with ThreadPoolExecutor(max_workers=len(BACKENDS)) as pool:
        futures = {(b, p): pool.submit(_chain, b, p, root) for b in BACKENDS for p in CASES}
        return {key: future.result() for key, future in futures.items()}


@pytest.fixture(params=[(b, p) for b in BACKENDS for p in CASES], ids=lambda case: f"{case[0]}-{case[1]}")
def result(request, results) -> dict:
    result = results[request.param]
    for run in result["runs"]:
        assert run.returncode == 0, f"{request.param}: {' '.join(run.args[2:])}\n{run.stderr[-3000:]}"
    return result


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_every_file_of_its_directory(result):
    run = result["straight"]
    records = _metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert all(np.isfinite(r[k]) for k in (*METRICS, "images_per_s", "time"))
        assert all(0 <= r[k] <= 1 for k in ("D_x", "D_G_z1", "D_G_z2"))
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_000002.png", "step_000004.png"]
    assert RunDir(run).saved_steps() == [4]  # step 2 pruned: only the latest is kept below keep_every
    assert (run / "loss.png").exists() and Image.open(run / "progress.gif").n_frames == 2
    assert "[model]" in (run / "config.toml").read_text()


def test_training_changes_every_network(result):
    before, _ = checkpoint.load(RunDir(result["resumed"]).checkpoint_path(2))
    after, metadata = checkpoint.load(RunDir(result["resumed"]).checkpoint_path(4))
    assert metadata["step"] == "4"
    changed = {k for k in before if before[k].shape == after[k].shape and not np.array_equal(before[k], after[k])}
    for network in ("generator", "discriminator"):
        assert any(network in k for k in changed), f"no {network} array changed between steps 2 and 4"


def test_resume_continues_exactly(result):
    straight, resumed = _metrics(result["straight"]), _metrics(result["resumed"])
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight, resumed):
        assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}, f"step {a['step']}: {a} != {b}"


def test_sample_writes_a_grid_and_arrays(result):
    arrays = np.load(result["straight"] / "grid.npz")
    images = arrays["images"]
    assert images.shape[0] == 6 and images.shape[1] in (1, 3) and arrays["z"].shape[0] == 6
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0
    assert Image.open(result["straight"] / "grid.png").size[0] > images.shape[-1]


FIT_SCRIPT = """
import json, sys
import numpy as np
from common.backends import load_backend
from common.presets import make_config
backend = load_backend(sys.argv[1])
config = make_config("svhn32", {"model.ngf": 4, "model.ndf": 4, "optim.d_steps": 2})
gan = backend.trainer(config).gan
images = np.random.default_rng(0).uniform(-1, 1, (32, 32, 32, 3)).astype("float32")
before = [np.array(v) for v in gan.generator.trainable_variables]
history = gan.fit(images, batch_size=16, epochs=2, verbose=0).history
changed = any(not np.array_equal(b, np.array(v)) for b, v in zip(before, gan.generator.trainable_variables))
print(json.dumps({"history": history, "changed": changed}))
"""


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.startswith("keras-")])
def test_keras_gan_trains_with_fit(backend):
    """The Keras GAN is a keras.Model: `fit` on plain images (noise drawn inside) works on each backend."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", FIT_SCRIPT, backend], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["changed"] and set(out["history"]) == set(METRICS)
    assert all(len(v) == 2 and np.all(np.isfinite(v)) for v in out["history"].values())

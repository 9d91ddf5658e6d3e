"""`dcgan train` and `dcgan sample` on every backend, tiny shapes, each backend in its own
processes (Keras fixes its backend per process), all backends at once.

For each backend and two tiny presets (mnist28: fresh noise, dropout, k = 2; dcgan64: the
G update reuses D's fakes), three runs: 4 iterations straight; 2 iterations then --resume
to 4; and `dcgan sample` from the finished run. A run that is really killed (SIGKILL),
stopped (SIGTERM) and killed again, at different points, and resumed each time, must end
with the weights of the same run left alone, bit for bit. And a scored run: 2 iterations
of a tiny mnist28 on the real Fashion-MNIST with --eval-every and --tensorboard, then
`dcgan eval` of its checkpoint, on the same backend. And `fit` on each Keras backend's GAN.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import checkpoint
from common.algorithm import METRICS
from common.backends import BACKENDS
from common.presets import make_config
from common.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "mnist28": ["--set", "model.ngf=4", "--set", "model.ndf=4", "--set", "optim.d_steps=2", "--batch-size", "8"],
    "dcgan64": ["--set", "model.ngf=8", "--set", "model.ndf=8", "--batch-size", "8"],
}


# Runs `dcgan` commands in-process (common.cli.main) in one interpreter: a process per backend
# and phase instead of one per command, since starting Python with a framework costs seconds.
# The resume runs in a process of its own, as a user's `--resume` would. Each command's result
# is a line of the results file as soon as it ends, so a process killed in its last command
# keeps the others'.
COMMANDS_SCRIPT = """
import contextlib, io, json, sys, traceback
from common.cli import main

with open(sys.argv[2], "a") as results:
    for args in json.loads(sys.argv[1]):
        err, out = io.StringIO(), {}
        with contextlib.redirect_stderr(err):
            try:
                if args[0] == "fit":  # not a dcgan command: FIT_CHECK, in the process that already has Keras
                    exec(FIT_CHECK, {"backend_name": args[1], "out": out})
                    code = 0
                else:
                    code = main(args)
            except BaseException:
                traceback.print_exc()
                code = -1
        results.write(json.dumps({"args": args, "code": code, "stderr": err.getvalue(), **out}) + "\\n")
        results.flush()
"""


# `fit` on a Keras backend's GAN (keras_impl/gan.py, a keras.Model): plain images, noise drawn
# inside; run as the command ["fit", BACKEND] in that backend's first process.
FIT_CHECK = """
import numpy as np
from common.backends import load_backend
from common.presets import make_config
config = make_config("svhn32", {"model.ngf": 4, "model.ndf": 4, "optim.d_steps": 2})
gan = load_backend(backend_name).trainer(config).gan
images = np.random.default_rng(0).uniform(-1, 1, (32, 32, 32, 3)).astype("float32")
before = [np.array(v) for v in gan.generator.trainable_variables]
out["history"] = gan.fit(images, batch_size=16, epochs=2, verbose=0).history
out["changed"] = any(not np.array_equal(b, np.array(v)) for b, v in zip(before, gan.generator.trainable_variables))
"""


def _dcgan(*commands: list[str], signals: tuple = ()) -> tuple[list[dict], int, str]:
    """Runs each command's `dcgan` arguments, in order, in one fresh process; returns the
    results of the commands that ended, the process's exit code and its stderr. `signals`:
    (metrics.jsonl of one of the runs, a line count, a signal), each sent to the process, in
    order, once that file has that many lines."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    script = f"FIT_CHECK = {FIT_CHECK!r}\n{COMMANDS_SCRIPT}"
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as results, tempfile.TemporaryFile("w+") as err:
        command = [sys.executable, "-c", script, json.dumps(commands), results.name]
        with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err) as run:
            for metrics, lines, signum in signals:
                _signal_after(run, metrics, lines, signum)
            run.wait()
        err.seek(0)
        return [json.loads(line) for line in results.read().splitlines()], run.returncode, err.read()[-3000:]


def _signal_after(process: subprocess.Popen, metrics: Path, lines: int, signum: int) -> None:
    """Sends `signum` to `process` once `metrics` has `lines` lines (or the process ended)."""
    while process.poll() is None:
        if metrics.exists() and metrics.read_bytes().count(b"\n") >= lines:
            process.send_signal(signum)
            return
        time.sleep(0.005)


def _commands(backend: str, preset: str, root: Path) -> tuple[list[list[str]], list[str], dict]:
    """A 4-step run, a 2-step run, and a sample of the first; the resume of the second to 4 steps."""
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
    first = [
        ["train", *common, "--steps", "4", "--out", str(straight)],
        ["train", *common, "--steps", "2", "--out", str(resumed), "--keep-every", "2"],
        [
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
        ],
    ]
    resume = ["train", *common, "--steps", "4", "--out", str(resumed), "--keep-every", "2", "--resume"]
    return first, resume, {"straight": straight, "resumed": resumed, "preset": preset}


SCORED_TRAINING = "torch"  # the backend of the --eval-every run; `dcgan eval` runs on every backend


def _scored(backend: str, root: Path) -> tuple[list[list[str]], Path]:
    """`dcgan eval` of a 2-iteration tiny mnist28 run on the real Fashion-MNIST; on
    SCORED_TRAINING that run is also scored at its end and logged to TensorBoard."""
    run = root / f"{backend}-scored"
    tiny = ["--set", "model.ngf=4", "--set", "model.ndf=4", "--batch-size", "8", "--no-progress"]
    scored = ["--eval-every", "2", "--eval-n", "32", "--tensorboard"] if backend == SCORED_TRAINING else []
    return [
        ["train", "--backend", backend, "--preset", "mnist28", "--dataset", "fashion-mnist", *tiny, "--steps", "2",
         *scored, "--out", str(run)],
        ["eval", "--checkpoint", str(run), "--n", "32", "--json", str(run / "eval.json"), "--no-progress"],
    ], run  # fmt: skip


# The stopped run: KILL_STEPS iterations, a checkpoint after each, killed (SIGKILL) as the last
# command of the chain's first process once metrics.jsonl has 4 lines; resumed in the second,
# stopped (SIGTERM, which main catches) at 12 lines, resumed again in the same process after
# the other runs' resumes and killed at 20 lines; resumed to the end in the third. Each signal
# lands wherever the run is by then: in a step, a save, a metrics line.
KILL_STEPS = 30
KILLS = ((4, signal.SIGKILL), (12, signal.SIGTERM), (20, signal.SIGKILL))


def _killed(backend: str, root: Path) -> tuple[list[str], list[str], Path]:
    """The stopped run's command, the reference run's, and the stopped run's directory."""
    out = root / f"{backend}-killed"
    tiny = ["--backend", backend, "--preset", "mnist28", "--dataset", "fake", "--no-progress", *CASES["mnist28"]]
    train = ["train", *tiny, "--steps", str(KILL_STEPS), "--checkpoint-every", "1", "--out", str(out)]
    reference = ["train", *tiny, "--steps", str(KILL_STEPS), "--out", str(root / f"{backend}-unkilled")]
    return train, reference, out


def _chain(backend: str, root: Path) -> dict:
    """Every preset of CASES on one backend, the stopped run and the scored run, in three
    processes: the first runs (the stopped run killed last), the resumes, the last resume."""
    planned = {preset: _commands(backend, preset, root) for preset in CASES}
    scored, scored_dir = _scored(backend, root)
    train, reference, killed_dir = _killed(backend, root)
    metrics = killed_dir / "metrics.jsonl"
    fit = [["fit", backend]] if backend.startswith("keras-") else []
    firsts = [command for commands, _, _ in planned.values() for command in commands]
    resumes = [resume for _, resume, _ in planned.values()]
    final = ["train", "--resume", "--out", str(killed_dir), "--steps", str(KILL_STEPS), "--no-progress"]
    kill, term = [(metrics, *KILLS[0])], [(metrics, *k) for k in KILLS[1:]]
    first = _dcgan(*firsts, *scored, reference, *fit, train, signals=kill)
    second = _dcgan([*train, "--resume"], *resumes, [*train, "--resume"], signals=term)
    third = _dcgan(final)
    first_done, second_done = first[0], second[0]
    stopped_by_term = second_done[0] if second_done and second_done[0]["args"][-1] == "--resume" else None
    stopped = [
        {"signal": KILLS[0][1], "after": KILLS[0][0], "code": first[1], "stderr": first[2]},
        {"signal": KILLS[1][1], "after": KILLS[1][0], **(stopped_by_term or {"code": None, "stderr": second[2]})},
        {"signal": KILLS[2][1], "after": KILLS[2][0], "code": second[1], "stderr": second[2]},
    ]
    second_done = second_done[1:]
    fitted = next((done for done in first_done if done["args"] == ["fit", backend]), None)
    at = {"scored": len(firsts), "reference": len(firsts) + len(scored)}
    results = {
        (backend, "fit"): fitted,
        (backend, "killed"): {
            "run": killed_dir,
            "reference": root / f"{backend}-unkilled",
            "stopped": stopped,
            "runs": _ran([reference], first_done[at["reference"] :], first[2]) + _ran([final], third[0], third[2]),
        },
    }
    for index, (preset, (_, _, dirs)) in enumerate(planned.items()):
        runs = _ran(firsts[3 * index : 3 * index + 3], first_done[3 * index : 3 * index + 3], first[2])
        runs += _ran(resumes[index : index + 1], second_done[index : index + 1], second[2])
        results[(backend, preset)] = {**dirs, "runs": runs}
    runs = _ran(scored, first_done[at["scored"] : at["reference"]], first[2])
    results[(backend, "scored")] = {"run": scored_dir, "runs": runs}
    return results


def _ran(commands: list[list[str]], done: list[dict], stderr: str) -> list[dict]:
    """The results of `commands`: those the process reported, and for each it never reached,
    a failure that shows the process's stderr."""
    return done[: len(commands)] + [{"args": c, "code": "never ran", "stderr": stderr} for c in commands[len(done) :]]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("training")
    with ThreadPoolExecutor(max_workers=len(BACKENDS)) as pool:
        found = {}
        for chain in pool.map(lambda b: _chain(b, root), BACKENDS):
            found.update(chain)
        return found


@pytest.fixture(params=[(b, p) for b in BACKENDS for p in CASES], ids=lambda case: f"{case[0]}-{case[1]}")
def result(request, results) -> dict:
    result = results[request.param]
    assert result["runs"], f"{request.param}: no command ran"
    for run in result["runs"]:
        assert run["code"] == 0, f"{request.param}: {' '.join(run['args'])}\n{run['stderr'][-3000:]}"
    return result


@pytest.fixture(params=list(BACKENDS))
def scored(request, results) -> dict:
    result = results[(request.param, "scored")]
    for run in result["runs"]:
        assert run["code"] == 0, f"{request.param}: {' '.join(run['args'])}\n{run['stderr'][-3000:]}"
    return {**result, "backend": request.param}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_killed_and_stopped_run_resumes_to_the_same_weights(backend, results):
    killed = results[(backend, "killed")]
    for run in killed["runs"]:
        assert run["code"] == 0, f"{backend}: {' '.join(run['args'])}\n{run['stderr'][-3000:]}"
    for stop in killed["stopped"]:
        name = signal.Signals(stop["signal"]).name
        if stop["signal"] == signal.SIGKILL:
            assert stop["code"] == -signal.SIGKILL, f"{name} after {stop['after']} lines came too late: {stop}"
        else:  # SIGTERM: the iteration in progress is finished and saved, and the process says so
            assert stop["code"] == 128 + signal.SIGTERM, stop["stderr"][-3000:]
            assert "Traceback" not in stop["stderr"] and f"stopped by {name} after iteration" in stop["stderr"]
    assert [r["step"] for r in _metrics(killed["run"])] == list(range(1, KILL_STEPS + 1))
    mine, _ = checkpoint.load(RunDir(killed["run"]).checkpoint_path(KILL_STEPS))
    reference, _ = checkpoint.load(RunDir(killed["reference"]).checkpoint_path(KILL_STEPS))
    assert mine.keys() == reference.keys()
    for key in reference:
        assert np.array_equal(mine[key], reference[key]), f"{backend}: {key} differs from the run never stopped"


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
    images, model = arrays["images"], make_config(result["preset"]).model
    assert images.shape == (6, model.channels, model.image_size, model.image_size) and images.dtype == np.float32
    assert arrays["z"].shape == (6, model.latent_dim)
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0
    assert Image.open(result["straight"] / "grid.png").size[0] > images.shape[-1]


def _tensorboard_events(folder: Path) -> list:
    """The events of a TensorBoard log, read as TFRecords (length, its CRC, the data, its CRC)
    with tensorboard's protocol buffers alone: its EventAccumulator would import TensorFlow
    into this process, which already holds PyTorch and JAX."""
    from tensorboard.compat.proto.event_pb2 import Event

    events = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        while data:
            (length,) = struct.unpack("<Q", data[:8])
            events.append(Event.FromString(data[12 : 12 + length]))
            data = data[12 + length + 4 :]
    return events


def test_eval_every_logs_the_scores_plots_them_and_writes_tensorboard_events(results):
    scored = results[(SCORED_TRAINING, "scored")]
    assert all(run["code"] == 0 for run in scored["runs"]), scored["runs"]
    records = _metrics(scored["run"])
    assert "fd" not in records[0]  # scored every 2 iterations, and at the end
    last = records[-1]
    assert last["step"] == 2 and 0 < last["fd_low"] <= last["fd"] <= last["fd_high"]
    assert all(np.isfinite(last[k]) for k in ("kid", "precision", "recall", "density", "coverage"))
    assert 1 <= last["classes_covered"] <= 10
    with Image.open(scored["run"] / "loss.png") as image:  # the losses, and FD below them
        assert image.size[1] > image.size[0]
    values = [(e.step, v) for e in _tensorboard_events(scored["run"] / "tensorboard") for v in e.summary.value]
    scalars = {(step, v.tag): v.simple_value for step, v in values if not v.HasField("image")}
    images = [(step, v.tag) for step, v in values if v.HasField("image")]
    assert {"loss_D", "loss_G", "D_x", "fd"} <= {tag for _, tag in scalars}
    assert scalars[(2, "fd")] == pytest.approx(last["fd"]) and images == [(1, "samples"), (2, "samples")]


def test_eval_scores_a_checkpoint_beside_its_reference_points(scored):
    found = json.loads((scored["run"] / "eval.json").read_text())
    assert found["backend"] == scored["backend"] and found["step"] == 2 and found["n"] == 32
    assert found["features"] == "FD (Fashion-MNIST features)"
    floor, fresh = found["reference"]["real_vs_real"], found["reference"]["fresh_generator"]
    assert floor["n"] == fresh["n"] == 32  # the floor at the samples' own n
    assert 0 <= floor["fd"] < fresh["fd"]  # real vs real sits below an untrained G
    assert sum(found["class_counts"]) == 32 and 0 <= found["class_kl"]


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.startswith("keras-")])
def test_keras_gan_trains_with_fit(backend, results):
    """The Keras GAN is a keras.Model: `fit` on plain images (noise drawn inside) works on each backend."""
    fitted = results[(backend, "fit")]
    assert fitted is not None and fitted["code"] == 0, fitted
    assert fitted["changed"] and set(fitted["history"]) == set(METRICS)
    assert all(len(v) == 2 and np.all(np.isfinite(v)) for v in fitted["history"].values())

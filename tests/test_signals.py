"""SIGINT and SIGTERM stop a run after a whole iteration, save it, say how to resume (or, before
the first iteration, that nothing is saved yet), and exit 128 + the signal's number; resumed
with the command the message gives, which names no target, the run goes on to the one it was
started with and ends with the weights of an uninterrupted one, bit for bit. Each signal lands
at several points of the loop (PyTorch, in this process; the kills of every backend's process
are in tests/test_training.py). Also the other ways a run stops: a failed save, and a second
signal.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common import checkpoint
from common import rundir as rundir_module
from common import train as train_module
from common.cli import main
from common.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
STEPS = 6
TINY = ["--preset", "mnist28", "--dataset", "fake", "--set", "model.ngf=4", "--set", "model.ndf=4", "--batch-size", "4"]


def _train(out: Path, *extra: str) -> int:
    return main(
        ["train", "--backend", "torch", *TINY, "--steps", str(STEPS), "--no-progress", "--out", str(out), *extra]
    )


def _final(out: Path) -> dict[str, np.ndarray]:
    arrays, _ = checkpoint.load(RunDir(out).checkpoint_path(STEPS))
    return arrays


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, np.ndarray]:
    """The weights (and Adam's state, and the RNG's) of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert _train(out) == 0
    return _final(out)


def _signal_once(signum: int):
    """A function that sends `signum` to this process the first time it is called."""
    sent = []

    def send():
        if not sent:
            sent.append(signum)
            os.kill(os.getpid(), signum)

    return send


def _inject(point: str, send, monkeypatch) -> None:
    """Arranges for `send` to run at `point` of the training loop."""
    if point == "before the first iteration":  # while the dataset loads
        load = train_module.load_dataset
        monkeypatch.setattr(train_module, "load_dataset", lambda *a: (send(), load(*a))[1])
    elif point == "between D's update and G's":  # PyTorch updates D in place, then G
        step, calls = torch.optim.Adam.step, []

        def adam_step(self, *args, **kwargs):
            out = step(self, *args, **kwargs)
            calls.append(1)
            if len(calls) == 5:  # iteration 3's D update (D, G, D, G, D, ...)
                send()
            return out

        monkeypatch.setattr(torch.optim.Adam, "step", adam_step)
    elif point == "while saving a checkpoint":
        save = checkpoint.save_file
        monkeypatch.setattr(checkpoint, "save_file", lambda *a, **k: (send(), save(*a, **k))[1])
    elif point == "while writing a grid":
        save_grid = rundir_module.save_grid
        monkeypatch.setattr(rundir_module, "save_grid", lambda *a: (send(), save_grid(*a))[1])


POINTS = {  # the iteration each point stops after, with --checkpoint-every 2 and --sample-every 3
    "before the first iteration": 0,
    "between D's update and G's": 3,
    "while saving a checkpoint": 2,
    "while writing a grid": 3,
}


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_the_iteration_and_resume_ends_bit_identical(
    point, signum, reference, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    _inject(point, _signal_once(signum), monkeypatch)
    assert _train(out, "--checkpoint-every", "2", "--sample-every", "3") == 128 + signum
    err = capsys.readouterr().err
    stopped = POINTS[point]
    name = signal.Signals(signum).name
    assert "Traceback" not in err
    if stopped:
        assert f"stopped by {name} after iteration {stopped}, which is saved" in err
    else:  # only what is true: no iteration ran, so none is saved
        assert f"stopped by {name} before iteration 1: nothing is trained or saved yet" in err
        assert "which is saved" not in err
    assert f"dcgan train --resume --out {out}" in err
    run = RunDir(out)
    assert [r["step"] for r in run.read_metrics()] == list(range(1, stopped + 1))
    assert run.saved_steps()[-1:] == ([stopped] if stopped else [])  # the last iteration is saved, nothing more
    assert (out / "loss.png").exists() == (stopped > 0)
    assert signal.getsignal(signum) is not train_module.StopOnSignal._handle  # handlers restored

    monkeypatch.undo()  # then the command the message gives, word for word: the run's target is its own
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    final = _final(out)
    assert final.keys() == reference.keys()
    for key in reference:
        assert np.array_equal(final[key], reference[key]), key
    assert [r["step"] for r in run.read_metrics()] == list(range(1, STEPS + 1))


def test_a_second_signal_exits_at_once_and_keeps_the_last_checkpoint(tmp_path):
    """In a process of its own, since it really ends the process: SIGTERM twice inside a step."""
    out = tmp_path / "run"
    argv = ["train", "--backend", "torch", *TINY, "--steps", "8", "--checkpoint-every", "2", "--no-progress"]
    argv += ["--out", str(out)]
    script = f"""
import os, signal, sys, torch
from common.cli import main
step, calls = torch.optim.Adam.step, []
def adam_step(self, *a, **k):
    calls.append(1)
    if len(calls) == 9:  # inside iteration 5, after the checkpoint of iteration 4
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
    return step(self, *a, **k)
torch.optim.Adam.step = adam_step
sys.exit(main({argv!r}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    assert "SIGTERM again: stopping at once" in done.stderr and "Traceback" not in done.stderr
    run = RunDir(out)
    assert run.saved_steps() == [4]  # nothing after it was saved; what was saved is whole
    arrays, metadata = checkpoint.load(run.checkpoint_path(4))  # verified against its hash
    assert metadata["step"] == "4"


def test_a_failed_save_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    """The choice: stop with one line (training on without saving would risk more work)."""
    out = tmp_path / "run"
    save, saves = checkpoint.save_file, []

    def save_file(arrays, path, metadata=None):
        saves.append(path)
        if len(saves) == 2:  # the second save meets a full disk half-way through its file
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return save(arrays, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    assert _train(out, "--checkpoint-every", "2") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "could not save iteration 4's checkpoint" in err and "No space left on device" in err
    assert "step_000002.safetensors, is intact" in err and f"--resume --out {out}" in err
    run = RunDir(out)
    assert run.saved_steps() == [2]
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["step_000002.safetensors"]  # no partial file
    checkpoint.load(run.checkpoint_path(2))  # whole: it verifies

    monkeypatch.undo()
    assert main(["train", "--resume", "--out", str(out), "--steps", str(STEPS), "--no-progress"]) == 0
    assert run.saved_steps()[-1] == STEPS

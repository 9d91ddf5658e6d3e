"""What the machine refuses: a full disk (ENOSPC) at the first checkpoint or while resuming, a
read-only file system (EROFS), a file name too long (ENAMETOOLONG), memory. Each ends in one
line that names the file (or says memory) and what was kept, exits 1, and loses nothing: the
last checkpoint stays whole and the run continues from it. The disk and memory are
simulated by failing the write or the step where it happens (the tests run as root, which
a read-only directory would not stop); the long name is real.
"""

from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import SafetensorError

from common import canonical, checkpoint
from common import rundir as rundir_module
from common import train as train_module
from common.cli import main
from common.presets import make_config
from common.rundir import RunDir

TINY = ["--preset", "mnist28", "--dataset", "fake", "--set", "model.ngf=4", "--set", "model.ndf=4", "--batch-size", "4"]
LONG = "x" * 300  # longer than the 255 bytes of a file name on Linux's file systems


def _train(out: Path, *extra: str) -> int:
    return main(["train", "--backend", "torch", *TINY, "--no-progress", "--out", str(out), *extra])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def model(tmp_path) -> Path:
    """A checkpoint of zeros, made without a framework."""
    config = make_config("mnist28", {"model.ngf": 4, "model.ndf": 4})
    state = {e.key: np.zeros(e.shape, np.float32) for e in canonical.entries(config)}
    path = tmp_path / "model.safetensors"
    checkpoint.save(path, {**state, **canonical.fresh_optimizer(config)}, canonical.metadata(config, "torch", 1))
    return path


def test_a_full_disk_at_the_first_checkpoint(tmp_path, monkeypatch, capsys):
    """safetensors reports a failed write as its own error, with the errno in its message
    (as safetensors 0.8 words it); the checkpoint's writer makes it the OSError it is."""

    def save_file(arrays, path, metadata=None):
        Path(path).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    out = tmp_path / "run"
    assert _train(out, "--steps", "2", "--checkpoint-every", "1") == 1
    err = _one_line(capsys)
    assert f"{out}/checkpoints/step_000001.safetensors: No space left on device (ENOSPC)" in err
    assert "no checkpoint was saved yet" in err
    assert list(RunDir(out).checkpoints_dir.iterdir()) == []  # no partial file


def test_a_full_disk_while_resuming_keeps_the_run(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert _train(out, "--steps", "2") == 0
    capsys.readouterr()

    def full(file, *args, **kwargs):  # resumes.jsonl, written when a resume starts
        if Path(file).name == "resumes.jsonl":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a failed write() says it: no file named
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(rundir_module, "open", full, raising=False)
    assert main(["train", "--resume", "--out", str(out), "--steps", "4", "--no-progress"]) == 1
    err = _one_line(capsys)
    assert f"dcgan: error: {out}: No space left on device (ENOSPC)" in err
    assert "the run is saved up to iteration 2 (its last checkpoint, step_000002.safetensors, is intact)" in err
    run = RunDir(out)
    assert run.saved_steps() == [2] and [r["step"] for r in run.read_metrics()] == [1, 2]
    monkeypatch.undo()
    assert main(["train", "--resume", "--out", str(out), "--steps", "4", "--no-progress"]) == 0
    assert run.saved_steps() == [4]


def test_out_of_memory_mid_run_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    step, calls = train_module._train_step, []

    def step_that_runs_out(trainer, reals, noise):
        calls.append(1)
        if len(calls) == 4:
            raise MemoryError
        return step(trainer, reals, noise)

    monkeypatch.setattr(train_module, "_train_step", step_that_runs_out)
    out = tmp_path / "run"
    assert _train(out, "--steps", "6", "--checkpoint-every", "2") == 1
    err = _one_line(capsys)
    assert "dcgan: error: out of memory; the run is saved up to iteration 2" in err
    assert RunDir(out).saved_steps() == [2]  # iteration 3, finished, is not saved: the step after it failed mid-way


def test_a_read_only_file_system_names_the_file_and_leaves_none(model, tmp_path, monkeypatch, capsys):
    def read_only(self, fp, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(fp))

    monkeypatch.setattr(Image.Image, "save", read_only)
    out = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(model), "--n", "4", "--out", str(out)]) == 1
    assert f"dcgan: error: {out}: Read-only file system (EROFS)\n" == _one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


@pytest.mark.parametrize("command", ["sample", "train"])
def test_a_file_name_too_long(command, model, tmp_path, capsys):
    if command == "sample":
        target = f"{tmp_path}/{LONG}.png"
        argv = ["sample", "--checkpoint", str(model), "--n", "4", "--out", target]
    else:
        target = f"{tmp_path}/{LONG}"
        argv = ["train", *TINY, "--steps", "1", "--out", target]
    assert main(argv) == 1
    assert f"dcgan: error: {target}: File name too long (ENAMETOOLONG)" in _one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_sample_of_a_run_whose_run_json_is_damaged_reads_its_checkpoint(model, tmp_path, capsys):
    """sample (and eval) read a run's checkpoint, which carries its config, never run.json:
    a damaged run.json loses none of the run's checkpoints."""
    run = RunDir(tmp_path / "run")
    run.checkpoints_dir.mkdir(parents=True)
    os.replace(model, run.checkpoint_path(1))
    run.run_file.write_text("[1, 2]\n")
    assert main(["sample", "--checkpoint", str(run.path), "--n", "4", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").is_file()


def test_sample_npz_is_written_under_the_name_given(model, tmp_path, capsys):
    """numpy.savez adds .npz to a name without it; --npz writes the file it names, and says so."""
    npz = tmp_path / "arrays"
    argv = ["sample", "--checkpoint", str(model), "--n", "4", "--out", str(tmp_path / "grid.png"), "--npz", str(npz)]
    assert main(argv) == 0
    assert f"and {npz}" in capsys.readouterr().out
    with np.load(npz) as arrays:
        assert arrays["images"].shape == (4, 1, 28, 28) and arrays["z"].shape[0] == 4
    assert not (tmp_path / "arrays.npz").exists()

"""What a run's files survive: checkpoints damaged or altered after they were written (each
refused by name, with nothing written), a metrics.jsonl cut mid-line by a kill, a run killed
before its first checkpoint, resumes that change the config (recorded, config.toml kept), a
second process that would write the run (refused while the first holds its lock, even after a
SIGKILL frees it), and resumes that give no target (the run's own) or one it has passed.
PyTorch, tiny mnist28, in this process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common import checkpoint
from common import data as data_module
from common.cli import main
from common.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--preset", "mnist28", "--dataset", "fake", "--set", "model.ngf=4", "--set", "model.ndf=4", "--batch-size", "4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    args = ["train", "--backend", "torch", *TINY, "--steps", "4", "--checkpoint-every", "2", "--keep-every", "2"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    return out


def _rewrite_header(path: Path, change) -> None:
    """Rewrites a safetensors file's JSON header through `change` (the tensors' bytes stay)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    change(header)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + length :])


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _metadata(**changes):
    return lambda header: header["__metadata__"].update(changes)


DAMAGE = {  # what is done to a good checkpoint -> what the refusal says
    "empty": (lambda p: p.write_bytes(b""), "a dcgan-suite safetensors checkpoint"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "safetensors checkpoint"),
    "not safetensors": (lambda p: p.write_text("netG = torch.load(...)\n"), "a dcgan-suite safetensors checkpoint"),
    "a flipped bit in a tensor": (_flip_last_byte, "corrupt or altered"),
    "tampered step": (lambda p: _rewrite_header(p, _metadata(step="999")), "corrupt or altered"),
    "tampered config": (
        lambda p: _rewrite_header(p, lambda h: h["__metadata__"].update(config=h["__metadata__"]["config"] + "\n")),
        "corrupt or altered",
    ),
    "its hash removed": (
        lambda p: _rewrite_header(p, lambda h: h["__metadata__"].pop("sha256")),
        "the sha256 it carries, None",
    ),
    "an unknown format": (lambda p: _rewrite_header(p, _metadata(format="other/1")), "a checkpoint of format"),
    "relabelled as the first format": (
        lambda p: _rewrite_header(p, _metadata(format="dcgan-suite/1")),
        "it has devices, sha256, which dcgan-suite/1 never wrote",
    ),
    "relabelled as the first format, with a config edited": (
        lambda p: _rewrite_header(p, _as_v1(config="seed = 1\n")),
        "whose config hashes to the config_hash it carries",
    ),
    "relabelled as the first format, whole": (
        lambda p: _rewrite_header(p, _as_v1()),
        "dcgan-suite/1 files carry none of their tensors",
    ),
}


def _as_v1(**changes):
    """The metadata of a dcgan-suite/1 file, as that format wrote it: no sha256, no devices."""

    def change(header):
        metadata = header["__metadata__"]
        del metadata["sha256"], metadata["devices"]
        metadata.update(format="dcgan-suite/1", **changes)

    return change


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", ["sample", "resume"])
def test_a_damaged_checkpoint_is_refused_by_name(damage, command, run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    bad = RunDir(copy).checkpoint_path(4)
    do, says = DAMAGE[damage]
    do(bad)
    before = _snapshot(tmp_path)
    if command == "sample":
        args = ["sample", "--checkpoint", str(bad), "--out", str(tmp_path / "grid.png")]
    else:
        args = ["train", "--resume", "--out", str(copy), "--steps", "6", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(bad) in err and says in err
    assert _snapshot(tmp_path) == before  # nothing written, nothing overwritten


def test_a_checkpoint_of_another_preset_is_refused_on_resume(run, tmp_path, capsys):
    other = tmp_path / "other"
    args = ["train", "--backend", "torch", "--preset", "svhn32", "--dataset", "fake", "--set", "model.ngf=4"]
    assert (
        main([*args, "--set", "model.ndf=4", "--batch-size", "4", "--steps", "2", "--no-progress", "--out", str(other)])
        == 0
    )
    mine = RunDir(tmp_path / "mine")
    shutil.copytree(run, mine.path)
    shutil.copy(RunDir(other).checkpoint_path(2), mine.checkpoint_path(6))  # the latest is now svhn32's
    before = _snapshot(mine.path)
    assert main(["train", "--resume", "--out", str(mine.path), "--steps", "8", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "step_000006.safetensors" in err and "this run's preset, mnist28 (it holds svhn32)" in err
    assert _snapshot(mine.path) == before


def test_a_checkpoint_from_before_hashes_opens_only_to_be_re_saved(run, tmp_path, capsys):
    """A dcgan-suite/1 file carries no hash of its tensors: refused where it would be used,
    with the command that re-saves it, which then writes a verified file of the same state."""
    old = tmp_path / "old.safetensors"
    shutil.copy(RunDir(run).checkpoint_path(4), old)
    _rewrite_header(old, _as_v1())
    assert main(["sample", "--checkpoint", str(old), "--out", str(tmp_path / "grid.png")]) == 2
    err = capsys.readouterr().err
    resave = f"dcgan convert --checkpoint {old} --backend torch --out NEW.safetensors --unverified"
    assert len(err.strip().splitlines()) == 1 and resave in err and not (tmp_path / "grid.png").exists()
    new = tmp_path / "new.safetensors"
    args = ["convert", "--checkpoint", str(old), "--backend", "torch", "--out", str(new), "--unverified"]
    assert main(args) == 0
    arrays, metadata = checkpoint.load(new)  # verified against the hash it now carries
    good, _ = checkpoint.load(RunDir(run).checkpoint_path(4))
    assert metadata["format"] == checkpoint.FORMAT and metadata["step"] == "4"
    assert all(np.array_equal(arrays[k], good[k]) for k in good if not k.startswith("rng."))


def test_a_metrics_line_cut_by_a_kill_is_repaired_on_resume(run, tmp_path):
    copy = RunDir(tmp_path / "run")
    shutil.copytree(run, copy.path)
    with open(copy.metrics_file, "a") as f:
        f.write('{"step": 5, "loss_D": 1.2')  # killed mid-write, after the step-4 checkpoint
    assert [r["step"] for r in copy.read_metrics()] == [1, 2, 3, 4]
    assert main(["train", "--resume", "--out", str(copy.path), "--steps", "6", "--no-progress"]) == 0
    assert [r["step"] for r in copy.read_metrics()] == [1, 2, 3, 4, 5, 6]
    copy.metrics_file.write_text(copy.metrics_file.read_text().replace('"step": 3', '"step": 3,,'))
    with pytest.raises(Exception, match="line 3 is not"):  # a bad line that no kill explains
        copy.read_metrics()


def test_a_run_killed_before_its_first_checkpoint_starts_over(run, tmp_path, capsys):
    out = RunDir(tmp_path / "run")
    out.path.mkdir()
    for name in ("run.json", "config.toml"):
        shutil.copy(Path(run) / name, out.path / name)
    out.metrics_file.write_text('{"step": 1, "loss_D": 1.0}\n{"step": 2, "lo')
    assert main(["train", "--resume", "--out", str(out.path), "--steps", "4", "--no-progress"]) == 0
    assert "no checkpoint yet: the run starts over from iteration 0" in capsys.readouterr().out
    assert [r["step"] for r in out.read_metrics()] == [1, 2, 3, 4]
    mine, _ = checkpoint.load(out.checkpoint_path(4))
    straight, _ = checkpoint.load(RunDir(run).checkpoint_path(4))
    assert all(np.array_equal(mine[k], straight[k]) for k in straight)  # the same run as one never killed


def test_resume_overrides_are_recorded_and_stay_in_force(run, tmp_path):
    copy = RunDir(tmp_path / "run")
    shutil.copytree(run, copy.path)
    started = copy.config_file.read_text()
    args = ["train", "--resume", "--out", str(copy.path), "--no-progress"]
    assert main([*args, "--steps", "6", "--set", "optim.lr_g=0.0001", "--set", "optim.beta1=0.6"]) == 0
    assert main([*args, "--steps", "8"]) == 0  # no overrides: those of the last resume hold
    assert copy.config_file.read_text() == started  # the config the run started with
    resumes = [json.loads(line) for line in copy.resumes_file.read_text().splitlines()]
    assert [r["step"] for r in resumes] == [4, 6]
    assert resumes[0]["changed"] == {"optim.beta1": [0.5, 0.6], "optim.lr_g": [0.0002, 0.0001]}
    assert resumes[1]["changed"] == {}
    _, metadata, config = checkpoint.read(copy.checkpoint_path(8))
    assert config.optim.lr_g == 0.0001 and config.optim.beta1 == 0.6  # each checkpoint carries the config in force


# Holds a run's lock as `dcgan train` does, until it is killed.
HOLD = """
import sys, time
from common.rundir import RunDir
with RunDir(sys.argv[1]).lock():
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_writer_is_refused_naming_the_holder_until_a_sigkill_frees_the_run(run, tmp_path, capsys):
    copy = RunDir(tmp_path / "run")
    shutil.copytree(run, copy.path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(copy.path)], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    resume = ["train", "--resume", "--out", str(copy.path), "--steps", "6", "--no-progress"]
    try:
        assert holder.stdout.readline() == b"held\n"
        before = _snapshot(tmp_path)
        for devices in ([], ["--devices", "2"]):  # one process; and torch's launcher, before it starts any
            assert main([*resume, *devices]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "Traceback" not in err
            assert f"process {holder.pid} is writing it" in err and str(copy.path) in err
        assert _snapshot(tmp_path) == before  # nothing written
    finally:
        holder.kill()
        holder.wait()
    assert holder.returncode == -signal.SIGKILL
    assert copy.lock_file.read_text() == f"{holder.pid}\n"  # the file outlives its holder; the lock did not
    assert main(resume) == 0
    assert [r["step"] for r in copy.read_metrics()] == [1, 2, 3, 4, 5, 6]
    assert not copy.lock_file.exists()  # let go of, and removed, as the run ended


def test_a_running_train_refuses_another_writer_of_its_run(tmp_path, monkeypatch, dcgan):
    """`dcgan train --resume` in another process while the run trains: refused at once, naming
    this process; the run goes on undisturbed."""
    out = RunDir(tmp_path / "run")
    save, second = checkpoint.save_file, []
    another = ["train", "--resume", "--out", str(out.path), "--steps", "8", "--no-progress"]

    def save_file(arrays, path, metadata=None):
        if not second:  # mid-run: iteration 2's checkpoint
            second.append(dcgan(*another, check=False))
        return save(arrays, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    args = ["train", "--backend", "torch", *TINY, "--steps", "4", "--checkpoint-every", "2", "--no-progress"]
    assert main([*args, "--out", str(out.path)]) == 0
    [refused] = second
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert f"process {os.getpid()} is writing it" in refused.stderr
    assert [r["step"] for r in out.read_metrics()] == [1, 2, 3, 4] and out.saved_steps() == [4]
    assert not out.resumes_file.exists() and not out.lock_file.exists()


def test_a_resume_goes_to_the_runs_target_says_when_it_is_finished_and_refuses_one_passed(
    run, tmp_path, monkeypatch, capsys
):
    copy = RunDir(tmp_path / "run")
    shutil.copytree(run, copy.path)
    assert json.loads(copy.run_file.read_text())["target"] == {"steps": 4}
    resume = ["train", "--resume", "--out", str(copy.path), "--no-progress"]
    before = _snapshot(tmp_path)
    for target in ([], ["--steps", "4"]):  # its own target, and the same given again: nothing to train
        assert main([*resume, *target]) == 0
        out, err = capsys.readouterr()
        assert err == "" and out.strip() == (
            f"dcgan: the run in {copy.path} is finished: iteration 4, which is saved, reached its target of 4 "
            f"iterations (--steps 4); to train it further, give a larger one: "
            f"dcgan train --resume --out {copy.path} --steps 8"
        )
    monkeypatch.setattr(data_module, "FAKE_SIZE", 12)  # 3 iterations an epoch
    for target, says in [
        (["--steps", "3"], f"--steps=3: at least the 4 iterations the run in {copy.path} has done"),
        (["--epochs", "1"], f"--epochs=1: at least 2: the run in {copy.path} has done 4 iterations, 3 an epoch"),
    ]:
        assert main([*resume, *target]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err
    assert _snapshot(tmp_path) == before  # none of them wrote anything
    monkeypatch.undo()

    assert main([*resume, "--steps", "6"]) == 0  # a new target is the run's from now on
    assert json.loads(copy.run_file.read_text())["target"] == {"steps": 6}
    assert main(resume) == 0
    assert "iteration 6, which is saved, reached its target of 6 iterations" in capsys.readouterr().out
    assert [r["step"] for r in copy.read_metrics()] == [1, 2, 3, 4, 5, 6]

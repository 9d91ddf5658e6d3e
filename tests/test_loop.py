"""The shared loop's own rules, with no framework: data schedule, run directories, checkpoints,
pictures."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import canonical, checkpoint
from common.algorithm import bce_with_logits, fixed_noise, iteration_noise
from common.cli import main
from common.config import apply_overrides
from common.errors import ConfigError
from common.pictures import image_grid, plot_losses, save_gif, save_grid
from common.presets import make_config
from common.rundir import RunDir, find_checkpoint, resolve_run
from common.train import Schedule
from common.trainer import Trainer


def test_schedule_covers_each_epoch_once_in_a_seeded_order():
    config = make_config("mnist28", {"optim.batch_size": 4, "optim.d_steps": 2})
    schedule = Schedule(batch_size=4, d_steps=2, dataset_size=16)  # 4 whole batches an epoch
    assert schedule.iterations_per_epoch == 2
    epochs = [
        np.concatenate([b for step in steps for b in schedule.batch_indices(config, step)])
        for steps in ((0, 1), (2, 3), (4, 5))
    ]
    for epoch in epochs:  # every image exactly once per epoch
        assert sorted(epoch.tolist()) == list(range(16))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])  # reshuffled
    assert not np.array_equal(epochs[0], np.arange(16))  # shuffled at all
    # Partial last batches are dropped: 18 images make 4 whole batches of distinct images.
    ragged = np.concatenate([b for step in (0, 1) for b in Schedule(4, 2, 18).batch_indices(config, step)])
    assert len(set(ragged.tolist())) == 16 and ragged.max() < 18
    other = make_config("mnist28", {"optim.batch_size": 4, "optim.d_steps": 2, "seed": 1})
    assert not np.array_equal(schedule.batch_indices(config, 0)[0], schedule.batch_indices(other, 0)[0])


def test_noise_is_a_function_of_seed_and_step():
    reuse, fresh = make_config("dcgan64"), make_config("svhn32", {"optim.d_steps": 3})
    a, b = iteration_noise(reuse, 5, 8), iteration_noise(reuse, 5, 8)
    assert a.z_d.shape == (1, 8, 100) and a.z_g is None and np.array_equal(a.z_d, b.z_d)
    assert not np.array_equal(a.z_d, iteration_noise(reuse, 6, 8).z_d)
    f = iteration_noise(fresh, 0, 8)
    assert f.z_d.shape == (3, 8, 100) and f.z_g.shape == (8, 100)
    assert f.z_d.min() >= -1 and f.z_d.max() <= 1  # svhn32 draws U(-1, 1)
    assert np.array_equal(fixed_noise(reuse), fixed_noise(reuse))


def test_bce_with_logits_is_the_stable_form():
    assert bce_with_logits(np.array([0.0]), 1.0) == pytest.approx(np.log(2))
    assert bce_with_logits(np.array([1000.0]), 0.0) == pytest.approx(1000.0)  # no overflow
    x = np.array([-2.0, 0.5, 3.0])
    sigmoid = 1 / (1 + np.exp(-x))
    assert bce_with_logits(x, 0.9) == pytest.approx(np.mean(-(0.9 * np.log(sigmoid) + 0.1 * np.log(1 - sigmoid))))


def test_a_run_directory_is_never_taken_over(tmp_path):
    config = make_config("mnist28")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"preset": "svhn32", "backend": "jax"}))
    with pytest.raises(ConfigError, match="holds a svhn32 run on jax"):
        RunDir(run).check(config, "torch", resume=True)
    (run / "run.json").write_text(json.dumps({"preset": "mnist28", "backend": "torch"}))
    with pytest.raises(ConfigError, match="--resume to continue"):
        RunDir(run).check(config, "torch", resume=False)
    assert RunDir(run).check(config, "torch", resume=True) is None  # stopped before a checkpoint: starts over
    saved = RunDir(run).save_checkpoint(7, {"w": np.zeros(2, np.float32)}, {"step": "7"})
    assert RunDir(run).check(config, "torch", resume=True) == saved
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds other files"):
        RunDir(other).check(config, "torch", resume=False)
    with pytest.raises(ConfigError, match="a new or empty directory"):
        RunDir(other).create(config, "torch")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    with pytest.raises(ConfigError, match="no run.json"):
        RunDir(tmp_path / "new").check(config, "torch", resume=True)
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ConfigError, match="this is a file"):  # from the library too, not only the CLI
        RunDir(tmp_path / "file").check(config, "torch", resume=False)


def test_a_run_is_resolved_once_and_resolving_writes_nothing(tmp_path, monkeypatch):
    """New, resumed from the latest checkpoint, started over, or refused: decided before any
    data, framework or process, from the directory alone."""
    monkeypatch.chdir(tmp_path)
    new = resolve_run(None, "mnist28", None, {"model.ngf": 4})
    assert new.run.path == Path("runs/mnist28-torch") and new.backend == "torch" and new.devices == 1
    assert new.config.model.ngf == 4 and new.resume_from is None and not new.starts_over
    assert not (tmp_path / "runs").exists()
    out = str(tmp_path / "run")
    RunDir(out).create(new.config, "jax")
    over = resolve_run(out, None, None, {}, resume=True)  # the run's preset and backend, no checkpoint yet
    assert (over.backend, over.config, over.resume_from, over.starts_over) == ("jax", new.config, None, True)
    trained = apply_overrides(new.config, {"optim.lr_g": 1e-4})
    saved = RunDir(out).save_checkpoint(7, {"w": np.zeros(2, np.float32)}, canonical.metadata(trained, "jax", 7, 0, 2))
    resumed = resolve_run(out, None, None, {"optim.beta1": 0.6}, resume=True)
    assert resumed.resume_from == saved and not resumed.starts_over and resumed.devices == resumed.saved_devices == 2
    assert resumed.config.optim.lr_g == 1e-4 and resumed.config.optim.beta1 == 0.6  # the checkpoint's, then today's
    assert resolve_run(out, None, None, {}, resume=True, devices=4).devices == 4
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="--resume to continue the run it holds"):
        resolve_run(out, "mnist28", "jax", {})
    with pytest.raises(ConfigError, match="a mnist28 run on torch; it holds a mnist28 run on jax"):
        resolve_run(out, None, "torch", {}, resume=True)
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


def test_a_resume_takes_the_runs_saved_target_unless_it_is_given_one(tmp_path):
    out = str(tmp_path / "run")
    assert resolve_run(out, "mnist28", None, {}).target == {"epochs": 1}  # the default
    new = resolve_run(out, "mnist28", None, {}, steps=3)
    assert (new.target, new.new_target, new.done) == ({"steps": 3}, True, 0)
    run = RunDir(out)
    run.create(new.config, "torch", target=new.target)
    assert json.loads(run.run_file.read_text()) == {"preset": "mnist28", "backend": "torch", "target": {"steps": 3}}
    again = resolve_run(out, None, None, {}, resume=True)
    assert (again.target, again.new_target) == ({"steps": 3}, False)
    assert resolve_run(out, None, None, {}, resume=True, epochs=2).target == {"epochs": 2}
    run.save_checkpoint(3, {"w": np.zeros(2, np.float32)}, canonical.metadata(new.config, "torch", 3, 0))
    run.save_target({"epochs": 2})
    assert json.loads(run.run_file.read_text())["preset"] == "mnist28"  # the rest of run.json stays
    assert not list(tmp_path.glob("run/*.tmp"))  # written to a temporary name and renamed
    resumed = resolve_run(out, None, None, {}, resume=True)
    assert (resumed.target, resumed.done) == ({"epochs": 2}, 3)
    for bad in ({"steps": 0}, {"steps": 3, "epochs": 1}, {"iterations": 3}, [3], {"steps": "3"}):
        run.run_file.write_text(json.dumps({"preset": "mnist28", "backend": "torch", "target": bad}))
        with pytest.raises(ConfigError, match="run.json target is"):
            resolve_run(out, None, None, {}, resume=True)
    (tmp_path / "converted").mkdir()
    RunDir(tmp_path / "converted").create(new.config, "torch")  # as `dcgan convert` writes a run: no target
    assert resolve_run(str(tmp_path / "converted"), None, None, {}, resume=True).target == {"epochs": 1}


def test_a_run_lock_is_held_once_per_process_and_leaves_nothing_behind(tmp_path):
    run = RunDir(tmp_path / "runs" / "new")
    with run.lock():
        assert run.lock_file.read_text() == f"{os.getpid()}\n"
        with RunDir(tmp_path / "runs" / ".." / "runs" / "new").lock():  # taken again here: already held
            pass
        with open(run.lock_file) as other, pytest.raises(BlockingIOError):  # a file description of its own
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not (tmp_path / "runs").exists()  # the lock file, and the folders made for it, are gone


def test_train_refuses_another_runs_directory_from_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"preset": "dcgan64", "backend": "jax"}))
    (run / "keep.txt").write_text("x")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["train", "--preset", "mnist28", "--out", str(run), "--dataset", "fake", "--steps", "1"]) == 2
    assert "holds a dcgan64 run on jax" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # not a byte changed


def test_an_interrupted_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    """A save that dies half-way (here: the writer raises after writing part of the file)
    must leave the checkpoint already at that path, and the run's latest, as they were."""
    run = RunDir(tmp_path)
    old = {"w": np.arange(6, dtype=np.float32)}
    path = run.save_checkpoint(100, old, {"step": "100"})
    before = path.read_bytes()

    def dies_half_way(arrays, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 100)
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save(path, {"w": np.zeros(6, np.float32)}, {"step": "100"})
    assert path.read_bytes() == before
    assert run.latest_checkpoint() == path and np.array_equal(checkpoint.load(path)[0]["w"], old["w"])


def test_checkpoints_are_written_atomically_and_pruned(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.array(3, np.int64)}
    run = RunDir(tmp_path)
    for step in (100, 200, 300, 400):
        run.save_checkpoint(step, arrays, {"step": str(step)}, keep_every=200)
    assert run.saved_steps() == [200, 400]
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))
    loaded, metadata = checkpoint.load(find_checkpoint(tmp_path))
    assert metadata["step"] == "400" and np.array_equal(loaded["w"], arrays["w"])
    assert loaded["step"].shape == ()  # scalars (optimizer step counts, RNG counters) stay scalars


def test_bad_checkpoints_are_refused_by_name(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(ConfigError, match="bad.safetensors"):
        checkpoint.load(bad)
    with pytest.raises(ConfigError, match="a run directory with a checkpoint"):
        find_checkpoint(tmp_path)


def test_grids_pictures_and_animation(tmp_path):
    images = np.linspace(-1, 1, 4 * 1 * 8 * 8, dtype=np.float32).reshape(4, 1, 8, 8)
    grid = image_grid(images, nrow=2, padding=2)
    assert grid.shape == (2 * 10 + 2, 2 * 10 + 2, 3)
    assert grid[2, 2, 0] == 0 and grid[-3, -3, 0] == 255  # first pixel black (-1), last white (1)
    save_grid(tmp_path / "a.png", images, scale=2)
    save_grid(tmp_path / "b.png", -images, scale=2)
    assert Image.open(tmp_path / "a.png").size == (44, 44)
    save_gif(tmp_path / "p.gif", [tmp_path / "a.png", tmp_path / "b.png"])
    assert Image.open(tmp_path / "p.gif").n_frames == 2
    records = [{"step": i, "loss_D": 1.0 + np.sin(i), "loss_G": 0.7} for i in range(1, 200)]
    plot_losses(tmp_path / "loss.png", records, "test")
    assert Image.open(tmp_path / "loss.png").size == (800, 450)


def test_resume_takes_preset_and_backend_from_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"preset": "svhn32", "backend": "keras-jax"}))
    (run / "config.toml").write_text(make_config("svhn32").to_toml())
    # An unknown compiler for keras-jax: the error shows the run's own backend was taken up.
    assert main(["train", "--out", str(run), "--resume", "--dataset", "fake", "--compile", "xla"]) == 2
    assert "a compiler keras-jax offers" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume", "--preset", "mnist28"]) == 2
    assert "holds a svhn32 run on keras-jax" in capsys.readouterr().err


class _NumpyTrainer(Trainer):
    """A stand-in backend for the loop's own behaviour: counts steps, diverges when told to."""

    prepare = step = synchronize = gradients = apply_gradients = None  # the loop calls train_step alone

    def __init__(self, diverge_at: int | None, fail_at: int | None = None):
        self.steps, self.diverge_at, self.fail_at = np.zeros((), np.int64), diverge_at, fail_at

    def train_step(self, reals, z_d, z_g):
        self.steps = self.steps + 1
        if self.steps == self.fail_at:  # half-way through its update, as D's before G's
            raise RuntimeError("Gloo all-reduce failed: Connection reset by peer")
        value = float("nan") if self.steps == self.diverge_at else 1.0
        return {"loss_D": value, "loss_G": 0.5, "D_x": 0.5, "D_G_z1": 0.5, "D_G_z2": 0.5}

    def sample(self, z, averaged=False):
        return np.zeros((len(z), 1, 28, 28), np.float32)

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, arrays):
        self.steps = arrays["steps"]


def test_a_diverged_run_stops_cleanly_and_keeps_its_last_checkpoint(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from common import train as train_module

    backend = SimpleNamespace(trainer=lambda config: _NumpyTrainer(diverge_at=5))
    monkeypatch.setattr(train_module, "load_backend", lambda *args: backend)
    args = [
        "train",
        "--preset",
        "mnist28",
        "--dataset",
        "fake",
        "--batch-size",
        "8",
        "--steps",
        "8",
        "--checkpoint-every",
        "2",
        "--keep-every",
        "2",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(args) == 1
    assert "training diverged on torch at iteration 5: loss_D not finite" in capsys.readouterr().err
    assert RunDir(tmp_path / "run").saved_steps() == [2, 4]  # nothing saved from the diverged state
    arrays, _ = checkpoint.load(RunDir(tmp_path / "run").checkpoint_path(4))
    assert int(arrays["steps"]) == 4


def test_a_step_that_fails_half_way_is_not_saved(tmp_path, monkeypatch):
    """A step that raises (a peer process lost, memory) may have updated part of the state, so
    the loop saves nothing after it: the last checkpoint stays the run's latest, whole."""
    from types import SimpleNamespace

    from common import train as train_module

    backend = SimpleNamespace(trainer=lambda config: _NumpyTrainer(diverge_at=None, fail_at=6))
    monkeypatch.setattr(train_module, "load_backend", lambda *args: backend)
    out = tmp_path / "run"
    args = ["train", "--preset", "mnist28", "--dataset", "fake", "--batch-size", "8", "--steps", "8"]
    with pytest.raises(RuntimeError, match="Connection reset by peer"):
        main([*args, "--checkpoint-every", "4", "--no-progress", "--out", str(out)])
    assert RunDir(out).saved_steps() == [4]  # not iteration 5 with 6's half update in it
    assert int(checkpoint.load(RunDir(out).checkpoint_path(4))[0]["steps"]) == 4


@pytest.mark.parametrize("rollbacks", [1, 2])
def test_a_diverged_run_rolls_back_with_halved_learning_rates_when_asked(rollbacks, tmp_path, monkeypatch, capsys):
    """optim.divergence_rollbacks: back to the last checkpoint, both rates halved. Here the
    stand-in diverges at step 5 unless lr_d is below 1e-4, so one rollback is not enough and
    two are."""
    from types import SimpleNamespace

    from common import train as train_module

    def trainer(config):
        return _NumpyTrainer(diverge_at=5 if config.optim.lr_d >= 1e-4 else None)

    monkeypatch.setattr(train_module, "load_backend", lambda *a: SimpleNamespace(trainer=trainer))
    monkeypatch.setattr(canonical, "validate", lambda *a, **k: None)  # the stand-in's state is its own
    out = RunDir(tmp_path / "run")
    args = ["train", "--preset", "mnist28", "--dataset", "fake", "--batch-size", "8", "--steps", "8", "--no-progress"]
    args += ["--checkpoint-every", "2", "--set", f"optim.divergence_rollbacks={rollbacks}", "--out", str(out.path)]
    code = main(args)
    captured = capsys.readouterr()
    assert "diverged at iteration 5: rolled back to iteration 4, learning rates halved (lr_d 0.0001" in captured.out
    resumes = [json.loads(line) for line in out.resumes_file.read_text().splitlines()]
    assert [r["reason"] for r in resumes] == ["rollback after divergence at iteration 5"] * rollbacks
    assert resumes[0]["changed"] == {"optim.lr_d": [2e-4, 1e-4], "optim.lr_g": [2e-4, 1e-4]}
    if rollbacks == 1:
        assert code == 1 and "training diverged on torch at iteration 5" in captured.err
        assert out.saved_steps() == [4]
        return
    assert code == 0 and [r["step"] for r in out.read_metrics()] == list(range(1, 9))  # each step once
    saved = checkpoint.load(out.checkpoint_path(8))[1]
    assert "lr_d = 5e-05" in saved["config"]  # the checkpoints carry the rates in force


def test_the_watch_warns_once_when_d_wins_outright_or_samples_collapse():
    from common.watch import WIN_STREAK, Watch

    watch = Watch()
    fair = {"D_x": 0.8, "D_G_z2": 0.2}
    winning = {"D_x": 0.999, "D_G_z2": 0.001}
    seen = [watch.observe({"step": s, **(winning if s % 50 else fair)}) for s in range(1, 3 * WIN_STREAK)]
    assert not any(seen)  # a streak broken every 50 iterations is not D winning outright
    watch.observe({"step": 0, **fair})
    seen = [watch.observe({"step": s, **winning}) for s in range(1, 2 * WIN_STREAK)]
    warnings = [w for w in seen if w]
    assert len(warnings) == 1 and f"iteration {WIN_STREAK}" in warnings[0] and "D has won outright" in warnings[0]
    assert watch.observe({"step": 500, **fair, "classes_covered": 3}) is None  # early samples cover few
    assert watch.observe({"step": 1000, **fair, "classes_covered": 10}) is None
    assert watch.observe({"step": 1500, **fair, "classes_covered": 6}) is None
    collapse = watch.observe({"step": 2000, **fair, "classes_covered": 4})
    assert "cover 4 classes, down from 10 earlier in the run" in collapse
    assert watch.observe({"step": 2500, **fair, "classes_covered": 2}) is None  # once


def test_non_finite_weights_are_named_by_network():
    from common.watch import Diverged, check_finite, check_finite_state

    state = {"generator.bn1.weight": np.ones(3, np.float32), "discriminator.conv1.weight": np.ones(3, np.float32)}
    check_finite_state(state, 7, "jax")  # all finite: nothing raised
    state["discriminator.conv1.weight"][1] = np.inf
    with pytest.raises(Diverged, match=r"by iteration 7: non-finite weights in the discriminator \(D\)"):
        check_finite_state(state, 7, "jax")
    metrics = {"loss_D": float("nan"), "loss_G": 1.0, "D_x": 0.5, "D_G_z1": 0.5, "D_G_z2": 0.5}
    with pytest.raises(Diverged, match=r"iteration 3: loss_D not finite; non-finite weights in the discriminator"):
        check_finite(metrics, 3, "jax", state)

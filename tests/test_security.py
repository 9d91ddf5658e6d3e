"""Files a user hands the suite are data, never code: a pickle that would run code when loaded
is refused without running it, wherever a file is read; a checkpoint's metadata, even one
crafted with a valid hash, cannot make a command write outside the paths it was given; and
what such a checkpoint holds (dtypes, values, its backend) is checked on every load."""

from __future__ import annotations

import builtins
import shutil

import numpy as np
import pytest
import torch

from common import checkpoint
from common.cli import main
from common.rundir import RunDir


class _Payload:
    """Unpickling this opens (creates) the marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    tiny = ["--preset", "mnist28", "--dataset", "fake", "--set", "model.ngf=4", "--set", "model.ndf=4"]
    assert main(["train", "--backend", "torch", *tiny, "--batch-size", "4", "--steps", "1", "--no-progress",
                 "--out", str(out)]) == 0  # fmt: skip
    return out


def _commands(evil, run, tmp_path) -> dict[str, list[str]]:
    return {
        "convert --netG": [
            "convert",
            "--from-pytorch-examples",
            "--netG",
            str(evil),
            "--preset",
            "mnist28",
            "--out",
            str(tmp_path / "out.safetensors"),
        ],  # fmt: skip
        "eval --weights (inception)": [
            "eval",
            "--checkpoint",
            str(run),
            "--features",
            "inception",
            "--weights",
            str(evil),
            "--n",
            "7",
            "--no-progress",
        ],  # fmt: skip
        "sample --noise": [
            "sample",
            "--checkpoint",
            str(run),
            "--noise",
            str(evil.with_suffix(".npy")),
            "--out",
            str(tmp_path / "grid.png"),
        ],  # fmt: skip
        "sample --checkpoint": ["sample", "--checkpoint", str(evil), "--out", str(tmp_path / "grid.png")],
    }


@pytest.mark.parametrize(
    "command",
    [
        "convert --netG",
        "eval --weights (inception)",
        "sample --noise",
        "sample --checkpoint",
    ],  # fmt: skip
)
def test_a_pickle_carrying_code_is_refused_without_running_it(command, run, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"main.0.weight": _Payload(marker)}, evil)
    np.save(evil.with_suffix(".npy"), np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    assert not marker.exists()
    assert main(_commands(evil, run, tmp_path)[command]) == 2
    err = capsys.readouterr().err
    assert not marker.exists(), "unpickling ran the file's code"
    assert "Traceback" not in err and "evil" in err
    assert not (tmp_path / "out.safetensors").exists() and not (tmp_path / "grid.png").exists()


def test_feature_weights_carrying_code_are_refused_without_running_them(tmp_path):
    """The Fashion-MNIST feature network's --weights (read before any dataset is)."""
    from common.errors import ConfigError
    from common.quality.features import load_weights

    marker, evil = tmp_path / "code-ran", tmp_path / "evil.pth"
    torch.save({"conv1.weight": _Payload(marker)}, evil)
    with pytest.raises(ConfigError, match="evil.pth"):
        load_weights(evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    "field, value",
    [
        ("preset", "../../../outside"),
        ("backend", "../../outside"),
        ("step", "../../outside"),
        ("config", "x = ["),
        ("devices", "../2"),
    ],  # fmt: skip
)
def test_crafted_metadata_cannot_write_outside_the_given_paths(field, value, run, tmp_path, capsys):
    """The file is re-hashed after the change, so only the values themselves stand in the way."""
    arrays, metadata = checkpoint.load(RunDir(run).checkpoint_path(1))
    metadata = {**metadata, field: value}
    crafted = tmp_path / "given" / "crafted.safetensors"
    checkpoint.write_atomically(crafted, arrays, {**metadata, "sha256": checkpoint.content_sha256(arrays, metadata)})
    resumed = tmp_path / "given" / "run"
    RunDir(resumed).checkpoints_dir.mkdir(parents=True)
    for name in ("run.json", "config.toml"):
        (resumed / name).write_bytes((run / name).read_bytes())
    crafted_in_run = RunDir(resumed).checkpoint_path(5)
    crafted_in_run.write_bytes(crafted.read_bytes())
    before = set(tmp_path.rglob("*"))
    for args, out in (
        (["sample", "--checkpoint", str(crafted)], tmp_path / "given" / "grid.png"),
        (["convert", "--checkpoint", str(crafted), "--backend", "torch"], tmp_path / "given" / "conv"),
        (["train", "--resume", "--steps", "6", "--no-progress"], resumed),
    ):
        code = main([*args, "--out", str(out)])
        err = capsys.readouterr().err
        assert "Traceback" not in err and (code == 0 or len(err.strip().splitlines()) == 1), (args, err)
        written = set(tmp_path.rglob("*")) - before
        assert all(out in p.parents or p == out for p in written), (args, written)  # within --out, if anything
        before |= written
    assert not (tmp_path.parent / "outside").exists() and not (tmp_path.parents[1] / "outside").exists()


def _first_weight(arrays: dict) -> str:
    return next(k for k in arrays if k.startswith("generator.") and k.endswith(".weight"))


# What is done to a checkpoint before it is re-hashed -> what the refusal says.
CRAFTED = {
    "NaN weights": (
        lambda a, m: a.update({_first_weight(a): np.full_like(a[_first_weight(a)], np.nan)}),
        lambda a: f"{_first_weight(a)} holding {a[_first_weight(a)].size} NaN values",
    ),
    "int32 weights": (
        lambda a, m: a.update({_first_weight(a): np.ones_like(a[_first_weight(a)], np.int32)}),
        lambda a: f"{_first_weight(a)} of dtype int32': float32",
    ),
    "a negative Adam step": (
        lambda a, m: a.update({"g_optimizer.step": np.array(-1, np.int64)}),
        lambda a: "g_optimizer.step holding 1 negative value",
    ),
    "a step that is no number": (
        lambda a, m: m.update(step="12abc"),
        lambda a: "a checkpoint whose step is a whole number in [0, 2147483647]",
    ),
    "an unknown backend": (
        lambda a, m: m.update(backend="tensorflow"),
        lambda a: "one of torch, jax, keras-tensorflow, keras-jax, keras-torch, pytorch-examples (it has 'tensorflow')",
    ),
}


@pytest.mark.parametrize("crafted", list(CRAFTED))
@pytest.mark.parametrize("command", ["sample", "convert", "eval", "resume"])
def test_a_re_hashed_checkpoint_holding_what_no_run_saves_is_refused_by_name(command, crafted, run, tmp_path, capsys):
    """A matching hash says only that the file is as it was written: what it holds is checked
    on every load, and a value no training run saves is named, with nothing written."""
    arrays, metadata = checkpoint.load(RunDir(run).checkpoint_path(1))
    change, says = CRAFTED[crafted]
    change(arrays, metadata)
    resumed = RunDir(tmp_path / "run")
    shutil.copytree(run, resumed.path)
    file = resumed.checkpoint_path(1)
    checkpoint.write_atomically(file, arrays, {**metadata, "sha256": checkpoint.content_sha256(arrays, metadata)})
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    args = {
        "sample": ["sample", "--checkpoint", str(file), "--out", str(tmp_path / "grid.png")],
        "convert": ["convert", "--checkpoint", str(file), "--backend", "torch", "--out", str(tmp_path / "conv")],
        "eval": ["eval", "--checkpoint", str(file), "--n", "10", "--no-progress"],
        "resume": ["train", "--resume", "--out", str(resumed.path), "--steps", "2", "--no-progress"],
    }[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and says(arrays) in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("value", ["\u00b2", "2.0", "99999999999999999999", "0"])
def test_a_devices_value_that_is_no_width_is_refused_by_name(value, tmp_path):
    """What --resume reads as the run's data-parallel width: a whole number int() reads
    ("\u00b2" is a digit to str.isdigit, not to int), in range."""
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match=r"devices is a whole number in \[1, 2147483647\] \(it has "):
        checkpoint.saved_devices({"devices": value}, tmp_path / "step_000001.safetensors")


def _moment(arrays: dict, moment: str) -> str:
    return next(k for k in arrays if k.startswith(f"g_optimizer.{moment}."))


def _running_var(arrays: dict) -> str:
    return next(k for k in arrays if k.endswith(".running_var"))


@pytest.mark.parametrize(
    "key, value, refused",
    [
        (_first_weight, np.inf, "holding 1 infinite value"),
        (lambda a: _moment(a, "exp_avg"), -np.inf, "holding 1 infinite value"),
        (lambda a: _moment(a, "exp_avg_sq"), np.nan, "holding 1 NaN value"),
        (lambda a: _moment(a, "exp_avg_sq"), -1.0, "holding 1 negative value"),
        (lambda a: _moment(a, "exp_avg_sq"), np.inf, None),  # a squared gradient past float32's range
        (_running_var, -0.5, "holding 1 negative value"),
        (_running_var, 0.0, None),
    ],
    ids=[
        "weight-inf",
        "first-moment-inf",
        "second-moment-nan",
        "second-moment-negative",
        "second-moment-inf",
        "running-var-negative",
        "running-var-zero",
    ],  # fmt: skip
)
def test_a_state_is_held_to_what_training_saves(key, value, refused):
    """The rules of common/canonical.py, one value each; the cases that load are states
    training does save."""
    from common import canonical
    from common.errors import ConfigError
    from common.presets import make_config

    config = make_config("mnist28", {"model.ngf": 4, "model.ndf": 4})
    arrays = {e.key: np.ones(e.shape, np.float32) for e in canonical.entries(config)}
    arrays.update(canonical.fresh_optimizer(config))
    name = key(arrays)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = value
    if refused is None:
        canonical.validate(arrays, config)
    else:
        with pytest.raises(ConfigError, match=f"{name} {refused}"):
            canonical.validate(arrays, config)

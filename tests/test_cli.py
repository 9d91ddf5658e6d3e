"""`dcgan describe` from the spec, and errors that name the bad value without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from common.cli import main


def test_describe_json_from_the_spec(capsys):
    assert main(["describe", "--preset", "svhn32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preset"] == "svhn32" and out["backend"] == "spec"
    assert out["generator"]["params"] == 372_416 and out["discriminator"]["params"] == 167_809
    first = out["generator"]["layers"][0]
    assert set(first) == {"name", "kind", "output_shape", "params"} and first["name"] == "fc1"
    assert out["discriminator"]["layers"][-1]["output_shape"] == [1]


def test_describe_table_applies_overrides(capsys):
    assert main(["describe", "--preset", "dcgan64", "--set", "model.ngf=32", "--set", "model.ndf=32"]) == 0
    out = capsys.readouterr().out
    assert "convt1" in out and "256x4x4" in out and "generator (dcgan64, spec)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["describe", "--preset", "nope"], "preset='nope': one of dcgan64"),
        (["describe", "--set", "model.image_size=100"], "model.image_size=100"),
        (["describe", "--set", "model.ngf"], "--set='model.ngf': key=value"),
        (["describe", "--config", "/nonexistent.toml"], "--config='/nonexistent.toml': an existing TOML file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_the_console_script_runs_without_any_framework():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from common.cli import main; main(['describe']);"
            "bad = [m for m in ('torch', 'jax', 'flax', 'tensorflow', 'keras') if m in sys.modules];"
            "assert not bad, bad",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "discriminator (dcgan64, spec)" in result.stdout

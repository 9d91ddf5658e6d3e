"""G's moving average (optim.ema, common/algorithm.py) on every backend: the average the
formula gives, a resume that continues it bit for bit, `dcgan sample`, `dcgan eval` and the
loop's scores drawing from it by default, and checkpoints without one (written before it
existed) loading, resuming and sampling as before.

Each backend runs WORKER in a process of its own (Keras fixes its backend per process), all
backends at once, on a tiny mnist28 (fresh noise, dropout, 1-d batch norm) and fake data; the
tests read what each wrote. The decay is 0.9, so that each of a few updates moves the average
by a tenth of the way to G, far above float32's rounding.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from common import canonical, checkpoint
from common.backends import BACKENDS
from common.errors import ConfigError
from common.memory import state_bytes
from common.parity.inputs import random_state
from common.presets import make_config
from common.sample import use_average
from common.spec import generator_spec

DECAY = 0.9
STEPS = 3  # iterations of the formula check

# One backend's part, run as `python -c WORKER BACKEND OUT`: the states of a trainer over
# STEPS iterations, then `dcgan` commands in-process, their output collected in OUT/commands.json.
WORKER = """
import contextlib, hashlib, io, json, shutil, sys, traceback
from pathlib import Path

import numpy as np

from common import checkpoint
from common.algorithm import iteration_noise
from common.backends import load_backend
from common.cli import main
from common.presets import make_config

backend, out, decay, steps = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
tiny = {"model.ngf": 4, "model.ndf": 4, "optim.batch_size": 4}

def kept(state):
    return {k: v for k, v in state.items() if not k.startswith("rng.")}

# The trainer's state before any iteration and after each of `steps`.
config = make_config("mnist28", {**tiny, "optim.ema": decay})
trainer = load_backend(backend).trainer(config)
states = [trainer.state_dict()]
rng = np.random.default_rng(0)
for step in range(steps):
    noise = iteration_noise(config, step, 4)
    reals = rng.uniform(-1, 1, (config.optim.d_steps, 4, 1, 28, 28)).astype(np.float32)
    trainer.train_step(reals, noise.z_d, noise.z_g)
    states.append(trainer.state_dict())
np.savez(out / "states.npz", **{f"{i}/{k}": v for i, state in enumerate(states) for k, v in kept(state).items()})
# A state without the average (an older run's, resumed with optim.ema set now).
trainer.load_state_dict({k: v for k, v in states[1].items() if not k.startswith("ema_generator.")})
np.savez(out / "loaded_without_average.npz", **kept(trainer.state_dict()))

commands = []
def dcgan(*args):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main([str(a) for a in args])
        except BaseException:
            traceback.print_exc()
            code = -1
    commands.append({"args": [str(a) for a in args], "code": code, "stdout": stdout.getvalue(),
                     "stderr": stderr.getvalue()[-3000:]})

train = ["train", "--backend", backend, "--preset", "mnist28", "--dataset", "fake", "--set", "model.ngf=4",
         "--set", "model.ndf=4", "--batch-size", "4", "--no-progress"]
average = ["--set", f"optim.ema={decay}"]
dcgan(*train, *average, "--steps", "4", "--out", out / "straight")
dcgan(*train, *average, "--steps", "2", "--out", out / "resumed")
dcgan("train", "--resume", "--steps", "4", "--no-progress", "--out", out / "resumed")
dcgan(*train, "--steps", "2", "--out", out / "plain")

# The plain run as a run from before optim.ema existed: no `ema` in its config, nor in its
# checkpoint's (whose config_hash and sha256 are then the config's and the file's own).
shutil.copytree(out / "plain", out / "old")
def older(toml):
    return "".join(line for line in toml.splitlines(keepends=True) if not line.startswith("ema = "))
(out / "old/config.toml").write_text(older((out / "old/config.toml").read_text()))
file = out / "old/checkpoints/step_000002.safetensors"
arrays, metadata = checkpoint.load(file)
metadata = {k: v for k, v in metadata.items() if k not in ("format", "sha256")}
metadata["config"] = older(metadata["config"])
metadata["config_hash"] = hashlib.sha256(metadata["config"].encode()).hexdigest()[:16]
checkpoint.save(file, arrays, metadata)
shutil.copy(file, out / "old.safetensors")
for run in ("plain", "old"):
    dcgan("train", "--resume", "--steps", "4", "--no-progress", "--out", out / run)

# The averaged run's last checkpoint with the average in G's place, no average and optim.ema 0:
# a plain G holding the average's weights.
arrays, metadata = checkpoint.load(out / "straight/checkpoints/step_000004.safetensors")
swapped = {k: v for k, v in arrays.items() if not k.startswith("ema_generator.")}
swapped.update({k.replace("ema_generator.", "generator.", 1): v for k, v in arrays.items() if k.startswith("ema_")})
metadata = {k: v for k, v in metadata.items() if k not in ("format", "sha256")}
metadata["config"] = metadata["config"].replace(f"ema = {decay}", "ema = 0.0")
checkpoint.save(out / "swapped.safetensors", swapped, metadata)

# Samples: the averaged run by default, raw, and the plain G holding its average; the old file.
sample = ["sample", "--n", "6", "--seed", "3"]
dcgan(*sample, "--checkpoint", out / "straight", "--out", out / "default.png", "--npz", out / "default.npz")
dcgan(*sample, "--checkpoint", out / "straight", "--generator", "raw", "--out", out / "raw.png", "--npz",
      out / "raw.npz")
dcgan(*sample, "--checkpoint", out / "swapped.safetensors", "--out", out / "swapped.png", "--npz",
      out / "swapped.npz")
dcgan(*sample, "--checkpoint", out / "old.safetensors", "--out", out / "old.png", "--npz", out / "old.npz")
dcgan(*sample, "--checkpoint", out / "old.safetensors", "--generator", "ema", "--out", out / "refused.png")

# Scores, on torch alone (what they choose is common's; each backend's sampling is tested above):
# a run on the real Fashion-MNIST scored by the loop at its last iteration, then by `dcgan eval`
# (the same n and seed), by default and of G itself.
if backend == "torch":
    real = [a for a in train if a not in ("--dataset", "fake")]
    dcgan(*real, *average, "--steps", "2", "--eval-every", "2", "--eval-n", "8", "--out", out / "scored")
    scored = ["eval", "--checkpoint", out / "scored", "--n", "8", "--no-progress", "--json"]
    dcgan(*scored, out / "eval-default.json")
    dcgan(*scored, out / "eval-raw.json", "--generator", "raw")
(out / "commands.json").write_text(json.dumps(commands))
"""


@pytest.fixture(scope="module")
def runs(dcgan, tmp_path_factory) -> dict[str, Path]:
    """{backend: the folder its worker wrote}, every backend's worker run at once."""
    root = tmp_path_factory.mktemp("ema")

    def one(backend: str) -> Path:
        out = root / backend
        out.mkdir()
        dcgan.python("-c", WORKER, backend, str(out), str(DECAY), str(STEPS))
        return out

    with ThreadPoolExecutor(len(BACKENDS)) as pool:
        return dict(zip(BACKENDS, pool.map(one, BACKENDS)))


@pytest.fixture(params=list(BACKENDS))
def out(request, runs) -> Path:
    return runs[request.param]


def _commands(out: Path) -> dict[tuple[str, ...], dict]:
    """The worker's dcgan commands by their arguments: (command, the name of its --out or
    --json file, and "--resume" for a resume)."""
    found = {}
    for command in json.loads((out / "commands.json").read_text()):
        args = command["args"]
        named = Path(args[args.index("--out" if "--out" in args else "--json") + 1]).name
        found[(args[0], named, *(["--resume"] if "--resume" in args else []))] = command
    return found


def _checkpoint(out: Path, run: str, step: int = 4) -> dict[str, np.ndarray]:
    return checkpoint.load(out / run / "checkpoints" / f"step_{step:06d}.safetensors")[0]


# ------------------------------------------------------------------ config


IN_RANGE = r"a number in \[0, 1\): the decay of G's moving average, 0 for none"


@pytest.mark.parametrize(
    ("value", "valid"),
    [(-0.1, IN_RANGE), (1.0, IN_RANGE), (1.5, IN_RANGE), (float("nan"), IN_RANGE), (float("inf"), IN_RANGE)]
    + [(True, "a number$"), ("0.9", "a number$")],
)
def test_a_decay_outside_0_to_1_is_refused_by_name(value, valid):
    with pytest.raises(ConfigError, match=rf"^invalid config value optim\.ema={value!r}: {valid}"):
        make_config("mnist28", {"optim.ema": value})


def test_the_default_keeps_no_average_and_0_999_keeps_one():
    assert make_config("mnist28").optim.ema == 0.0 and not use_average(make_config("mnist28"))
    assert use_average(make_config("mnist28", {"optim.ema": 0.999}))
    with pytest.raises(ConfigError, match="--generator.*holds no averaged generator"):
        use_average(make_config("mnist28"), "ema")


def test_the_memory_check_counts_the_average_as_one_more_copy_of_g():
    plain, averaged = make_config("dcgan64"), make_config("dcgan64", {"optim.ema": 0.999})
    assert state_bytes(averaged) - state_bytes(plain) == 4 * generator_spec(plain.model).params


def test_parity_starts_every_backend_from_an_average_apart_from_g():
    """common/parity/'s random state holds the average where the config keeps one, its
    parameters apart from G's and its BN statistics G's; without it, nothing else changes."""
    config = make_config("mnist28", {"optim.ema": 0.999})
    state, plain = random_state(config), random_state(make_config("mnist28"))
    canonical.validate({k: v if k.endswith(".step") else v.astype(np.float32) for k, v in state.items()}, config)
    for e in canonical.ema_entries(config):
        own = state[e.key.replace(canonical.EMA, "generator", 1)]
        assert e.trainable == (not np.array_equal(state[e.key], own)), e.key
    assert {k: v for k, v in state.items() if not k.startswith(f"{canonical.EMA}.")}.keys() == plain.keys()
    assert all(np.array_equal(state[k], plain[k]) for k in plain)


# ------------------------------------------------------------------ on every backend


def test_the_average_is_the_formula_from_g_s_initial_weights(out):
    """ema_0 = G_0 exactly; after each iteration ema_t = d·ema_(t-1) + (1 - d)·G_t, recomputed
    here in float64 from G's saved states, to float32's rounding; BN statistics are G's."""
    saved = np.load(out / "states.npz")
    config = make_config("mnist28", {"model.ngf": 4, "model.ndf": 4, "optim.ema": DECAY})
    entries = canonical.ema_entries(config)
    g_key = {e.key: e.key.replace(canonical.EMA, "generator", 1) for e in entries}
    for e in entries:
        np.testing.assert_array_equal(saved[f"0/{e.key}"], saved[f"0/{g_key[e.key]}"], err_msg=e.key)
    trainable = [e for e in entries if e.trainable]
    expected = {e.key: saved[f"0/{g_key[e.key]}"].astype(np.float64) for e in trainable}
    for t in range(1, STEPS + 1):
        for e in trainable:
            expected[e.key] = DECAY * expected[e.key] + (1 - DECAY) * saved[f"{t}/{g_key[e.key]}"]
    moved = 0.0
    for e in entries:
        found = saved[f"{STEPS}/{e.key}"]
        if e.trainable:
            np.testing.assert_allclose(found, expected[e.key], rtol=1e-6, atol=1e-8, err_msg=e.key)
            moved = max(moved, float(np.abs(found - saved[f"{STEPS}/{g_key[e.key]}"]).max()))
        else:
            np.testing.assert_array_equal(found, saved[f"{STEPS}/{g_key[e.key]}"], err_msg=e.key)
    assert moved > 1e-5  # the average lags G by far more than the tolerance: it is not G


def test_a_state_without_an_average_starts_it_from_the_loaded_g(out):
    state = np.load(out / "loaded_without_average.npz")
    config = make_config("mnist28", {"model.ngf": 4, "model.ndf": 4, "optim.ema": DECAY})
    for e in canonical.ema_entries(config):
        np.testing.assert_array_equal(state[e.key], state[e.key.replace(canonical.EMA, "generator", 1)])


def test_every_command_ran(out):
    """Every command of the worker exits 0, but the one that asks an old file for its average."""
    commands = json.loads((out / "commands.json").read_text())
    failed = [c for c in commands if c["code"] != 0 and not c["args"][-1].endswith("refused.png")]
    assert not failed, "\n".join(f"{' '.join(c['args'])} exited {c['code']}:\n{c['stderr']}" for c in failed)


def test_a_resume_continues_the_average_bit_for_bit(out):
    straight, resumed = _checkpoint(out, "straight"), _checkpoint(out, "resumed")
    assert canonical.has_ema(straight) and straight.keys() == resumed.keys()
    for key in straight:
        np.testing.assert_array_equal(straight[key], resumed[key], err_msg=key)


def test_the_average_changes_nothing_of_g_d_or_adam(out):
    """The averaged run's G, D and Adam at iteration 4 are the plain run's, bit for bit."""
    averaged, plain = _checkpoint(out, "straight"), _checkpoint(out, "plain")
    assert not canonical.has_ema(plain)
    assert {k for k in averaged if not k.startswith(f"{canonical.EMA}.")} == set(plain)
    for key in plain:
        np.testing.assert_array_equal(averaged[key], plain[key], err_msg=key)


def test_a_checkpoint_from_before_the_average_resumes_and_samples_as_ever(out):
    """A run whose config has no optim.ema resumes to the run of today's code without one,
    bit for bit; `dcgan sample` draws from its G, says so, and refuses --generator ema."""
    old, plain = _checkpoint(out, "old"), _checkpoint(out, "plain")
    assert old.keys() == plain.keys() and not canonical.has_ema(old)
    for key in plain:
        np.testing.assert_array_equal(old[key], plain[key], err_msg=key)
    commands = _commands(out)
    assert "drawn by G (the checkpoint keeps no moving average)" in commands[("sample", "old.png")]["stdout"]
    refused = commands[("sample", "refused.png")]
    assert refused["code"] == 2 and "--generator='ema': raw: this checkpoint holds no averaged" in refused["stderr"]
    assert np.load(out / "old.npz")["images"].shape == (6, 1, 28, 28)


def test_the_loop_and_eval_score_the_average_and_eval_scores_g_when_asked(runs):
    """The loop's --eval-every score at the last iteration is `dcgan eval`'s default of the
    checkpoint it saved (the average: the same n and seed), and its fd_raw beside it is
    --generator raw's, which differs; both say which generator they scored (on torch)."""
    out = runs["torch"]
    logged = json.loads((out / "scored/metrics.jsonl").read_text().splitlines()[-1])
    default, raw = (json.loads((out / f"eval-{name}.json").read_text()) for name in ("default", "raw"))
    assert (default["generator"], raw["generator"]) == ("ema", "raw")
    assert logged["fd"] == pytest.approx(default["fd"], rel=1e-6) and abs(default["fd"] - raw["fd"]) > 1e-6
    assert logged["fd_raw"] == pytest.approx(raw["fd"], rel=1e-6)
    assert logged["eval_s"] > 0 and logged["time"] > 0  # what scoring took, so that time less it is training
    commands = _commands(out)
    assert f"8 samples of G's moving average (optim.ema {DECAY})" in commands[("eval", "eval-default.json")]["stdout"]
    assert "8 samples of G, not its moving average" in commands[("eval", "eval-raw.json")]["stdout"]
    assert "sample grids and --eval-every scores: G's moving average" in commands[("train", "scored")]["stdout"]


def test_sample_draws_from_the_average_by_default_and_from_g_when_asked(out):
    """The default images are those a plain G holding the average's weights draws (a file
    made from the checkpoint: the average's tensors under G's keys, no average, optim.ema 0);
    --generator raw's differ."""
    commands = _commands(out)
    assert f"drawn by G's moving average (optim.ema {DECAY})" in commands[("sample", "default.png")]["stdout"]
    assert "drawn by G, not its moving average" in commands[("sample", "raw.png")]["stdout"]
    assert "drawn by G (the checkpoint keeps no moving average)" in commands[("sample", "swapped.png")]["stdout"]
    default, raw, swapped = (np.load(out / f"{name}.npz")["images"] for name in ("default", "raw", "swapped"))
    np.testing.assert_array_equal(default, swapped)
    assert np.abs(default - raw).max() > 1e-4

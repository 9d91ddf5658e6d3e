"""`dcgan convert` and cross-backend `dcgan sample`: pytorch/examples weights in, any
checkpoint through any backend, bit for bit.

One helper process per backend (Keras fixes its backend per process), all at once. Each
runs the `dcgan` CLI in-process (common.cli.main) for:
  1. `dcgan sample --noise` of a converted pytorch/examples model, compared with the
     examples' own netG here;
  2. `dcgan convert` of a 2-step torch checkpoint through its backend B (file f_B);
  3. after every process has written its f_B: `dcgan convert` of each f_A through its
     backend C (file f_AC), each compared here with the original;
  jax also converts the torch run directory to a jax run and continues it with --resume.
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
import torch  # every extra is installed for the tests: a broken torch fails them, it does not skip them
from torch import nn

from common import canonical, checkpoint
from common.backends import BACKENDS
from common.cli import main
from common.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
NZ, NGF, NDF, NC, N = 100, 8, 8, 3, 5
SMALL = ["--set", "model.ngf=4", "--set", "model.ndf=4", "--set", "optim.d_steps=2", "--batch-size", "8"]
AVERAGED = ["--set", "optim.ema=0.9"]  # the source run keeps G's moving average, which conversions carry


class ExamplesG(nn.Module):
    """pytorch/examples dcgan/main.py's Generator."""

    def __init__(self, nz=NZ, ngf=NGF, nc=NC):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


class ExamplesD(nn.Module):
    """pytorch/examples dcgan/main.py's Discriminator."""

    def __init__(self, ndf=NDF, nc=NC):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def _randomised(net: nn.Module, seed: int) -> nn.Module:
    """Weights as examples' weights_init draws them, and BN running statistics far from 0/1,
    so eval mode really uses them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * 0.05)
            elif isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
                module.bias.copy_(0.1 * torch.randn(c, generator=g))
                module.running_mean.copy_(0.3 * torch.randn(c, generator=g))
                module.running_var.copy_(0.5 + torch.rand(c, generator=g))
                module.num_batches_tracked.fill_(7)
    return net.eval()


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict:
    """pytorch/examples nets saved as its main.py saves them, and `dcgan convert` of them."""
    root = tmp_path_factory.mktemp("examples")
    net_g, net_d = _randomised(ExamplesG(), 1), _randomised(ExamplesD(), 2)
    torch.save(net_g.state_dict(), root / "netG.pth")
    torch.save(net_d.state_dict(), root / "netD.pth")
    z = np.random.default_rng(0).standard_normal((N, NZ)).astype(np.float32)
    np.save(root / "z.npy", z)
    model = root / "m.safetensors"
    assert (
        main(
            [
                "convert",
                "--from-pytorch-examples",
                "--netG",
                str(root / "netG.pth"),
                "--netD",
                str(root / "netD.pth"),
                "--ngf",
                str(NGF),
                "--ndf",
                str(NDF),
                "--out",
                str(model),
            ]
        )
        == 0
    )
    return {"root": root, "netG": net_g, "netD": net_d, "z": z, "model": model}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> dict:
    """A 2-step torch run (mnist28: dropout, so every framework has RNG state to carry), which
    keeps G's moving average (optim.ema), so every conversion carries that too."""
    run = tmp_path_factory.mktemp("source") / "run"
    assert (
        main(
            [
                "train",
                "--backend",
                "torch",
                "--preset",
                "mnist28",
                "--dataset",
                "fake",
                "--no-progress",
                "--steps",
                "2",
                "--out",
                str(run),
                *SMALL,
                *AVERAGED,
            ]
        )
        == 0
    )
    file = RunDir(run).checkpoint_path(2)
    arrays, _ = checkpoint.load(file)
    return {"run": run, "file": file, "arrays": arrays}


HELPER = """
import json, sys, time
from pathlib import Path
from common.cli import main

backend, work, model, source_file, source_run = sys.argv[1:6]
backends = sys.argv[6:]
work = Path(work)
rc = {}
rc["sample"] = main(["sample", "--checkpoint", model, "--backend", backend, "--noise", str(work / "z.npy"),
                     "--out", str(work / f"sample-{backend}.png"), "--npz", str(work / f"sample-{backend}.npz")])
rc["convert"] = main(["convert", "--checkpoint", source_file, "--backend", backend,
                      "--out", str(work / f"f-{backend}.safetensors")])
(work / f"done-{backend}").write_text(str(rc["convert"]))
deadline = time.time() + 400
while not all((work / f"done-{a}").exists() for a in backends):  # the others' f_A
    if time.time() > deadline:
        raise SystemExit("timed out waiting for the other backends' conversions")
    time.sleep(0.2)
for a in backends:
    if (work / f"f-{a}.safetensors").exists():
        rc[f"convert-{a}"] = main(["convert", "--checkpoint", str(work / f"f-{a}.safetensors"), "--backend", backend,
                                   "--out", str(work / f"f-{a}-{backend}.safetensors")])
if backend == "jax":
    rc["convert-run"] = main(["convert", "--checkpoint", source_run, "--backend", "jax",
                              "--out", str(work / "jax-run")])
    rc["resume"] = main(["train", "--resume", "--out", str(work / "jax-run"), "--steps", "3", "--no-progress"])
print(json.dumps(rc))
"""


def _helper(backend: str, work: Path, model: Path, source: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    args = [backend, str(work), str(model), str(source["file"]), str(source["run"]), *BACKENDS]
    return subprocess.run(
        [sys.executable, "-c", HELPER, *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def helpers(examples, source_run) -> dict:
    work = examples["root"]
    with ThreadPoolExecutor(max_workers=len(BACKENDS)) as pool:
        futures = {b: pool.submit(_helper, b, work, examples["model"], source_run) for b in BACKENDS}
        runs = {b: f.result() for b, f in futures.items()}
    codes = {}
    for b, run in runs.items():
        assert run.returncode == 0, f"{b} helper failed:\n{run.stderr[-3000:]}"
        codes[b] = json.loads(run.stdout.strip().splitlines()[-1])
    return {"work": work, "codes": codes, "runs": runs}


def _ok(helpers: dict, backend: str, step: str) -> None:
    assert helpers["codes"][backend].get(step) == 0, f"{backend}: {step}\n{helpers['runs'][backend].stderr[-3000:]}"


# --------------------------------------------------------------------------- pytorch/examples


def test_examples_file_is_a_canonical_networks_only_state(examples):
    arrays, metadata = checkpoint.load(examples["model"])
    assert metadata["backend"] == "pytorch-examples" and metadata["preset"] == "dcgan64" and metadata["step"] == "0"
    assert not canonical.has_optimizer(arrays) and not any(k.startswith("rng.") for k in arrays)
    state = examples["netG"].state_dict()
    assert np.array_equal(arrays["generator.convt1.weight"], state["main.0.weight"].numpy())
    assert np.array_equal(arrays["generator.bn1.running_var"], state["main.1.running_var"].numpy())
    assert np.array_equal(arrays["discriminator.conv5.weight"], examples["netD"].state_dict()["main.11.weight"].numpy())


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_converted_generator_matches_examples_on_every_backend(helpers, examples, backend):
    _ok(helpers, backend, "sample")
    out = np.load(helpers["work"] / f"sample-{backend}.npz")
    z = examples["z"]
    assert np.array_equal(out["z"], z)
    with torch.no_grad():
        expected = examples["netG"](torch.from_numpy(z).view(N, NZ, 1, 1)).numpy()
    assert out["images"].dtype == np.float32 and out["images"].shape == expected.shape == (N, NC, 64, 64)
    np.testing.assert_allclose(out["images"], expected, rtol=0, atol=1e-5)


def test_converted_discriminator_matches_examples(examples):
    from common.backends import load_backend
    from common.rundir import open_checkpoint

    arrays, _, config = open_checkpoint(examples["model"])
    trainer = load_backend("torch").trainer(config)
    trainer.load_state_dict(arrays)
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (N, NC, 64, 64)).astype(np.float32))
    trainer.discriminator.eval()
    with torch.no_grad():
        ours = torch.sigmoid(trainer.discriminator(x)).reshape(-1).numpy()
        theirs = examples["netD"](x).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_without_netd_the_discriminator_is_torch_initialised(examples, tmp_path, capsys):
    out = tmp_path / "g-only.safetensors"
    assert (
        main(
            [
                "convert",
                "--from-pytorch-examples",
                "--netG",
                str(examples["root"] / "netG.pth"),
                "--set",
                f"model.ngf={NGF}",
                "--ndf",
                "4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "no --netD" in capsys.readouterr().out
    arrays, metadata = checkpoint.load(out)
    assert "no --netD" in metadata["note"]
    assert arrays["discriminator.conv1.weight"].shape == (4, 3, 4, 4)
    assert np.array_equal(arrays["generator.convt2.weight"], examples["netG"].state_dict()["main.3.weight"].numpy())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=["float64", "bfloat16"])
def test_a_netg_saved_in_another_float_dtype_converts_to_float32(examples, tmp_path, dtype):
    """pytorch/examples saves float32; a netG saved in another float dtype (net.double(),
    net.bfloat16()) converts too, each value rounded once to the canonical float32."""
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in examples["netG"].state_dict().items()}
    torch.save(state, tmp_path / "netG.pth")
    out = tmp_path / "g.safetensors"
    args = ["convert", "--from-pytorch-examples", "--netG", str(tmp_path / "netG.pth"), "--ngf", str(NGF)]
    assert main([*args, "--ndf", "4", "--out", str(out)]) == 0
    arrays, _ = checkpoint.load(out)
    for key, theirs in (
        ("generator.convt1.weight", "main.0.weight"),
        ("generator.bn1.running_var", "main.1.running_var"),
    ):
        assert arrays[key].dtype == np.float32
        assert np.array_equal(arrays[key], state[theirs].to(torch.float32).numpy())


def test_a_pickled_module_is_refused(examples, tmp_path, capsys):
    path = tmp_path / "module.pth"
    torch.save(examples["netG"], path)  # the whole module: unpickling it would run arbitrary code
    assert (
        main(
            [
                "convert",
                "--from-pytorch-examples",
                "--netG",
                str(path),
                "--ngf",
                str(NGF),
                "--out",
                str(tmp_path / "x.safetensors"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--netG" in err and "state_dict" in err
    assert "it pickles tests.test_convert.ExamplesG, a Python object, besides tensors" in err
    assert "weights_only" not in err  # torch's advice to unpickle anyway is not passed on
    assert not (tmp_path / "x.safetensors").exists()


def test_a_safetensors_netg_converts_as_its_pth(examples, tmp_path):
    """torch.load reads a file named .safetensors as safetensors: the same tensors give the same file."""
    from safetensors.torch import save_file

    net_g, out = tmp_path / "netG.safetensors", tmp_path / "m.safetensors"
    save_file(examples["netG"].state_dict(), str(net_g))
    net_d = str(examples["root"] / "netD.pth")
    argv = ["--netG", str(net_g), "--netD", net_d, "--ngf", str(NGF), "--ndf", str(NDF), "--out", str(out)]
    assert main(["convert", "--from-pytorch-examples", *argv]) == 0
    ours, _ = checkpoint.load(out)
    theirs, _ = checkpoint.load(examples["model"])
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_a_shape_mismatch_names_the_key_and_the_flag(examples, tmp_path, capsys):
    assert (
        main(
            [
                "convert",
                "--from-pytorch-examples",
                "--netG",
                str(examples["root"] / "netG.pth"),
                "--ngf",
                "16",
                "--ndf",
                str(NDF),
                "--out",
                str(tmp_path / "x.safetensors"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "main.0.weight (100, 64, 4, 4)" in err and "generator.convt1.weight" in err and "(100, 128, 4, 4)" in err
    assert "--ngf 8" in err


def test_noise_of_the_wrong_shape_is_refused(examples, tmp_path, capsys):
    bad = tmp_path / "z.npy"
    np.save(bad, np.zeros((3, 7), np.float32))
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                str(examples["model"]),
                "--backend",
                "torch",
                "--noise",
                str(bad),
                "--out",
                str(tmp_path / "s.png"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "(3, 7)" in err and "(n, 100)" in err


# --------------------------------------------------------------------------- checkpoints


def _network_and_optimizer(arrays: dict) -> dict:
    return {k: v for k, v in arrays.items() if not k.startswith("rng.")}


RNG_PREFIX = {
    "torch": "rng.torch",
    "jax": "rng.jax.",
    "keras-tensorflow": "rng.keras.",
    "keras-jax": "rng.keras.",
    "keras-torch": "rng.keras.",
}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_conversion_through_one_backend_is_exact(helpers, source_run, backend):
    _ok(helpers, backend, "convert")
    arrays, metadata = checkpoint.load(helpers["work"] / f"f-{backend}.safetensors")
    assert metadata["backend"] == backend and metadata["step"] == "2"
    expected = _network_and_optimizer(source_run["arrays"])
    got = _network_and_optimizer(arrays)
    assert canonical.has_ema(expected) and set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and np.array_equal(got[key], value), key
    rng = [k for k in arrays if k.startswith("rng.")]
    assert rng and all(k.startswith(RNG_PREFIX[backend]) for k in rng), rng  # only the target's own RNG state


@pytest.mark.parametrize("target", list(BACKENDS))
def test_conversion_between_every_pair_is_exact(helpers, source_run, target):
    expected = _network_and_optimizer(source_run["arrays"])
    for first in BACKENDS:
        _ok(helpers, target, f"convert-{first}")
        arrays, metadata = checkpoint.load(helpers["work"] / f"f-{first}-{target}.safetensors")
        got = _network_and_optimizer(arrays)
        assert metadata["backend"] == target and set(got) == set(expected), f"{first} -> {target}"
        for key, value in expected.items():
            assert np.array_equal(got[key], value), f"{first} -> {target}: {key}"


def test_a_converted_run_continues_on_jax(helpers):
    _ok(helpers, "jax", "convert-run")
    _ok(helpers, "jax", "resume")
    run = helpers["work"] / "jax-run"
    saved = {"preset": "mnist28", "backend": "jax", "target": {"steps": 3}}  # the target: the resume's
    assert json.loads((run / "run.json").read_text()) == saved
    assert RunDir(run).saved_steps() == [3]
    _, metadata = checkpoint.load(RunDir(run).checkpoint_path(3))
    assert metadata["backend"] == "jax" and metadata["step"] == "3"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3]


def test_convert_refuses_a_non_empty_run_directory(source_run, tmp_path, capsys):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    assert (
        main(
            ["convert", "--checkpoint", str(source_run["run"]), "--backend", "torch", "--out", str(tmp_path / "other")]
        )
        == 2
    )
    assert "--out" in capsys.readouterr().err

"""Bad input to every `dcgan` command: one or two lines on stderr that name the bad value and
say what would be valid, exit code 2, no traceback, and nothing written.

Each case runs the CLI in-process, in a folder of its own that holds the inputs it names
(made when the case first mentions them) and is the working directory, where a command's
default outputs would go. The folder is read, every path and every byte, before and after
the command: a file changed, half-written or new fails the case.

Every case but one fails before a model is built (`convert --checkpoint` converts, then
finds --out taken). Where a check needs a framework (a backend's device, reading a .pth
file) that is torch; Keras and JAX are never imported here (Keras fixes its backend per
process), and a missing framework is simulated by failing its import.
"""

from __future__ import annotations

import gzip
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from common import backends, canonical, checkpoint
from common.cli import main
from common.presets import make_config
from common.rundir import RunDir

SMALL = {"model.ngf": 4, "model.ndf": 4}
# `dcgan train` on a tiny mnist28 and the `fake` dataset; a case's later --dataset or --batch-size wins.
TRAIN = "train --preset mnist28 --set model.ngf=4 --set model.ndf=4 --dataset fake --batch-size 2 --no-progress"


# --------------------------------------------------------------------------- inputs


def _state(config) -> dict[str, np.ndarray]:
    """A whole canonical state of zeros (networks and Adam): a checkpoint made without a framework."""
    arrays = {e.key: np.zeros(e.shape, np.float32) for e in canonical.entries(config)}
    return {**arrays, **canonical.fresh_optimizer(config)}


def _checkpoint(path: Path, **overrides) -> None:
    config = make_config("mnist28", {**SMALL, **overrides})
    checkpoint.save(path, _state(config), canonical.metadata(config, "torch", 1))


def _run(path: Path, preset: str, backend: str) -> None:
    """A run directory with one checkpoint, as `dcgan train` leaves it."""
    config = make_config(preset, SMALL)
    run = RunDir(path)
    run.create(config, backend)
    run.save_checkpoint(1, _state(config), canonical.metadata(config, backend, 1))


def _images(folder: Path, count: int = 3) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f"good{i}.png")


def _mixed(folder: Path) -> None:
    """Three images that differ in size, channels and format."""
    folder.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "wide.jpg")
    Image.new("L", (20, 20), 90).save(folder / "small-grey.png")
    Image.new("RGBA", (50, 64), (0, 0, 255, 128)).save(folder / "tall-rgba.png")


def _unreadable(folder: Path) -> None:
    _images(folder)
    (folder / "notes.png").write_text("a text file named as an image")


def _truncated(folder: Path) -> None:
    _images(folder)
    whole = (folder / "good0.png").read_bytes()
    (folder / "cut.png").write_bytes(whole[: len(whole) // 2])


def _texts(folder: Path) -> None:
    folder.mkdir()
    (folder / "README").write_text("labels are in labels.csv\n")
    (folder / "labels.csv").write_text("file,label\n")


def _idx_header(*shape: int) -> bytes:
    return struct.pack(">HBB", 0, 0x08, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def _idx_truncated(folder: Path) -> None:
    """A download cut short: the header promises 10 images, 100 bytes follow."""
    folder.mkdir()
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(_idx_header(10, 28, 28) + bytes(100))


def _idx_corrupt(folder: Path) -> None:
    """gzip's magic number, then bytes that are no deflate stream."""
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(60)))


def _idx_png(folder: Path) -> None:
    folder.mkdir()
    Image.new("L", (28, 28)).save(folder / "train-images-idx3-ubyte", format="PNG")


def _idx_labels(folder: Path) -> None:
    """A labels file (one byte an image) under the images' name."""
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(_idx_header(10) + bytes(10))


class _Trap:
    """Unpickled, it creates the file `path`: a pickled .npy must be refused, never loaded."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _pickled(path: Path) -> None:
    objects = np.empty((2, 300), dtype=object)
    objects[:] = _Trap(path.with_name("unpickled"))
    np.save(path, objects, allow_pickle=True)


def _pth(state: Callable[[], object]) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        import torch

        torch.save(state(), path)

    return make


def _cut_short(make: Callable[[Path], None]) -> Callable[[Path], None]:
    """A file as `make` writes it, then cut in half, as a copy that did not finish leaves it."""

    def cut(path: Path) -> None:
        make(path)
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])

    return cut


def _broken_run(run_json: str) -> Callable[[Path], None]:
    """A run directory with a checkpoint, whose run.json holds `run_json`."""

    def make(path: Path) -> None:
        _run(path, "mnist28", "torch")
        (path / "run.json").write_text(run_json)

    return make


def _zeros(*shape: int):
    import torch

    return torch.zeros(shape)


# name -> (file or folder name, how to make it). A case names an input as {name}; {tmp} is its folder.
MAKERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "ckpt": ("model.safetensors", _checkpoint),
    "fake_ckpt": ("fake-model.safetensors", lambda p: _checkpoint(p, **{"data.dataset": "fake"})),
    "this_run": ("run", lambda p: _run(p, "mnist28", "torch")),
    "other_run": ("other-run", lambda p: _run(p, "dcgan64", "jax")),
    "afile": ("afile", lambda p: p.write_text("not a directory\n")),
    "empty": ("empty", lambda p: p.mkdir()),
    "texts": ("texts", _texts),
    "mixed": ("mixed", _mixed),
    "unreadable": ("unreadable", _unreadable),
    "truncated": ("truncated", _truncated),
    "idx_truncated": ("idx-truncated", _idx_truncated),
    "idx_corrupt": ("idx-corrupt", _idx_corrupt),
    "idx_png": ("idx-png", _idx_png),
    "idx_labels": ("idx-labels", _idx_labels),
    "toml_syntax": ("syntax.toml", lambda p: p.write_text("[model\nngf = 32\n")),
    "toml_range": ("range.toml", lambda p: p.write_text("[optim]\nlr_g = -0.001\n")),
    "toml_type": ("type.toml", lambda p: p.write_text("[model]\nlatent_dist = 3\n")),
    "toml_section": ("section.toml", lambda p: p.write_text("[modle]\nngf = 32\n")),
    "toml_key": ("key.toml", lambda p: p.write_text("[optim]\nlearning_rate = 0.001\n")),
    "toml_binary": ("binary.toml", lambda p: p.write_bytes(b"\xff\xfe[\x00m\x00")),
    "toml_inf": ("inf.toml", lambda p: p.write_text("[optim]\nlr_g = inf\n")),
    "toml_nan": ("nan.toml", lambda p: p.write_text("[model]\nbn_eps = nan\n")),
    "toml_huge_width": (
        "huge-width.toml",
        lambda p: p.write_text("[[model.generator]]\nlayer = 'linear'\nwidth = 99999999999999999999\n"),
    ),
    "noise_wide": ("wide.npy", lambda p: np.save(p, np.zeros((2, 7), np.float32))),
    "noise_flat": ("flat.npy", lambda p: np.save(p, np.zeros(300, np.float32))),
    "noise_text": ("strings.npy", lambda p: np.save(p, np.full((2, 300), "0.5"))),
    "noise_complex": ("complex.npy", lambda p: np.save(p, np.zeros((2, 300), np.complex64))),
    "noise_nan": ("nan.npy", lambda p: np.save(p, np.full((2, 300), np.nan, np.float32))),
    "noise_pickled": ("pickled.npy", _pickled),
    "noise_csv": ("noise.npy", lambda p: p.write_text("0.1,0.2,0.3\n")),
    "noise_two": ("two.npy", lambda p: np.save(p, np.zeros((2, 300), np.float32))),
    "pth_garbage": ("garbage.pth", lambda p: p.write_bytes(b"PK\x03\x04 not a torch file")),
    "pth_keys": ("keys.pth", _pth(lambda: {"fc.weight": _zeros(4, 4)})),
    "pth_shapes": ("shapes.pth", _pth(lambda: {"main.0.weight": _zeros(3, 3)})),
    "pth_nan": ("nan.pth", _pth(lambda: {"main.0.weight": _zeros(2, 2), "main.1.weight": _zeros(2) / 0})),
    "pth_ints": ("ints.pth", _pth(lambda: {"main.0.weight": _zeros(2, 2).int()})),
    "pth_huge": ("huge.pth", _pth(lambda: {"main.0.weight": (_zeros(3) + 1).double() * 1e300})),
    "pth_random": ("random.pth", lambda p: p.write_bytes(np.random.default_rng(0).bytes(2000))),
    "pth_empty": ("empty.pth", lambda p: p.write_bytes(b"")),
    "pth_cut": ("cut.pth", _cut_short(_pth(lambda: {"main.0.weight": _zeros(3, 3)}))),
    "netg_safetensors": ("netG.safetensors", lambda p: p.write_bytes(np.random.default_rng(0).bytes(2000))),
    "run_not_json": ("run-not-json", _broken_run("{preset: mnist28")),
    "run_list": ("run-list", _broken_run('["mnist28", "torch"]\n')),
}


class Inputs(dict):
    """The paths a case's arguments name, each input made on its first mention."""

    def __init__(self, root: Path):
        super().__init__(tmp=str(root))
        self.root = root

    def __missing__(self, name: str) -> str:
        filename, make = MAKERS[name]
        make(self.root / filename)
        self[name] = str(self.root / filename)
        return self[name]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root, with a file's bytes (None for a folder)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in root.rglob("*")}


# --------------------------------------------------------------------------- simulated environments


def _without(module: str) -> Callable[[pytest.MonkeyPatch], None]:
    """The backend's framework fails to import, as where its extra is not installed."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(name: str):
            raise ImportError(f"No module named '{module}'")

        monkeypatch.setattr(backends, "importlib", SimpleNamespace(import_module=refuse))
        monkeypatch.setenv("KERAS_BACKEND", "torch")  # load_backend sets it for Keras; restored after
        monkeypatch.delitem(sys.modules, "keras", raising=False)  # no Keras backend chosen in this process yet

    return patch


def _cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import cli

    monkeypatch.setattr(cli, "gpus", lambda: [])


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every HTTP(S) request goes to a closed local port, so a download fails at once and
    nothing leaves the machine."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "")


# --------------------------------------------------------------------------- cases


def case(id: str, argv: str, value: str, valid: str, patch=None):
    """`argv` with {input} names; the message must name `value` (on its first line) and say `valid`."""
    return pytest.param(argv, value, valid, patch, id=id)


CASES = [
    # ---- config values, from --set and from TOML files
    case(
        "describe-set-out-of-range", "describe --preset mnist28 --set optim.beta1=1.5", "optim.beta1=1.5", "in [0, 1)"
    ),
    case("describe-set-wrong-type", "describe --set model.ngf=abc", "model.ngf='abc'", "an integer"),
    case("describe-toml-syntax-error", "describe --config {toml_syntax}", "--config='{toml_syntax}'", "valid TOML"),
    case("describe-toml-out-of-range", "describe --config {toml_range}", "optim.lr_g=-0.001", "a number > 0"),
    case("describe-toml-wrong-type", "describe --config {toml_type}", "model.latent_dist=3", "a string"),
    case(
        "describe-toml-unknown-section",
        "describe --config {toml_section}",
        "modle.ngf=32",
        "section one of model, optim, data, or seed",
    ),
    case(
        "describe-toml-unknown-key",
        "describe --config {toml_key}",
        "optim.learning_rate=0.001",
        "optim has: batch_size, lr_g, lr_d",
    ),
    case(
        "describe-config-is-a-folder",
        "describe --config {empty}",
        "--config='{empty}'",
        "a TOML file (this is a directory)",
    ),
    case("describe-config-not-text", "describe --config {toml_binary}", "--config='{toml_binary}'", "UTF-8 text"),
    case("describe-toml-infinite", "describe --config {toml_inf}", "optim.lr_g=inf", "a number > 0 and finite"),
    case("describe-toml-nan", "describe --config {toml_nan}", "model.bn_eps=nan", "a number > 0 and finite"),
    case(
        "describe-toml-int-past-int64",
        "describe --config {toml_huge_width}",
        "model.generator[0].width=99999999999999999999",
        "an integer up to 2147483647",
    ),
    case(
        "describe-set-int-past-int64",
        "describe --set model.ngf=99999999999999999999",
        "model.ngf=99999999999999999999",
        "a positive integer up to 2147483647",
    ),
    case(
        "describe-set-crop-past-int32",
        "describe --set data.center_crop=2147483648",
        "data.center_crop=2147483648",
        "an integer up to 2147483647",
    ),
    case(
        "parity-config-missing",
        "parity --config {tmp}/missing.toml",
        "--config='{tmp}/missing.toml'",
        "an existing TOML file",
    ),
    case(
        "train-preset-unknown",
        "train --preset dcgan128",
        "preset='dcgan128'",
        "one of dcgan64, pokemon64, svhn32, mnist28",
    ),
    case("train-key-unknown", f"{TRAIN} --set model.nfg=4", "model.nfg=4", "model has: image_size, channels"),
    case(
        "train-section-unknown",
        f"{TRAIN} --set training.steps=4",
        "training.steps=4",
        "section one of model, optim, data, or seed",
    ),
    case("train-seed-set-negative", f"{TRAIN} --set seed=-1", "seed=-1", "a non-negative integer"),
    case("train-seed-flag-negative", f"{TRAIN} --seed -1", "argument --seed: -1", "is not a non-negative integer"),
    case(
        "train-seed-set-past-int64",
        f"{TRAIN} --set seed=99999999999999999999",
        "seed=99999999999999999999",
        "a non-negative integer up to 1000000, the largest every backend takes",
    ),
    case(
        "train-seed-flag-past-int64",
        f"{TRAIN} --seed 99999999999999999999",
        "argument --seed: 99999999999999999999",
        "is not a non-negative integer up to 1000000",
    ),
    case(
        "train-batch-size-past-int64",
        f"{TRAIN} --batch-size 99999999999999999999",
        "argument --batch-size: 99999999999999999999",
        "is not a positive integer up to 2147483647",
    ),
    case(
        "train-image-size-unreachable",
        f"{TRAIN} --set model.image_size=30",
        "model.image_size=30",
        "image sizes this layer plan reaches: 4, 8, 12",
    ),
    case(
        "parity-image-size-unreachable",
        "parity --preset svhn32 --set model.image_size=36",
        "model.image_size=36",
        "image sizes this layer plan reaches: 8, 16, 24, 32, 40",
    ),
    # ---- backends, precisions, compilers
    case("describe-backend-unknown", "describe --backend tensorflow", "'tensorflow'", "keras-torch"),
    case(
        "describe-backend-not-installed",
        "describe --backend jax",
        "backend='jax'",
        "install it with: pip install -e '.[jax]'",
        _without("jax"),
    ),
    case(
        "train-backend-not-installed",
        f"{TRAIN} --backend keras-torch",
        "backend='keras-torch'",
        "install it with: pip install -e '.[keras,torch]'",
        _without("keras"),
    ),
    case(
        "train-devices-keras-torch",
        f"{TRAIN} --backend keras-torch --devices 2",
        "--devices=2",
        "1 on keras-torch: Keras 3.15's distribution API",
    ),
    case(  # refused before torchrun starts a process
        "train-devices-torch-global-statistics-on-cpu",
        f"{TRAIN} --backend torch --devices 2",
        "model.bn_statistics='global'",
        "per_device on torch's CPU",
    ),
    case(
        "train-processes-not-dividing-devices",
        f"{TRAIN} --backend jax --devices 3 --processes 2",
        "--processes=2",
        "a divisor of --devices 3",
    ),
    case(
        "train-processes-on-keras",
        f"{TRAIN} --backend keras-jax --devices 2 --processes 2",
        "--processes=2",
        "1 on keras-jax: its data parallelism runs in one process",
    ),
    case(
        "train-processes-torch-not-one-per-device",
        f"{TRAIN} --backend torch --devices 2 --processes 1",
        "--processes=1",
        "2 on torch, one per device",
    ),
    case(
        "train-process-id-out-of-range",
        f"{TRAIN} --backend jax --devices 2 --processes 2 --process-id 2",
        "--process-id=2",
        "0 to 1, one per process",
    ),
    case(
        "train-process-id-on-torch",
        f"{TRAIN} --backend torch --devices 2 --process-id 0",
        "--process-id=0",
        "none on torch: torchrun numbers its processes",
    ),
    case(
        "train-coordinator-without-process-id",
        f"{TRAIN} --backend jax --devices 2 --processes 2 --coordinator localhost:1234",
        "--coordinator='localhost:1234'",
        "given with --process-id",
    ),
    case(
        "train-coordinator-without-port",
        f"{TRAIN} --backend jax --devices 2 --processes 2 --process-id 0 --coordinator localhost",
        "argument --coordinator: 'localhost' is not HOST:PORT",
        "e.g. 10.0.0.1:1234",
    ),
    case(  # refused as it is parsed: jax.distributed would wait for it until its timeout
        "train-coordinator-port-out-of-range",
        f"{TRAIN} --backend jax --devices 2 --processes 2 --process-id 0 --coordinator localhost:70000",
        "argument --coordinator: 'localhost:70000' has port '70000'",
        "a port is a whole number from 1 to 65535",
    ),
    case(
        "sample-backend-not-installed",
        "sample --checkpoint {ckpt} --backend jax --out {tmp}/grid.png",
        "backend='jax'",
        "pip install -e '.[jax]'",
        _without("jax"),
    ),
    case("train-backend-unknown", f"{TRAIN} --backend tensorflow", "'tensorflow'", "keras-tensorflow"),
    case("train-precision-unknown", f"{TRAIN} --precision fp8", "'fp8'", "bf16"),
    case("train-compiler-unknown", f"{TRAIN} --compile turbo", "'turbo'", "max-autotune"),
    case(
        "train-compiler-not-offered",
        f"{TRAIN} --backend torch --compile xla",
        "compile='xla'",
        "a compiler torch offers: default",
    ),
    case(
        "train-tf32-on-cpu",
        f"{TRAIN} --backend torch --precision tf32",
        "precision='tf32'",
        "float32 or bf16 on torch's device (cpu)",
        _cpu_only,
    ),
    case("parity-backend-unknown", "parity --backends torch tf", "'tf'", "keras-tensorflow"),
    case("parity-precision-unknown", "parity --precision float16", "'float16'", "float64"),
    case(
        "bench-mode-unknown",
        "bench --modes torch-eager torch-fast",
        "--modes='torch-fast'",
        "one of reference-loop, torch-eager",
    ),
    case(
        "parity-backend-twice", "parity --backends torch torch", "argument --backends: 'torch' is named twice", "once"
    ),
    case("parity-one-backend", "parity --backends torch", "--backends='torch'", "two or more backends"),
    case(
        "bench-mode-twice",
        "bench --modes torch-eager jax-jit torch-eager",
        "argument --modes: 'torch-eager' is named twice",
        "name each once",
    ),
    case(
        "bench-json-a-directory", "bench --json {empty}", "argument --json: '{empty}' is a directory", "file to write"
    ),
    case("bench-precision-float64", "bench --precision float64", "'float64'", "bf16"),
    case("bench-preset-unknown", "bench --preset dcgan128", "'dcgan128'", "mnist28"),
    case("bench-device-gpu-without-one", "bench --device gpu", "--device='gpu'", "cpu on this machine", _no_gpu),
    # ---- datasets
    case(
        "train-batch-larger-than-mixed-folder",  # images of mixed sizes and channels are taken, all 3 of them
        f"{TRAIN} --dataset {{mixed}} --batch-size 8",
        "data.dataset='{mixed}'",
        "at least batch_size x d_steps = 8 images (it has 3)",
    ),
    case(
        "train-dataset-missing",
        f"{TRAIN} --dataset {{tmp}}/no-such-folder",
        "data.dataset='{tmp}/no-such-folder'",
        "an existing folder of images",
    ),
    case(
        "train-dataset-empty-folder",
        f"{TRAIN} --dataset {{empty}}",
        "data.dataset='{empty}'",
        "a folder with images (.png, .jpg, .jpeg",
    ),
    case(
        "train-dataset-no-images",
        f"{TRAIN} --dataset {{texts}}",
        "data.dataset='{texts}'",
        "it holds 2 file(s), none named as an image",
    ),
    case(
        "train-dataset-unreadable-file",
        f"{TRAIN} --dataset {{unreadable}}",
        "data.dataset='{unreadable}/notes.png'",
        "a readable image file",
    ),
    case(
        "train-dataset-truncated-image",
        f"{TRAIN} --dataset {{truncated}}",
        "data.dataset='{truncated}/cut.png'",
        "a readable image file (OSError: image file is truncated",
    ),
    case(
        "train-idx-folder-missing",
        f"{TRAIN} --dataset fashion-mnist --data-dir {{tmp}}/no-such-folder",
        "data.data_dir='{tmp}/no-such-folder'",
        "a folder holding train-images-idx3-ubyte[.gz] for fashion-mnist",
    ),
    case(
        "train-idx-truncated",
        f"{TRAIN} --dataset fashion-mnist --data-dir {{idx_truncated}}",
        "data.data_dir='{idx_truncated}/train-images-idx3-ubyte.gz'",
        "its header promises 10 x 28 x 28 = 7840 bytes of data, and it holds 100",
    ),
    case(
        "train-idx-corrupt-gzip",
        f"{TRAIN} --dataset mnist --data-dir {{idx_corrupt}}",
        "data.data_dir='{idx_corrupt}/train-images-idx3-ubyte.gz'",
        "its gzip stream is corrupt or cut short",
    ),
    case(
        "train-idx-bad-magic",
        f"{TRAIN} --dataset fashion-mnist --data-dir {{idx_png}}",
        "data.data_dir='{idx_png}/train-images-idx3-ubyte'",
        "whose magic number starts 0x000008 (this one is 0x89504e47)",
    ),
    case(
        "train-idx-not-images",
        f"{TRAIN} --dataset fashion-mnist --data-dir {{idx_labels}}",
        "data.data_dir='{idx_labels}/train-images-idx3-ubyte'",
        "an IDX file of images, N x H x W (this one is (10,))",
    ),
    # ---- the run directory
    case(
        "train-out-is-a-file",
        f"{TRAIN} --out {{afile}}",
        "argument --out: '{afile}' is a file",
        "give a directory for the run",
    ),
    case(
        "train-out-under-a-file",
        f"{TRAIN} --out {{afile}}/run",
        "'{afile}/run' is under the file '{afile}'",
        "give a directory for the run",
    ),
    case(
        "train-out-holds-another-run",
        f"{TRAIN} --backend torch --out {{other_run}}",
        "--out='{other_run}'",
        "a directory for a mnist28 run on torch; it holds a dcgan64 run on jax",
    ),
    case(
        "train-out-holds-other-files",
        f"{TRAIN} --out {{texts}}",
        "--out='{texts}'",
        "a new or empty directory (this one holds other files)",
    ),
    case(
        "train-out-holds-this-run",
        f"{TRAIN} --backend torch --out {{this_run}}",
        "--out='{this_run}'",
        "a new directory, or --resume to continue the run it holds",
    ),
    case(
        "train-resume-out-missing",
        "train --resume --out {tmp}/no-such-run",
        "--out='{tmp}/no-such-run'",
        "a run directory to resume (it has no run.json)",
    ),
    case(
        "train-resume-out-not-a-run",
        "train --resume --out {texts}",
        "--out='{texts}'",
        "a run directory to resume (it has no run.json)",
    ),
    case(
        "train-resume-default-out",  # runs/PRESET-BACKEND in the working directory, which has none
        "train --resume",
        "--out='runs/dcgan64-torch'",
        "a run directory to resume",
    ),
    case(
        "train-resume-on-another-backend",
        "train --resume --out {this_run} --backend jax",
        "--out='{this_run}'",
        "a directory for a mnist28 run on jax; it holds a mnist28 run on torch",
    ),
    case(
        "train-resume-run-json-not-json",
        "train --resume --out {run_not_json}",
        "--out='{run_not_json}/run.json'",
        "a run directory whose run.json is a JSON object naming the run's preset and backend (it is not JSON: ",
    ),
    case(
        "train-resume-run-json-a-list",
        "train --resume --out {run_list}",
        "--out='{run_list}/run.json'",
        "a JSON object naming the run's preset and backend (it holds a list)",
    ),
    case(
        "train-out-run-json-a-list",
        f"{TRAIN} --out {{run_list}}",
        "--out='{run_list}/run.json'",
        "a JSON object naming the run's preset and backend (it holds a list)",
    ),
    # ---- more than the machine's memory, refused before any of it is allocated
    case(
        "train-model-larger-than-memory",
        f"{TRAIN} --set model.ngf=40000",
        "model='mnist28 with latent_dim=300 ngf=40000 ndf=4'",
        "what fits in this machine's",
    ),
    case(
        "sample-n-larger-than-memory",
        "sample --checkpoint {ckpt} --n 300000000 --out {tmp}/grid.png",
        "--n=300000000",
        "of them would fit",
    ),
    case("eval-n-larger-than-memory", "eval --checkpoint {ckpt} --n 300000000", "--n=300000000", "of them would fit"),
    # ---- training options
    case("train-steps-zero", f"{TRAIN} --steps 0", "argument --steps: 0", "is not a positive integer"),
    case(
        "train-steps-and-epochs",
        f"{TRAIN} --steps 3 --epochs 2",
        "argument --epochs",
        "not allowed with argument --steps",
    ),
    case(
        "train-keep-every-negative",
        f"{TRAIN} --keep-every -3",
        "argument --keep-every: -3",
        "is not a non-negative integer",
    ),
    case("train-eval-n-below-minimum", f"{TRAIN} --eval-every 1 --eval-n 3", "--eval-n=3", "at least 7"),
    case(
        "train-eval-of-another-dataset",
        f"{TRAIN} --eval-every 1",
        "data.dataset='fake'",
        "fashion-mnist: FD (Fashion-MNIST features) compares samples with Fashion-MNIST's test set",
    ),
    case("train-unrecognized-argument", f"{TRAIN} --bogus", "unrecognized arguments: --bogus", "dcgan train --help"),
    case("command-unknown", "trian", "'trian'", "sample"),
    case("command-missing", "", "required: command", "dcgan --help"),
    # ---- dcgan sample
    case(
        "sample-noise-wrong-width",
        "sample --checkpoint {ckpt} --noise {noise_wide} --out {tmp}/grid.png",
        "--noise='{noise_wide} of shape (2, 7)'",
        "a .npy file of shape (n, 300)",
    ),
    case(
        "sample-noise-wrong-rank",
        "sample --checkpoint {ckpt} --noise {noise_flat} --out {tmp}/grid.png",
        "--noise='{noise_flat} of shape (300,)'",
        "a .npy file of shape (n, 300)",
    ),
    case(
        "sample-noise-strings",
        "sample --checkpoint {ckpt} --noise {noise_text} --out {tmp}/grid.png",
        "--noise='{noise_text} of dtype <U3'",
        "real numbers",
    ),
    case(
        "sample-noise-complex",
        "sample --checkpoint {ckpt} --noise {noise_complex} --out {tmp}/grid.png",
        "--noise='{noise_complex} of dtype complex64'",
        "real numbers",
    ),
    case(
        "sample-noise-not-finite",
        "sample --checkpoint {ckpt} --noise {noise_nan} --out {tmp}/grid.png",
        "--noise='{noise_nan} with NaN or infinite values'",
        "finite numbers",
    ),
    case(
        "sample-noise-pickled-objects",  # refused unread: unpickling would create {tmp}/unpickled
        "sample --checkpoint {ckpt} --noise {noise_pickled} --out {tmp}/grid.png",
        "--noise='{noise_pickled}'",
        "a .npy file of shape (n, 300)",
    ),
    case(
        "sample-noise-not-npy",
        "sample --checkpoint {ckpt} --noise {noise_csv} --out {tmp}/grid.png",
        "--noise='{noise_csv}'",
        "(n, 300): n latent vectors of latent_dim 300 for preset mnist28 (this file is not in .npy format)",
    ),
    case(
        "sample-noise-missing",
        "sample --checkpoint {ckpt} --noise {tmp}/z.npy --out {tmp}/grid.png",
        "--noise='{tmp}/z.npy'",
        "an existing file",
    ),
    case(
        "sample-n-not-the-noise-files",
        "sample --checkpoint {ckpt} --noise {noise_two} --n 5 --out {tmp}/grid.png",
        "--n=5",
        "2, the number of vectors in",
    ),
    case(
        "sample-out-not-an-image",
        "sample --checkpoint {ckpt} --out {tmp}/grid.txt",
        "--out='{tmp}/grid.txt'",
        "an image file name such as samples.png",
    ),
    case(
        "sample-npz-a-directory",
        "sample --checkpoint {ckpt} --npz {empty} --out {tmp}/grid.png",
        "argument --npz: '{empty}' is a directory",
        "give the name of the file to write",
    ),
    case(
        "sample-checkpoint-missing",
        "sample --checkpoint {tmp}/none.safetensors --out {tmp}/grid.png",
        "--checkpoint='{tmp}/none.safetensors'",
        "an existing checkpoint file or run directory",
    ),
    case("sample-checkpoint-not-given", "sample", "required: --checkpoint", "dcgan sample --help"),
    case(
        "sample-seed-past-the-largest",
        "sample --checkpoint {ckpt} --seed 1000001",
        "argument --seed: 1000001",
        "is not a non-negative integer up to 1000000",
    ),
    case(
        "sample-n-past-int64",
        "sample --checkpoint {ckpt} --n 99999999999999999999",
        "argument --n: 99999999999999999999",
        "is not a positive integer up to 2147483647",
    ),
    case(
        "sample-seed-negative",
        "sample --checkpoint {ckpt} --seed -5",
        "argument --seed: -5",
        "is not a non-negative integer",
    ),
    # ---- dcgan convert
    case(
        "convert-netg-not-a-state-dict",
        "convert --from-pytorch-examples --netG {pth_garbage} --out {tmp}/model.safetensors",
        "--netG='{pth_garbage}'",
        "a state_dict of tensors as torch.save(netG.state_dict()) writes it",
    ),
    case(
        "convert-netg-random-bytes",
        "convert --from-pytorch-examples --netG {pth_random} --out {tmp}/model.safetensors",
        "--netG='{pth_random}'",
        "this is none of those formats (torch.save's zip archive or pickle, safetensors): it starts with the bytes "
        "5f 82 c2 d9",
    ),
    case(
        "convert-netg-empty",
        "convert --from-pytorch-examples --netG {pth_empty} --out {tmp}/model.safetensors",
        "--netG='{pth_empty}'",
        "this file is empty",
    ),
    case(
        "convert-netg-cut-short",
        "convert --from-pytorch-examples --netG {pth_cut} --out {tmp}/model.safetensors",
        "--netG='{pth_cut}'",
        "this is a zip archive cut short or corrupt",
    ),
    case(
        "convert-netg-safetensors-unreadable",
        "convert --from-pytorch-examples --netG {netg_safetensors} --out {tmp}/model.safetensors",
        "--netG='{netg_safetensors}'",
        "or a .safetensors file of the same tensors; this is not a readable safetensors file (",
    ),
    case(
        "convert-netg-foreign-keys",
        "convert --from-pytorch-examples --netG {pth_keys} --out {tmp}/model.safetensors",
        "key 'fc.weight'",
        "pytorch/examples DCGAN keys main.<i>.<weight|bias",
    ),
    case(
        "convert-netg-shapes-do-not-fit",
        "convert --from-pytorch-examples --netG {pth_shapes} --out {tmp}/model.safetensors",
        "--netG='main.0.weight (3, 3)'",
        "generator.convt1.weight of shape (100, 512, 4, 4) for preset dcgan64",
    ),
    case(
        "convert-netg-nan",  # a network whose training diverged
        "convert --from-pytorch-examples --netG {pth_nan} --out {tmp}/model.safetensors",
        "--netG=\"{pth_nan} key 'main.1.weight' holding 2 NaN values\"",
        "finite weights",
    ),
    case(
        "convert-netg-integers",
        "convert --from-pytorch-examples --netG {pth_ints} --out {tmp}/model.safetensors",
        "--netG=\"{pth_ints} key 'main.0.weight' of dtype int32\"",
        "float tensors",
    ),
    case(
        "convert-netg-past-float32",
        "convert --from-pytorch-examples --netG {pth_huge} --out {tmp}/model.safetensors",
        "key 'main.0.weight' holding 3 values past float32's range",
        "weights that fit float32",
    ),
    case(
        "convert-unverified-with-examples",
        "convert --from-pytorch-examples --netG {pth_keys} --unverified --out {tmp}/model.safetensors",
        "--unverified=True",
        "used only with --checkpoint",
    ),
    case(
        "convert-netg-missing",
        "convert --from-pytorch-examples --netG {tmp}/netG.pth --out {tmp}/model.safetensors",
        "--netG='{tmp}/netG.pth'",
        "an existing .pth file",
    ),
    case(
        "convert-examples-out-not-safetensors",
        "convert --from-pytorch-examples --netG {pth_keys} --out {tmp}/model",
        "--out='{tmp}/model'",
        "a .safetensors file name",
    ),
    case(
        "convert-examples-flag-without-examples",
        "convert --checkpoint {ckpt} --backend torch --ngf 8 --out {tmp}/x.safetensors",
        "--ngf=8",
        "used only with --from-pytorch-examples",
    ),
    case(
        "convert-backend-not-given",
        "convert --checkpoint {ckpt} --out {tmp}/x.safetensors",
        "--backend=None",
        "the backend to convert through: one of torch, jax",
    ),
    case(
        "convert-checkpoint-missing",
        "convert --checkpoint {tmp}/none.safetensors --backend torch --out {tmp}/x.safetensors",
        "--checkpoint='{tmp}/none.safetensors'",
        "an existing checkpoint file or run directory",
    ),
    case(
        "convert-out-is-a-file",
        "convert --checkpoint {ckpt} --backend torch --out {afile}",
        "--out='{afile}'",
        "a new or empty directory for the run, or a .safetensors file name",
    ),
    # ---- dcgan eval
    case(
        "eval-features-unknown",
        "eval --checkpoint {ckpt} --features inception-v4 --n 10",
        "--features='inception-v4'",
        "one of fashion-mnist, inception",
    ),
    case(
        "eval-inception-without-weights",
        "eval --checkpoint {ckpt} --features inception --n 10",
        "--weights=None",
        "with --features inception, a local weight file",
    ),
    case(
        "eval-weights-missing",
        "eval --checkpoint {ckpt} --weights {tmp}/none.safetensors --n 10",
        "--weights='{tmp}/none.safetensors'",
        "an existing feature-network weight file",
    ),
    case("eval-n-below-minimum", "eval --checkpoint {ckpt} --n 3", "--n=3", "at least 7"),
    case(
        "eval-checkpoint-missing",
        "eval --checkpoint {tmp}/none.safetensors --n 10",
        "--checkpoint='{tmp}/none.safetensors'",
        "an existing checkpoint file or run directory",
    ),
    case(
        "eval-model-of-another-dataset",
        "eval --checkpoint {fake_ckpt} --n 10",
        "data.dataset='fake'",
        "for another dataset: dcgan eval --features inception --weights FILE",
    ),
    case(
        "eval-out-without-train-features",
        "eval --checkpoint {ckpt} --out {tmp}/weights.safetensors",
        "--out='{tmp}/weights.safetensors'",
        "used only with `dcgan eval train-features`",
    ),
    case("eval-action-unknown", "eval train-feature", "'train-feature'", "train-features"),
    # ---- dcgan parity and dcgan bench options
    case(
        "parity-checkpoint-with-preset",
        "parity --checkpoint {ckpt} --preset mnist28",
        "--checkpoint='{ckpt}'",
        "a checkpoint alone: its config is the one it was saved with",
    ),
    case("parity-batch-size-zero", "parity --batch-size 0", "argument --batch-size: 0", "is not a positive integer"),
    case("parity-seed-negative", "parity --seed -2", "argument --seed: -2", "is not a non-negative integer"),
    case(
        "eval-seed-past-int64",
        "eval --checkpoint {ckpt} --seed 99999999999999999999",
        "argument --seed: 99999999999999999999",
        "is not a non-negative integer up to 1000000",
    ),
    case("bench-batch-size-zero", "bench --batch-size 64 0", "argument --batch-size: 0", "is not a positive integer"),
    case("bench-warmup-negative", "bench --warmup -1", "argument --warmup: -1", "is not a non-negative integer"),
    case("bench-repeats-not-a-number", "bench --repeats many", "argument --repeats: 'many'", "not a positive integer"),
]


def dcgan(argv: list[str], capsys) -> tuple[int, str, str]:
    """`dcgan ARGV` in this process: its exit code (argparse's SystemExit's too), stdout and stderr."""
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, out: str, err: str, value: str, valid: str) -> None:
    assert "Traceback" not in err + out, err
    lines = err.splitlines()
    assert code == 2 and 1 <= len(lines) <= 2, f"exit {code}, stderr:\n{err}"
    assert value in lines[0] and valid in err, err
    if len(lines) == 2:  # argparse's error, then where the command's options are listed
        assert lines[0].startswith("dcgan") and lines[1].startswith("run 'dcgan") and "--help" in lines[1], err
    assert out == "", out


@pytest.mark.parametrize("argv, value, valid, patch", CASES)
def test_bad_input_is_named_in_one_sentence_and_nothing_is_written(
    argv, value, valid, patch, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    inputs = Inputs(tmp_path)
    args = [token.format_map(inputs) for token in argv.split()]
    if patch is not None:
        patch(monkeypatch)
    before = snapshot(tmp_path)
    code, out, err = dcgan(args, capsys)
    assert_refused(code, out, err, value.format_map(inputs), valid.format_map(inputs))
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "dataset, valid",
    [
        pytest.param("tfds:no_such_dataset", "a TensorFlow Datasets name it can load", id="tfds-name-unknown"),
        pytest.param(
            "torchvision:MNIST",
            "which needs its files there or a download (Error downloading train-images-idx3-ubyte.gz:",
            id="torchvision-download-offline",
        ),
    ],
)
def test_a_catalogue_dataset_it_cannot_have_is_one_line(dataset, valid, tmp_path_factory, monkeypatch, capsys):
    """Through the catalogue's child process (common/catalogue.py), with every download sent
    to a closed local port. The downloads folder is outside the snapshotted one: torchvision
    makes its empty folders there before it tries, and no file may appear in it."""
    work, downloads = tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("downloads")
    monkeypatch.chdir(work)
    _offline(monkeypatch)
    args = f"{TRAIN} --dataset {dataset} --data-dir {downloads} --out {work}/run".split()
    code, out, err = dcgan(args, capsys)
    assert_refused(code, out, err, f"data.dataset='{dataset}'", valid)
    assert len(err) < 600, err  # the reason, not tfds's list of every dataset it knows
    assert snapshot(work) == {} and not [p for p in downloads.rglob("*") if p.is_file()]

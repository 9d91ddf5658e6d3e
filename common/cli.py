"""The `dcgan` command. Bad input ends in one line naming the bad value and what is valid
(argparse's errors in two: the second says where the options are listed), never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import NoReturn

from common.backends import BACKENDS, COMPILERS, PRECISIONS, TRAINING_PRECISIONS, load_backend
from common.config import load_toml, parse_set
from common.errors import ConfigError, RunStopped
from common.presets import PRESETS, make_config

# Subcommands that packages above `common` add to `dcgan` (pyproject.toml's entry points):
# each is a function that takes the subparsers and adds its own, with `run` set.
# benchmarks/ adds `dcgan bench` this way, so that `common` never imports it.
COMMAND_PLUGINS = "dcgan.commands"


def _config_args(parser: argparse.ArgumentParser, preset_help: str = "(default dcgan64)") -> None:
    parser.add_argument("--preset", help="one of: " + ", ".join(PRESETS) + " " + preset_help)
    parser.add_argument("--config", metavar="FILE", help="a TOML file of overrides, e.g. [model] ngf = 32")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one value, e.g. --set model.ngf=32 (repeatable; applied after --config)",
    )


def _overrides(args: argparse.Namespace, shortcuts: dict | None = None) -> dict:
    """--config file, then a command's shortcut flags that were given, then --set: later wins."""
    overrides = load_toml(args.config) if args.config else {}
    overrides.update({k: v for k, v in (shortcuts or {}).items() if v is not None})
    overrides.update(parse_set(args.set))
    return overrides


def cmd_describe(args: argparse.Namespace) -> None:
    from common.describe import describe, format_table

    config = make_config(args.preset or "dcgan64", _overrides(args))
    backend = load_backend(args.backend) if args.backend else None
    description = describe(config, backend)
    print(
        json.dumps(description, indent=1) if args.json else format_table(description), end="" if not args.json else "\n"
    )


def cmd_train(args: argparse.Namespace) -> int | None:
    from common.backends import join, launcher, processes
    from common.rundir import RunDir
    from common.train import RunOptions, train

    identity = RunDir(args.out).identity() if args.resume and args.out else None
    if identity:  # --resume needs no --preset/--backend
        args.preset, args.backend = args.preset or identity[0], args.backend or identity[1]
    args.preset, args.backend = args.preset or "dcgan64", args.backend or "torch"
    out = Path(args.out or f"runs/{args.preset}-{args.backend}")
    overrides = _overrides(
        args,
        {
            "optim.batch_size": args.batch_size,
            "seed": args.seed,
            "data.dataset": args.dataset,
            "data.data_dir": args.data_dir,
        },
    )
    run = RunDir(out)
    if args.resume and run.config_file.exists() and run.identity() == (args.preset, args.backend):
        config = run.saved_config(overrides)
    else:  # a new run; or a mismatch, which train() refuses by name
        config = make_config(args.preset, overrides)
    devices = args.devices or (run.saved_devices() if args.resume else 1)
    count = processes(args.backend, devices, args.processes, args.process_id)
    if args.coordinator and args.process_id is None:
        raise ConfigError("--coordinator", args.coordinator, "given with --process-id (each process's own)")
    if args.process_id is not None:  # one of the processes, started by a launcher or by hand
        join(args.backend, devices, count, args.process_id, args.coordinator)
    start = launcher(args.backend, count)
    if start is not None:  # several processes (torch's DDP; jax's --processes): this command again, in each
        return start(devices, count, [*args.argv, *([] if args.devices else ["--devices", str(devices)])], config)
    options = RunOptions(
        steps=args.steps,
        epochs=args.epochs,
        resume=args.resume,
        compile=args.compile,
        precision=args.precision,
        sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every,
        keep_every=args.keep_every,
        progress=not args.no_progress,
        eval_every=args.eval_every,
        eval_n=args.eval_n,
        tensorboard=args.tensorboard,
        devices=args.devices,
    )
    records = train(config, args.backend, out, options)
    if records:
        last = records[-1]
        print(
            f"step {last['step']}: loss_D {last['loss_D']:.3f} loss_G {last['loss_G']:.3f}; "
            f"samples, loss.png and progress.gif in {out}"
        )


def cmd_sample(args: argparse.Namespace) -> None:
    from common.sample import sample

    sample(
        Path(args.checkpoint),
        args.n,
        Path(args.out),
        seed=args.seed,
        backend=args.backend,
        npz=Path(args.npz) if args.npz else None,
        noise=Path(args.noise) if args.noise else None,
    )
    print(f"wrote {args.out}" + (f" and {args.npz}" if args.npz else ""))


def cmd_convert(args: argparse.Namespace) -> None:
    from common.convert import EXAMPLES_FLAGS, convert_checkpoint, from_pytorch_examples

    examples_only = {
        "--netG": args.netG,
        "--netD": args.netD,
        "--nz": args.nz,
        "--ngf": args.ngf,
        "--ndf": args.ndf,
        "--imageSize": args.imageSize,
        "--preset": args.preset,
        "--config": args.config,
        "--set": args.set or None,
    }
    if args.from_pytorch_examples:
        if args.checkpoint:
            raise ConfigError("--checkpoint", args.checkpoint, "absent with --from-pytorch-examples (give --netG)")
        if not args.netG:
            raise ConfigError("--netG", None, "the generator's .pth file (a state_dict from pytorch/examples' dcgan)")
        if args.backend:
            raise ConfigError(
                "--backend",
                args.backend,
                "absent with --from-pytorch-examples (it writes a canonical "
                "file; convert that with --checkpoint FILE --backend B)",
            )
        flags = {key: getattr(args, flag) for flag, key in EXAMPLES_FLAGS.items()}
        config = make_config(args.preset or "dcgan64", _overrides(args, flags))
        _, message = from_pytorch_examples(
            Path(args.netG), Path(args.netD) if args.netD else None, config, Path(args.out)
        )
        print(message)
        return
    given = [flag for flag, value in examples_only.items() if value]
    if given:
        raise ConfigError(
            given[0],
            getattr(args, given[0].lstrip("-"), None),
            "used only with --from-pytorch-examples (a checkpoint carries its own config)",
        )
    if not args.checkpoint:
        raise ConfigError("--checkpoint", None, "a checkpoint file or run directory (or --from-pytorch-examples)")
    if not args.backend:
        raise ConfigError("--backend", None, "the backend to convert through: one of " + ", ".join(BACKENDS))
    file = convert_checkpoint(Path(args.checkpoint), args.backend, Path(args.out))
    what = (
        "canonical checkpoint"
        if Path(args.out).suffix == ".safetensors"
        else f"run directory (continue it with: dcgan train --resume --out {args.out} --steps N)"
    )
    print(f"wrote {file}: a {args.backend} {what}")


def cmd_eval(args: argparse.Namespace) -> None:
    from common.quality.report import run_eval

    run_eval(args)


def cmd_parity(args: argparse.Namespace) -> int:
    from common.parity.command import run_command

    return run_command(args, _overrides)


def positive_int(text: str) -> int:
    """argparse's type for counts: a positive integer, or a one-line usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    """argparse's type for seeds (numpy's generators take no negative one) and counts where 0
    means none."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a non-negative integer")
    return value


def run_directory(text: str) -> str:
    """argparse's type for a run's --out: a directory, or a path where one can be made. A file
    there, or on the way there, is refused before any data or framework is loaded."""
    path = Path(text)
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        where = f"{text!r} is a file" if blocking == path else f"{text!r} is under the file {str(blocking)!r}"
        raise argparse.ArgumentTypeError(f"{where}: give a directory for the run (new or empty, or a run to --resume)")
    return text


class CommandParser(argparse.ArgumentParser):
    """`dcgan`'s parser and its commands' (subparsers take their parent's class, so plugins
    such as `dcgan bench` get it too). A bad argument is two lines, the error and where the
    options are listed: argparse's usage block would bury the error under every option."""

    commands = None  # the subparsers action, once add_subparsers has made it

    def add_subparsers(self, **kwargs):
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def parse_args(self, args=None, namespace=None):
        """argparse's, but an unknown argument is reported by the command it was given to,
        whose --help lists the ones it takes."""
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self.commands.choices.get(getattr(namespace, self.commands.dest, None)) if self.commands else None
            (command or self).error("unrecognized arguments: " + " ".join(extras))
        return namespace

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nrun '{self.prog} --help' for the options\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="dcgan", description="One DCGAN in PyTorch, JAX/Flax and Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True)

    describe = commands.add_parser("describe", help="print each network's layers, output shapes and parameter counts")
    _config_args(describe)
    describe.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="read the figures off the model this backend builds (default: the framework-free spec)",
    )
    describe.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    describe.set_defaults(run=cmd_describe)

    train = commands.add_parser("train", help="train a preset on one backend, with samples, metrics and checkpoints")
    train.add_argument("--backend", choices=list(BACKENDS), help="default torch (with --resume: the run's)")
    _config_args(train, "(default dcgan64; with --resume: the run's)")
    train.add_argument(
        "--dataset",
        help="fashion-mnist, mnist, fake, a folder of images, tfds:NAME or torchvision:NAME (sets data.dataset)",
    )
    train.add_argument("--data-dir", help="where the dataset's files are, or go (sets data.data_dir)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, help="the run's total number of iterations")
    length.add_argument("--epochs", type=positive_int, help="passes over the dataset (default 1)")
    train.add_argument("--batch-size", type=positive_int, help="sets optim.batch_size")
    train.add_argument("--seed", type=non_negative_int, help="sets seed: weights, data order and noise all follow it")
    train.add_argument("--out", type=run_directory, help="the run directory (default runs/PRESET-BACKEND)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    compilers = sorted({c for options in COMPILERS.values() for c in options})
    train.add_argument(
        "--compile",
        nargs="?",
        const="default",
        choices=compilers,
        metavar="MODE",
        help="the backend's optional compiler: torch.compile (torch; MODE default, max-autotune, "
        "...), xla (keras-tensorflow)",
    )
    train.add_argument(
        "--precision",
        choices=[p for p in TRAINING_PRECISIONS if p != "float64"],
        default="float32",
        help="float32 (default); bf16: mixed precision; tf32: NVIDIA GPUs only",
    )
    train.add_argument(
        "--sample-every",
        type=positive_int,
        help="iterations between sample grids (default: each epoch, at least 10 a run)",
    )
    train.add_argument(
        "--checkpoint-every", type=positive_int, default=500, help="iterations between checkpoints (500)"
    )
    train.add_argument(
        "--keep-every",
        type=non_negative_int,
        default=5000,
        help="keep checkpoints at multiples of this besides the latest (5000; 0: latest only)",
    )
    train.add_argument(
        "--eval-every",
        type=positive_int,
        help="iterations between scores (FD (Fashion-MNIST features), KID, PRDC, classes) in metrics.jsonl",
    )
    train.add_argument("--eval-n", type=positive_int, default=10_000, help="images each score uses (10000)")
    train.add_argument(
        "--devices",
        type=positive_int,
        help="data-parallel devices (default 1, or the run's on --resume): the global batch is N x --batch-size, "
        "split over N devices by the framework's own engine (torch: one process per device, under torchrun)",
    )
    train.add_argument(
        "--processes",
        type=positive_int,
        help="processes the devices are spread over, each holding devices / processes: torch's DDP runs one "
        "per device; jax 1 by default, or several joined by jax.distributed, started on this host by dcgan",
    )
    train.add_argument(
        "--process-id",
        type=non_negative_int,
        help="this is process I of --processes, started by hand on several hosts (jax; "
        "jax_impl/distributed.py shows the commands); without it dcgan starts the processes here",
    )
    train.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="with --process-id: process 0's address, which every process can reach "
        "(default: JAX_COORDINATOR_ADDRESS, or what JAX detects under Slurm, Open MPI or Kubernetes)",
    )
    train.add_argument("--tensorboard", action="store_true", help="also write TensorBoard events to OUT/tensorboard")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(run=cmd_train)

    sample = commands.add_parser("sample", help="draw a grid of images from a checkpoint, G in eval mode")
    sample.add_argument("--checkpoint", required=True, help="a checkpoint file, or a run directory (its latest)")
    sample.add_argument(
        "--n", type=positive_int, help="how many images (64; with --noise: the file's); --npz holds them all"
    )
    sample.add_argument(
        "--out", default="samples.png", help="the grid PNG to write: the first 256 images at most (16 x 16)"
    )
    sample.add_argument("--seed", type=non_negative_int, default=0, help="seed of the latent vectors")
    sample.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="run G on this backend: any opens any checkpoint "
        "(default: the one that wrote it; torch for a converted pytorch/examples model)",
    )
    sample.add_argument(
        "--noise",
        metavar="FILE.npy",
        help="latent vectors to use, shape (n, latent_dim), instead of drawing them from --seed",
    )
    sample.add_argument(
        "--npz", help="also write all n images as arrays: images (n, C, H, W) in [-1, 1], and z (n, latent_dim)"
    )
    sample.set_defaults(run=cmd_sample)

    convert = commands.add_parser(
        "convert",
        help="a checkpoint through another backend, or pytorch/examples DCGAN weights, to the canonical format",
    )
    convert.add_argument("--checkpoint", help="a checkpoint file, or a run directory (its latest)")
    convert.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="the backend to import the state into and export it from (with --checkpoint)",
    )
    convert.add_argument(
        "--out",
        required=True,
        help="FILE.safetensors: one canonical checkpoint; otherwise a new "
        "run directory for --backend that `dcgan train --resume --out DIR` continues",
    )
    convert.add_argument(
        "--from-pytorch-examples",
        action="store_true",
        help="read netG.pth (and netD.pth) saved by pytorch/examples' dcgan/main.py",
    )
    convert.add_argument("--netG", metavar="FILE.pth", help="the generator's state_dict (pytorch/examples)")
    convert.add_argument(
        "--netD",
        metavar="FILE.pth",
        help="the discriminator's state_dict (pytorch/examples); without it D is the torch backend's initialisation",
    )
    _config_args(convert, "(default dcgan64; with --from-pytorch-examples)")
    convert.add_argument("--nz", type=positive_int, help="pytorch/examples' --nz (sets model.latent_dim)")
    convert.add_argument("--ngf", type=positive_int, help="pytorch/examples' --ngf (sets model.ngf)")
    convert.add_argument("--ndf", type=positive_int, help="pytorch/examples' --ndf (sets model.ndf)")
    convert.add_argument("--imageSize", type=positive_int, help="pytorch/examples' --imageSize (sets model.image_size)")
    convert.set_defaults(run=cmd_convert)
    evaluate = commands.add_parser(
        "eval",
        help="score a checkpoint's samples: FD (Fashion-MNIST features) with its interval, KID, "
        "precision / recall / density / coverage, and the classes drawn",
    )
    evaluate.add_argument(
        "action",
        nargs="?",
        choices=["train-features"],
        help="train-features: train the feature network (and cache it, or write it to --out)",
    )
    evaluate.add_argument("--checkpoint", help="a checkpoint file, or a run directory (its latest)")
    evaluate.add_argument(
        "--backend", choices=list(BACKENDS), help="sample on this backend (default: the one that wrote it)"
    )
    evaluate.add_argument("--n", type=positive_int, default=10_000, help="generated images scored (10000)")
    evaluate.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the latent vectors, subsets and bootstrap"
    )
    evaluate.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    evaluate.add_argument(
        "--features",
        default="fashion-mnist",
        help="fashion-mnist (the suite's own network, for models of Fashion-MNIST; the default) or inception "
        "(FID, for any dataset; needs --weights)",
    )
    evaluate.add_argument(
        "--weights",
        metavar="FILE",
        help="the feature network's weights (fashion-mnist: default the suite's); with --features inception "
        "the local Inception-v3 file, torch-fidelity's weights-inception-2015-12-05-6726825d.pth",
    )
    evaluate.add_argument("--out", metavar="FILE", help="with train-features: where to write the weights")
    evaluate.add_argument(
        "--epochs", type=positive_int, default=10, help="with train-features: passes over the training set (10)"
    )
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.set_defaults(run=cmd_eval)
    parity = commands.add_parser(
        "parity",
        help="run the same weights and inputs through every backend and compare "
        "each pair: forward, gradients, Adam, training iterations (common/parity/)",
    )
    _config_args(parity)
    parity.add_argument(
        "--checkpoint", help="compare on these weights (a checkpoint file or run directory) instead of random ones"
    )
    parity.add_argument("--backends", nargs="+", choices=list(BACKENDS), help="default: all five")
    parity.add_argument("--precision", nargs="+", choices=list(PRECISIONS), default=list(PRECISIONS))
    parity.add_argument("--batch-size", type=positive_int, default=4, help="examples per batch (4)")
    parity.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random weights and inputs")
    parity.add_argument("--markdown", help="also write the table to this file")
    parity.set_defaults(run=cmd_parity)
    for plugin in sorted(entry_points(group=COMMAND_PLUGINS), key=lambda p: p.name):
        plugin.load()(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the table
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a launcher runs again in each process
    try:
        code = args.run(args)
    except ConfigError as err:
        print(f"dcgan: error: {err}", file=sys.stderr)
        return 2
    except RunStopped as err:  # diverged, a failed save, or SIGINT/SIGTERM (common/train.py)
        print(f"dcgan: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:  # Ctrl-C outside a training loop, which stops on its own terms
        print("dcgan: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())

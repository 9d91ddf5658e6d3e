"""`dcgan convert`: a checkpoint through another backend (to a canonical file, or to a run
directory that backend continues), or pytorch/examples' DCGAN weights to a canonical file."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.backends import BACKENDS
from common.cli import config_args, config_overrides, positive_int
from common.convert import EXAMPLES_FLAGS, convert_checkpoint, from_pytorch_examples
from common.errors import ConfigError
from common.presets import make_config


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "convert",
        help="a checkpoint through another backend, or pytorch/examples DCGAN weights, to the canonical format",
    )
    parser.add_argument("--checkpoint", help="a checkpoint file, or a run directory (its latest)")
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="the backend to import the state into and export it from (with --checkpoint)",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="FILE.safetensors: one canonical checkpoint; otherwise a new "
        "run directory for --backend that `dcgan train --resume --out DIR` continues",
    )
    parser.add_argument(
        "--unverified",
        action="store_true",
        help="with --checkpoint: open a file of the first format, dcgan-suite/1, which carries no hash of its "
        "tensors, to re-save it in the current one, which does (only for a file you trust; files of the "
        "current format are verified whatever this says)",
    )
    parser.add_argument(
        "--from-pytorch-examples",
        action="store_true",
        help="read netG.pth (and netD.pth) saved by pytorch/examples' dcgan/main.py",
    )
    parser.add_argument("--netG", metavar="FILE.pth", help="the generator's state_dict (pytorch/examples)")
    parser.add_argument(
        "--netD",
        metavar="FILE.pth",
        help="the discriminator's state_dict (pytorch/examples); without it D is the torch backend's initialisation",
    )
    config_args(parser, "(default dcgan64; with --from-pytorch-examples)")
    for flag, key in EXAMPLES_FLAGS.items():  # pytorch/examples' own flags, which say how its networks were built
        parser.add_argument(f"--{flag}", type=positive_int, help=f"pytorch/examples' --{flag} (sets {key})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.from_pytorch_examples:
        return _from_pytorch_examples(args)
    examples_only = {
        "--netG": args.netG,
        "--netD": args.netD,
        **{f"--{flag}": getattr(args, flag) for flag in EXAMPLES_FLAGS},
        "--preset": args.preset,
        "--config": args.config,
        "--set": args.set or None,
    }
    given = next((flag for flag, value in examples_only.items() if value), None)
    if given:
        raise ConfigError(
            given, examples_only[given], "used only with --from-pytorch-examples (a checkpoint carries its own config)"
        )
    if not args.checkpoint:
        raise ConfigError("--checkpoint", None, "a checkpoint file or run directory (or --from-pytorch-examples)")
    if not args.backend:
        raise ConfigError("--backend", None, "the backend to convert through: one of " + ", ".join(BACKENDS))
    return _through_backend(Path(args.checkpoint), args.backend, Path(args.out), args.unverified)


def _through_backend(checkpoint: Path, backend: str, out: Path, unverified: bool) -> int:
    file = convert_checkpoint(checkpoint, backend, out, unverified)
    what = (
        "canonical checkpoint"
        if out.suffix == ".safetensors"
        else f"run directory (continue it with: dcgan train --resume --out {out} --steps N)"
    )
    print(f"wrote {file}: a {backend} {what}")
    return 0


def _from_pytorch_examples(args: argparse.Namespace) -> int:
    if args.checkpoint:
        raise ConfigError("--checkpoint", args.checkpoint, "absent with --from-pytorch-examples (give --netG)")
    if args.unverified:
        raise ConfigError("--unverified", True, "used only with --checkpoint, to re-save a dcgan-suite/1 file")
    if not args.netG:
        raise ConfigError("--netG", None, "the generator's .pth file (a state_dict from pytorch/examples' dcgan)")
    if args.backend:
        raise ConfigError(
            "--backend",
            args.backend,
            "absent with --from-pytorch-examples (it writes a canonical file; convert that with "
            "--checkpoint FILE --backend B)",
        )
    flags = {key: getattr(args, flag) for flag, key in EXAMPLES_FLAGS.items()}
    config = make_config(args.preset or "dcgan64", config_overrides(args, flags))
    _, message = from_pytorch_examples(Path(args.netG), Path(args.netD) if args.netD else None, config, Path(args.out))
    print(message)
    return 0

"""`dcgan sample`: a grid of images (and, with --npz, the arrays) from a checkpoint's
generator, in eval mode, on any backend."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.algorithm import GENERATORS
from common.backends import BACKENDS
from common.cli import output_file, positive_int, seed


def add_parser(commands) -> None:
    parser = commands.add_parser("sample", help="draw a grid of images from a checkpoint, G in eval mode")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint file, or a run directory (its latest)")
    parser.add_argument(
        "--n", type=positive_int, help="how many images (64; with --noise: the file's); --npz holds them all"
    )
    parser.add_argument(
        "--out", default="samples.png", help="the grid PNG to write: the first 256 images at most (16 x 16)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of the latent vectors")
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="run G on this backend: any opens any checkpoint "
        "(default: the one that wrote it; torch for a converted pytorch/examples model)",
    )
    parser.add_argument(
        "--noise",
        metavar="FILE.npy",
        help="latent vectors to use, shape (n, latent_dim), instead of drawing them from --seed",
    )
    parser.add_argument(
        "--npz",
        type=output_file,
        help="also write all n images as arrays to this file (its name as given): images (n, C, H, W) in [-1, 1], "
        "and z (n, latent_dim)",
    )
    parser.add_argument(
        "--generator",
        choices=list(GENERATORS),
        help="ema: G's moving average (optim.ema); raw: G itself "
        "(default: the moving average where the checkpoint keeps one, else G)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from common.sample import sample

    sample(
        Path(args.checkpoint),
        args.n,
        Path(args.out),
        seed=args.seed,
        backend=args.backend,
        npz=args.npz,
        noise=Path(args.noise) if args.noise else None,
        generator=args.generator,
    )
    print(f"wrote {args.out}" + (f" and {args.npz}" if args.npz else ""))
    return 0

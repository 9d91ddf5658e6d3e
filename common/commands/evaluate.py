"""`dcgan eval`: a checkpoint's samples scored in a feature network's space (FD with its
interval, KID, precision / recall / density / coverage, the classes drawn), or, as
`dcgan eval train-features`, that network trained (common/quality/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.algorithm import GENERATORS
from common.backends import BACKENDS
from common.cli import output_file, positive_int, seed
from common.errors import ConfigError


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="score a checkpoint's samples: FD (Fashion-MNIST features) with its interval, KID, "
        "precision / recall / density / coverage, and the classes drawn",
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=["train-features"],
        help="train-features: train the feature network (and cache it, or write it to --out)",
    )
    parser.add_argument("--checkpoint", help="a checkpoint file, or a run directory (its latest)")
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        help="sample and compute the features on this backend (default: the one that wrote the checkpoint "
        "where it is installed, else the first installed one)",
    )
    parser.add_argument("--n", type=positive_int, default=10_000, help="generated images scored (10000)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the latent vectors, subsets and bootstrap")
    parser.add_argument("--json", metavar="FILE", type=output_file, help="also write the scores as JSON")
    parser.add_argument(
        "--features",
        default="fashion-mnist",
        help="fashion-mnist (the suite's own network, for models of Fashion-MNIST; the default) or inception "
        "(FID, for any dataset; needs --weights)",
    )
    parser.add_argument(
        "--weights",
        metavar="FILE",
        help="the feature network's weights (fashion-mnist: default the suite's); with --features inception "
        "the local Inception-v3 file, torch-fidelity's weights-inception-2015-12-05-6726825d.pth",
    )
    parser.add_argument(
        "--out", metavar="FILE", type=output_file, help="with train-features: where to write the weights"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=10, help="with train-features: passes over the training set (10)"
    )
    parser.add_argument(
        "--generator",
        choices=list(GENERATORS),
        help="ema: score G's moving average (optim.ema); raw: G itself "
        "(default: the moving average where the checkpoint keeps one, else G)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from common.quality import report

    progress = not args.no_progress
    if args.action == "train-features":
        report.train_feature_network(args.seed, args.out, args.epochs, progress)
        return 0
    if args.out:
        raise ConfigError("--out", str(args.out), "used only with `dcgan eval train-features` (scores go to --json)")
    if not args.checkpoint:
        raise ConfigError("--checkpoint", None, "a checkpoint file or run directory to score")
    report.score_checkpoint(
        Path(args.checkpoint),
        args.backend,
        args.n,
        args.seed,
        Path(args.weights) if args.weights else None,
        args.features,
        json_file=args.json,
        progress=progress,
        generator=args.generator,
    )
    return 0

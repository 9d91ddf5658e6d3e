"""`dcgan train`: a preset trained on one backend, with sample grids, metrics and checkpoints
in a run directory, continued with --resume; data-parallel over --devices."""

from __future__ import annotations

import argparse
from contextlib import nullcontext

from common.backends import BACKENDS, COMPILERS
from common.cli import config_args, config_overrides, host_port, non_negative_int, positive_int, run_directory, seed
from common.errors import ConfigError, RunStopped, environment_error
from common.precision import TRAINING_PRECISIONS


def add_parser(commands) -> None:
    parser = commands.add_parser("train", help="train a preset on one backend, with samples, metrics and checkpoints")
    _what_to_train(parser)
    _how_to_step(parser)
    _what_to_keep(parser)
    _data_parallel(parser)
    parser.add_argument("--tensorboard", action="store_true", help="also write TensorBoard events to OUT/tensorboard")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def _what_to_train(parser: argparse.ArgumentParser) -> None:
    """The model, the data, how long, and the run directory."""
    parser.add_argument("--backend", choices=list(BACKENDS), help="default torch (with --resume: the run's)")
    config_args(parser, "(default dcgan64; with --resume: the run's)")
    parser.add_argument(
        "--dataset",
        help="fashion-mnist, mnist, fake, a folder of images, tfds:NAME or torchvision:NAME (sets data.dataset)",
    )
    parser.add_argument("--data-dir", help="where the dataset's files are, or go (sets data.data_dir)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--steps", type=positive_int, help="the run's total number of iterations (with --resume: default the run's)"
    )
    length.add_argument(
        "--epochs", type=positive_int, help="passes over the dataset (default 1; with --resume: the run's target)"
    )
    parser.add_argument("--batch-size", type=positive_int, help="sets optim.batch_size")
    parser.add_argument("--seed", type=seed, help="sets seed: weights, data order and noise all follow it")
    parser.add_argument("--out", type=run_directory, help="the run directory (default runs/PRESET-BACKEND)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")


def _how_to_step(parser: argparse.ArgumentParser) -> None:
    """The backend's compiler and the precision of its training step."""
    parser.add_argument(
        "--compile",
        nargs="?",
        const="default",
        choices=sorted({c for options in COMPILERS.values() for c in options}),
        metavar="MODE",
        help="the backend's optional compiler: torch.compile (torch; MODE default, max-autotune, "
        "...), xla (keras-tensorflow)",
    )
    parser.add_argument(
        "--precision",
        choices=[p for p in TRAINING_PRECISIONS if p != "float64"],
        default="float32",
        help="float32 (default); bf16: mixed precision; tf32: NVIDIA GPUs only",
    )


def _what_to_keep(parser: argparse.ArgumentParser) -> None:
    """How often the loop writes a grid, a checkpoint and the scores."""
    parser.add_argument(
        "--sample-every",
        type=positive_int,
        help="iterations between sample grids (default: each epoch, at least 10 a run)",
    )
    parser.add_argument(
        "--checkpoint-every", type=positive_int, default=500, help="iterations between checkpoints (500)"
    )
    parser.add_argument(
        "--keep-every",
        type=non_negative_int,
        default=5000,
        help="keep checkpoints at multiples of this besides the latest (5000; 0: latest only)",
    )
    parser.add_argument(
        "--eval-every",
        type=positive_int,
        help="iterations between scores (FD (Fashion-MNIST features), KID, PRDC, classes) in metrics.jsonl",
    )
    parser.add_argument("--eval-n", type=positive_int, default=10_000, help="images each score uses (10000)")


def _data_parallel(parser: argparse.ArgumentParser) -> None:
    """--devices, and the processes they are spread over (common/launch.py)."""
    parser.add_argument(
        "--devices",
        type=positive_int,
        help="data-parallel devices (default 1, or the run's on --resume): the global batch is N x --batch-size, "
        "split over N devices by the framework's own engine (torch: one process per device, under torchrun)",
    )
    parser.add_argument(
        "--processes",
        type=positive_int,
        help="processes the devices are spread over, each holding devices / processes: torch's DDP runs one "
        "per device; jax 1 by default, or several joined by jax.distributed, started on this host by dcgan",
    )
    parser.add_argument(
        "--process-id",
        type=non_negative_int,
        help="this is process I of --processes, started by hand on several hosts (jax; "
        "jax_impl/distributed.py shows the commands); without it dcgan starts the processes here",
    )
    parser.add_argument(
        "--coordinator",
        type=host_port,
        metavar="HOST:PORT",
        help="with --process-id: process 0's address, which every process can reach "
        "(default: JAX_COORDINATOR_ADDRESS, or what JAX detects under Slurm, Open MPI or Kubernetes)",
    )


def run(args: argparse.Namespace) -> int:
    """Trains the run as `resolve_run` decides. The process that writes the run holds its lock
    (common/rundir.py's `RunDir.lock`): here, in one process; with several, the writer among
    them, once a launcher here has refused at once a run another process writes."""
    from common.bookkeeping import saved_so_far
    from common.launch import join, launcher, processes
    from common.memory import check_training
    from common.rundir import resolve_run
    from common.train import Finished, RunOptions, train

    shortcuts = {
        "optim.batch_size": args.batch_size,
        "seed": args.seed,
        "data.dataset": args.dataset,
        "data.data_dir": args.data_dir,
    }
    overrides = config_overrides(args, shortcuts)
    start = resolve_run(
        args.out, args.preset, args.backend, overrides, args.resume, args.devices, args.steps, args.epochs
    )
    check_training(start.config)
    count = processes(start.backend, start.devices, args.processes, args.process_id)
    if args.coordinator and args.process_id is None:
        raise ConfigError("--coordinator", args.coordinator, "given with --process-id (each process's own)")
    if args.process_id is not None:  # one of the processes, started by a launcher or by hand
        join(start.backend, start.devices, count, args.process_id, args.coordinator)
    launch = launcher(start.backend, count)
    if launch is not None:  # several processes (torch's DDP; jax's --processes): this command again, in each
        start.run.refuse_if_locked()
        argv = [*args.argv, *([] if args.devices else ["--devices", str(start.devices)])]
        return launch(start.devices, count, argv, start.config)
    options = RunOptions(
        steps=start.target.get("steps"),
        epochs=start.target.get("epochs"),
        compile=args.compile,
        precision=args.precision,
        sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every,
        keep_every=args.keep_every,
        progress=not args.no_progress,
        eval_every=args.eval_every,
        eval_n=args.eval_n,
        tensorboard=args.tensorboard,
    )
    try:
        with start.run.lock() if count == 1 else nullcontext():  # else the writer among the processes takes it
            records = train(start, options)
    except Finished as finished:
        print(f"dcgan: {finished}")
        return 0
    except Exception as err:  # what the machine refused part-way (a full disk, memory): said with what was kept
        if isinstance(err, OSError) and err.filename is None:  # a failed write() names no file: name the run's
            err.filename = str(start.run.path)
        line = environment_error(err)
        if line is None:
            raise
        raise RunStopped(f"error: {line}; {saved_so_far(start.run)}") from None
    if records:
        last = records[-1]
        print(
            f"step {last['step']}: loss_D {last['loss_D']:.3f} loss_G {last['loss_G']:.3f}; "
            f"samples, loss.png and progress.gif in {start.run.path}"
        )
    return 0

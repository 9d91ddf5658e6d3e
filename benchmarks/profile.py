"""torch.profiler over a PyTorch-run mode's training iterations: where its time goes, by op. Run as::

    python -m benchmarks.profile --mode keras-torch --preset dcgan64 --batch-size 64

Builds the mode exactly as the benchmark worker does (same trainer, same batch), runs the
first call and warm-up untimed, then profiles `--steps` iterations and prints torch's
table of ops by their own (self) CPU time. For the modes PyTorch runs (reference-loop,
``torch-*``, keras-torch); JAX's and XLA's time per convolution is in benchmarks/layers.py.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.modes import MODES
from benchmarks.worker import build, make_batch
from common.presets import PRESETS, make_config

TORCH_MODES = [name for name, mode in MODES.items() if mode.backend in ("torch", "keras-torch")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=TORCH_MODES, required=True)
    parser.add_argument("--preset", choices=list(PRESETS), default="dcgan64")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    job = {
        "mode": args.mode,
        "preset": args.preset,
        "batch_size": args.batch_size,
        "precision": "float32",
        "device": "gpu" if torch.cuda.is_available() else "cpu",
    }
    trainer, reason = build(job)
    if trainer is None:
        parser.error(f"{args.mode}: {reason}")
    config = make_config(args.preset, {"optim.batch_size": args.batch_size})
    batch = trainer.prepare(*make_batch(config, args.batch_size))
    for _ in range(3):
        trainer.synchronize(trainer.step(batch))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            trainer.synchronize(trainer.step(batch))
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    print(f"{args.mode}, {args.preset}, batch {args.batch_size}, float32: {args.steps} iterations")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

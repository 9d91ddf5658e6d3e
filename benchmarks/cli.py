"""`dcgan bench` and `python -m benchmarks`: time every mode, write JSON, Markdown and a chart."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks import report
from benchmarks.environment import gpus
from benchmarks.modes import DEVICES, MODES, PRECISIONS, parse_modes
from benchmarks.runner import Settings, run
from common.cli import positive_int
from common.errors import ConfigError
from common.presets import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        nargs="+",
        choices=list(PRESETS),
        default=["dcgan64", "mnist28"],
        help="presets to time (default dcgan64 mnist28)",
    )
    parser.add_argument("--modes", nargs="+", metavar="MODE", help="default: all of " + ", ".join(MODES))
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=list(PRECISIONS),
        default=list(PRECISIONS),
        help="default fp32 tf32 bf16 (each only where the device runs it; the rest are listed as skipped)",
    )
    parser.add_argument("--batch-size", nargs="+", type=positive_int, default=[64, 128], help="default 64 128")
    parser.add_argument("--repeats", type=positive_int, default=20, help="timed blocks per mode (20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations after the first call (3)")
    parser.add_argument(
        "--device",
        choices=[*DEVICES, "auto"],
        default="auto",
        help="cpu or gpu (default: gpu when nvidia-smi sees one)",
    )
    parser.add_argument("--json", type=Path, help="write the records here")
    parser.add_argument("--markdown", type=Path, help="write the table here (default: print it)")
    parser.add_argument("--plot", type=Path, help="write the bar chart (PNG) here")
    parser.add_argument("--no-interleave", action="store_true", help="time each mode to the end before the next")
    parser.add_argument("--no-peak", action="store_true", help="skip measuring the machine's peak FLOP/s")
    parser.add_argument(
        "--gemm-size", type=positive_int, default=4096, help="side of the square GEMM of the peak (4096)"
    )


def bench(args: argparse.Namespace) -> int:
    device = args.device if args.device != "auto" else ("gpu" if gpus() else "cpu")
    if device == "gpu" and not gpus():
        raise ConfigError("--device", "gpu", "cpu on this machine: nvidia-smi sees no NVIDIA GPU")
    settings = Settings(
        presets=args.preset,
        modes=parse_modes(args.modes),
        precisions=args.precision,
        batch_sizes=args.batch_size,
        device=device,
        repeats=args.repeats,
        warmup=args.warmup,
        interleave=not args.no_interleave,
        peak=not args.no_peak,
        gemm_size=args.gemm_size,
    )
    results = run(settings)
    if args.json:
        report.write_json(results, args.json)
    table = report.markdown(results)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    else:
        print(table)
    if args.plot:
        report.plot(results, args.plot)
    failed = [r for r in results["records"] if r["status"] == "error"]
    for r in failed:
        print(
            f"error: {r['mode']} {r['precision']} ({r['preset']}, batch {r['batch_size']}): {r['reason']}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def add_command(commands) -> None:
    """`dcgan bench`: plugged into the `dcgan` command through pyproject.toml's entry points."""
    parser = commands.add_parser(
        "bench",
        help="time a training iteration in every backend and mode, with FLOPs, efficiency and a report (benchmarks/)",
    )
    add_arguments(parser)
    parser.set_defaults(run=bench)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    add_arguments(parser)
    try:
        return bench(parser.parse_args(argv))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

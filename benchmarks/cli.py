"""`dcgan bench` and `python -m benchmarks`: time every mode, write JSON, Markdown and a chart."""

from __future__ import annotations

import argparse
import sys
import textwrap

from benchmarks import report
from benchmarks.environment import gpus
from benchmarks.modes import DEVICES, MODES, OLD_PRECISIONS, PRECISIONS, parse_modes
from benchmarks.runner import Settings, run
from common.cli import CommandParser, Distinct, non_negative_int, output_file, positive_int, run_command
from common.errors import ConfigError
from common.presets import PRESETS

# What a bare run times, meant to take a few minutes on a 2-core CPU: one preset, one batch
# size, float32, and every mode but torch-compile-max-autotune, whose cold compile would be a
# second minute of compiling (65.5 s beside torch-compile's 71.7 s in the committed dcgan64 run,
# benchmarks/results/cpu-dcgan64-b64.md); and what `--full` times, the whole grid. A flag given
# explicitly overrides either.
SHORT = {
    "preset": ["mnist28"],
    "batch_size": [64],
    "precision": ["float32"],
    "modes": [name for name in MODES if name != "torch-compile-max-autotune"],
    "repeats": 10,
}
FULL = {
    "preset": ["dcgan64", "mnist28"],
    "batch_size": [64, 128],
    "precision": list(PRECISIONS),
    "modes": list(MODES),
    "repeats": 20,
}


def _words(values) -> str:
    return " ".join(map(str, values))


DESCRIPTION = "\n\n".join(
    textwrap.fill(paragraph, 79)
    for paragraph in (
        "Time one training iteration in every mode, with FLOPs, efficiency and a report.",
        f"A bare run is the short one, meant to take a few minutes on a 2-core CPU: preset "
        f"{_words(SHORT['preset'])}, batch {_words(SHORT['batch_size'])}, {_words(SHORT['precision'])}, every "
        f"mode but torch-compile-max-autotune (a second cold torch.compile), {SHORT['repeats']} timed blocks "
        "per mode.",
        f"--full times the grid: presets {_words(FULL['preset'])}, batch sizes {_words(FULL['batch_size'])}, "
        f"precisions {_words(FULL['precision'])} (each where the device runs it), every mode, "
        f"{FULL['repeats']} timed blocks per mode.",
        "--preset, --batch-size, --precision, --modes and --repeats override either.",
    )
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--full",
        action="store_true",
        help="time the whole grid described above instead of the short run",
    )
    parser.add_argument(
        "--preset",
        nargs="+",
        action=Distinct,
        choices=list(PRESETS),
        help=f"presets to time (default {_words(SHORT['preset'])}; --full: {_words(FULL['preset'])})",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        action=Distinct,
        metavar="MODE",
        help="modes to time, of " + ", ".join(MODES) + " (default: all but torch-compile-max-autotune; --full: all)",
    )
    parser.add_argument(
        "--precision",
        nargs="+",
        action=Distinct,
        choices=[*PRECISIONS, *OLD_PRECISIONS],
        metavar="PRECISION",
        help=f"{', '.join(PRECISIONS)}: the names `dcgan train --precision` takes (default "
        f"{_words(SHORT['precision'])}; --full: {_words(FULL['precision'])}; each only where the device runs it, "
        "the rest are listed as skipped)",
    )
    parser.add_argument(
        "--batch-size",
        nargs="+",
        action=Distinct,
        type=positive_int,
        help=f"default {_words(SHORT['batch_size'])}; --full: {_words(FULL['batch_size'])}",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        help=f"timed blocks per mode (default {SHORT['repeats']}; --full: {FULL['repeats']})",
    )
    parser.add_argument(
        "--warmup", type=non_negative_int, default=3, help="untimed iterations after the first call (3)"
    )
    parser.add_argument(
        "--device",
        choices=[*DEVICES, "auto"],
        default="auto",
        help="cpu or gpu (default: gpu when nvidia-smi sees one)",
    )
    parser.add_argument(
        "--devices",
        nargs="+",
        action=Distinct,
        type=positive_int,
        default=[1],
        help="data-parallel widths to time (1), as `dcgan train --devices`: the batch size is per device, the "
        "global batch N times it; scaling efficiency is images/s on N over N x images/s on 1 (benchmarks/scaling.py)",
    )
    parser.add_argument("--json", type=output_file, help="write the records here")
    parser.add_argument("--markdown", type=output_file, help="write the table here (default: print it)")
    parser.add_argument("--plot", type=output_file, help="write the bar chart (PNG) here")
    parser.add_argument("--no-interleave", action="store_true", help="time each mode to the end before the next")
    parser.add_argument("--no-peak", action="store_true", help="skip measuring the machine's peak FLOP/s")
    parser.add_argument(
        "--gemm-size", type=positive_int, default=4096, help="side of the square GEMM of the peak (4096)"
    )


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """The run the arguments ask for: the short run's values (`--full`: the grid's) where a flag
    was not given, and old precision names in today's, with a note on stderr for each."""
    run = FULL if args.full else SHORT
    for key, value in run.items():
        if getattr(args, key) is None:
            setattr(args, key, list(value) if isinstance(value, list) else value)
    precisions = []
    for name in args.precision:
        if name in OLD_PRECISIONS:
            print(f"dcgan bench: --precision {name} is now spelled {OLD_PRECISIONS[name]}", file=sys.stderr)
            name = OLD_PRECISIONS[name]
        if name not in precisions:
            precisions.append(name)
    args.precision = precisions
    return args


def bench(args: argparse.Namespace) -> int:
    args = resolve(args)
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
        devices=args.devices,
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
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=bench)


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        prog="python -m benchmarks", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return run_command(lambda: bench(parser.parse_args(argv)), prog=parser.prog)

"""Time to quality: how soon each backend trains a good DCGAN, in wall-clock seconds.

    python -m benchmarks.time_to_quality run     # every backend in turn, one run at a time
    python -m benchmarks.time_to_quality report  # writes benchmarks/results/quality/time-to-quality.*

Step times (`dcgan bench`) say how fast an iteration is; the quality study (quality.py) says
how good the samples are after a number of iterations. What a user pays is the product: the
wall-clock time until the samples are good. Each backend here trains the quality study's
config (mnist28 on the real Fashion-MNIST, batch 64, G's moving average at quality.EMA),
seed 0, scored every EVAL_EVERY iterations with 10,000 samples; the runs go one after another
on one otherwise idle machine, so that their times compare. A run's training time at a score
is its logged `time` less the seconds its earlier scores took (`eval_s`): compiling, sample
grids and checkpoints count, as they do for a user; the measuring does not.

`run --precision bf16` trains bf16 runs beside them (runs/time-to-quality/BACKEND-bf16): the
report sets each one's FD against the float32 run's at the same iterations, the check that
mixed precision still trains the same GAN, and its minutes beside float32's.

The machine is recorded when the first run starts (runs/time-to-quality/machine.json), and
a run continued on another CPU model is refused: times from two machines do not compare. For
the same reason `report` keeps the runs recorded in time-to-quality.json only while they come
from the study in runs/time-to-quality (the same machine.json); a new study replaces them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.environment import cpu_info, environment
from benchmarks.quality import BATCH_SIZE, EMA, PRESET, RESULTS, ROOT
from benchmarks.quality import RECORDS as QUALITY
from common.backends import BACKENDS

RUNS = ROOT / "runs" / "time-to-quality"
RECORDS = RESULTS / "time-to-quality.json"
EVAL_EVERY, SEED = 250, 0
THRESHOLDS = (300, 200, 150, 125)  # FD in the suite's Fashion-MNIST features; real vs real is 0.3


def run_name(backend: str, precision: str) -> str:
    """runs/time-to-quality/torch for float32, torch-bf16 for bf16."""
    return backend if precision == "float32" else f"{backend}-{precision}"


def train_command(backend: str, steps: int, precision: str = "float32") -> list[str]:
    out = RUNS / run_name(backend, precision)
    command = [sys.executable, "-m", "common.cli", "train", "--backend", backend, "--preset", PRESET,
               "--dataset", "fashion-mnist", "--batch-size", str(BATCH_SIZE), "--seed", str(SEED),
               "--steps", str(steps), "--eval-every", str(EVAL_EVERY), "--checkpoint-every", str(EVAL_EVERY),
               "--precision", precision, "--set", f"optim.ema={EMA}", "--no-progress", "--out", str(out)]  # fmt: skip
    return command + (["--resume"] if (out / "run.json").exists() else [])


def same_machine() -> dict:
    """The machine the study's runs are made on: recorded by the first run, checked by the rest."""
    recorded, here = RUNS / "machine.json", cpu_info()
    if not recorded.exists():
        RUNS.mkdir(parents=True, exist_ok=True)
        recorded.write_text(json.dumps(environment(), indent=1) + "\n")
    machine = json.loads(recorded.read_text())
    if machine["cpu"]["model"] != here["model"] or machine["cpu"]["flags"] != here["flags"]:
        made_on = f"{machine['cpu']['model']} ({' '.join(machine['cpu']['flags'])})"
        sys.exit(f"error: the runs in {RUNS} were made on {made_on}, this is {here['model']} "
                 f"({' '.join(here['flags'])}): times from two machines do not compare; "
                 f"move {RUNS} away to start the study again here")  # fmt: skip
    return machine


def run(args: argparse.Namespace) -> None:
    same_machine()
    for backend in args.backends:
        metrics = RUNS / run_name(backend, args.precision) / "metrics.jsonl"
        if metrics.exists() and any(json.loads(line)["step"] >= args.steps for line in metrics.open()):
            continue
        print(f"training {run_name(backend, args.precision)} to {args.steps} iterations", flush=True)
        subprocess.run(train_command(backend, args.steps, args.precision), cwd=ROOT, check=True)


def scored(records: list[dict]) -> list[dict]:
    """The scored iterations of a run's metrics, each with its training seconds: the run's
    `time` there less what the scores before it took."""
    points, scoring = [], 0.0
    for r in records:
        if "fd" not in r:
            continue
        points.append({"step": r["step"], "train_s": round(r["time"] - scoring, 1), "fd": round(r["fd"], 2),
                       "fd_raw": round(r.get("fd_raw", r["fd"]), 2)})  # fmt: skip
        scoring += r.get("eval_s", 0.0)
    return points


def order(name: str) -> tuple[int, int]:
    """float32 runs in BACKENDS order, then the bf16 ones."""
    return (int(name.endswith("-bf16")), list(BACKENDS).index(name.removesuffix("-bf16")))


def against_float32(runs: dict[str, list[dict]], spread=None) -> list[str]:
    """Each bf16 run's FD (G's moving average) at every scored iteration against the float32
    run of its backend at the same iteration, and whether their difference at the last one, for
    the average and for G, is within `spread(step)`: how far G's FD differs between seeds at
    that iteration (default: `seed_range`, from the quality study). Within it, bf16 trains as
    well as float32 as far as one seed can tell."""
    spread = spread or seed_range
    lines = []
    for name, points in runs.items():
        base = name.removesuffix("-bf16")
        if name == base or base not in runs:
            continue
        float32 = {p["step"]: p for p in runs[base]}
        pairs = [(p, float32[p["step"]]) for p in points if p["step"] in float32]
        cells = ", ".join(f"{p['step']}: {p['fd']:.1f} / {q['fd']:.1f}" for p, q in pairs)
        last, base_last = pairs[-1]
        minutes = f"{last['train_s'] / 60:.1f} against {base_last['train_s'] / 60:.1f}"
        differences = [last[key] - base_last[key] for key in ("fd", "fd_raw")]
        width = spread(last["step"])
        if width is None:
            verdict = "no seed spread to set it against"
        else:
            within = "within" if max(map(abs, differences)) <= width else "beyond"
            verdict = f"{within} the {width:.1f} by which G's FD differs between seeds there"
        lines.append(f"- {base}: bf16 / float32 at each scored iteration: {cells}; at {last['step']}, {minutes} "
                     f"minutes of training; bf16 − float32 at {last['step']}: {differences[0]:+.1f} for the average, "
                     f"{differences[1]:+.1f} for G, {verdict}.")  # fmt: skip
    return lines


def first_below(points: list[dict], threshold: float, key: str) -> dict | None:
    """The first scored point whose FD (`key`) is at or below `threshold`; None if none is."""
    return next((p for p in points if p[key] <= threshold), None)


def report(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    from provenance import made_by

    made = made_by("python -m benchmarks.time_to_quality report")
    kept = json.loads(RECORDS.read_text()) if RECORDS.exists() else {"runs": {}}
    runs = dict(kept["runs"])
    if (RUNS / "machine.json").exists():
        machine = json.loads((RUNS / "machine.json").read_text())
        if kept.get("machine") != machine:  # another study's runs, on another machine or day: not mixed in
            runs = {}
        kept["machine"] = machine
        for name in (run_name(b, p) for p in ("float32", "bf16") for b in BACKENDS):
            metrics = RUNS / name / "metrics.jsonl"
            if metrics.exists():
                runs[name] = scored([json.loads(line) for line in metrics.read_text().splitlines()])
    if not runs:
        sys.exit(f"error: no runs in {RUNS} and none recorded in {RECORDS}: `python -m benchmarks.time_to_quality run`")
    kept["runs"] = dict(sorted(runs.items(), key=lambda item: order(item[0])))
    RESULTS.mkdir(parents=True, exist_ok=True)
    RECORDS.write_text(json.dumps(kept, indent=1) + "\n")
    plot(kept["runs"], RESULTS / "time-to-quality.png", kept["machine"])
    (RESULTS / "time-to-quality.md").write_text(markdown(kept, made))


def markdown(kept: dict, made: str) -> str:
    machine, runs = kept["machine"], kept["runs"]
    cpu = machine["cpu"]
    head = " | ".join(f"FD ≤ {t}" for t in THRESHOLDS)
    bf16 = against_float32(runs)
    longest = max(p["step"] for points in runs.values() for p in points)
    rows = []
    for backend, points in runs.items():
        cells = []
        for threshold in THRESHOLDS:
            ema, raw = first_below(points, threshold, "fd"), first_below(points, threshold, "fd_raw")
            cells.append(" / ".join(f"{p['train_s'] / 60:.1f} ({p['step']})" if p else "–" for p in (ema, raw)))
        last = points[-1]
        rows.append(f"| {backend} | {' | '.join(cells)} | {last['fd']:.1f} / {last['fd_raw']:.1f} at {last['step']} "
                    f"in {last['train_s'] / 60:.1f} |")  # fmt: skip
    return "\n".join([
        "# Time to quality: minutes of training until the samples are good",
        "",
        f"{made} Runs made by `python -m benchmarks.time_to_quality run`, one after another on {cpu['model']} "
        f"({cpu['usable_cpus']} CPUs; {', '.join(cpu['flags'])}), commit {machine['commit']}, started "
        f"{machine['date']}: {PRESET} on the real Fashion-MNIST, batch {BATCH_SIZE}, seed {SEED}, G's moving "
        f"average at {EMA}, scored every {EVAL_EVERY} iterations with 10,000 samples (the scoring's own seconds "
        "are not counted).",
        "",
        "Each cell: minutes of training (iteration) until the FD first reached the threshold, for G's moving "
        "average / for G itself; – where the run did not reach it. A threshold crossed between two scores is "
        f"known to {EVAL_EVERY} iterations. One seed per backend, and seeds differ: {seed_spread(longest)} So "
        "the minutes say how fast each backend goes along a curve of the same shape, not which one draws "
        "better garments.",
        "",
        f"| run | {head} | last FD (average / G), iteration, minutes |",
        "|---|" + "---|" * (len(THRESHOLDS) + 1),
        *rows,
        "",
        *(["## bf16 against float32", "",
           "FD of G's moving average in each bf16 run against the float32 run of the same backend and seed:", "",
           *bf16, ""] if bf16 else []),
        "![FD against minutes of training](time-to-quality.png)",
        "",
    ])  # fmt: skip


def seed_fds(step: int) -> list[float]:
    """G's FD at `step` iterations in each run of the quality study that was scored there."""
    return [p["fd"] for r in json.loads(QUALITY.read_text()) for p in r["curve"] if p["step"] == step]


def seed_range(step: int) -> float | None:
    """How far G's FD at `step` iterations differs between the quality study's runs (max − min)."""
    fds = seed_fds(step)
    return max(fds) - min(fds) if len(fds) >= 2 else None


def seed_spread(step: int) -> str:
    """How far G's FD at `step` iterations varies between the quality study's runs, in words."""
    fds = seed_fds(step)
    if len(fds) < 2:
        return "the quality study (quality.md) has too few runs scored at that iteration to say how much."
    return (
        f"in the quality study (quality.md), G's FD at {step} iterations ranges over {min(fds):.1f} to "
        f"{max(fds):.1f} in {len(fds)} runs."
    )


def plot(runs: dict[str, list[dict]], path: Path, machine: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    colours = dict(zip(BACKENDS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for name, points in runs.items():
        minutes = [p["train_s"] / 60 for p in points]
        colour = colours[name.removesuffix("-bf16")]
        if name.endswith("-bf16"):  # the average only: beside its float32 run, in its colour
            ax.plot(minutes, [p["fd"] for p in points], "s--", color=colour, markersize=3, label=name)
            continue
        ax.plot(minutes, [p["fd"] for p in points], "o-", color=colour, markersize=3, label=name)
        ax.plot(minutes, [p["fd_raw"] for p in points], ":", color=colour, linewidth=1)
    for threshold in THRESHOLDS:
        ax.axhline(threshold, color="grey", linewidth=0.5)
    ax.plot([], [], "k-", label="G's moving average")
    ax.plot([], [], "k:", label="G")
    ax.set_ylim(bottom=0)
    ax.set(xlabel="minutes of training", ylabel="FD (Fashion-MNIST features)",
           title=f"{PRESET} on Fashion-MNIST, batch {BATCH_SIZE}, {machine['cpu']['model']}")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.time_to_quality", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--steps", type=int, default=2000, help="iterations of every run (2000)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
                        help="whose runs `run` trains, in this order (default: all)")  # fmt: skip
    parser.add_argument("--precision", choices=["float32", "bf16"], default="float32",
                        help="the runs' precision (float32); bf16 runs sit beside the float32 ones")  # fmt: skip
    args = parser.parse_args(argv)
    {"run": run, "report": report}[args.action](args)


if __name__ == "__main__":
    main()

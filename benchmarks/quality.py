"""The cross-backend quality study: does every backend train the DCGAN equally well?

    python -m benchmarks.quality run     # trains every (backend, seed) not yet done, resuming any stopped run
    python -m benchmarks.quality report  # scores the runs and writes benchmarks/results/quality/

Each run is `dcgan train` of mnist28 on the real Fashion-MNIST, the same config and seed on
every backend, scored every EVAL_EVERY iterations (`--eval-every`: FD (Fashion-MNIST features)
and the rest, in its metrics.jsonl). Runs go to runs/quality/BACKEND-sSEED, one at a time; a
stopped study continues where it stopped (`dcgan train --resume`). The report scores each
run's last checkpoint with `dcgan eval` (10,000 samples, bootstrap interval, reference points)
and writes quality.json (one record per backend and seed), quality.md, fd.png and each run's
last grid.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from common.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "quality"
RESULTS = ROOT / "benchmarks" / "results" / "quality"
PRESET, BATCH_SIZE, EVAL_EVERY = "mnist28", 64, 500
FIELDS = ("backend", "seed", "steps", "fd", "fd_low", "fd_high", "kid", "precision", "recall", "density", "coverage",
          "classes_covered", "wall_s")  # fmt: skip


def plan(steps: int, seeds: list[int], seeded: list[str]) -> list[tuple[str, int]]:
    """Every backend at the first seed, then the extra seeds on the `seeded` backends."""
    return [(b, seeds[0]) for b in BACKENDS] + [(b, s) for s in seeds[1:] for b in seeded]


def run_dir(backend: str, seed: int) -> Path:
    return RUNS / f"{backend}-s{seed}"


def train_command(backend: str, seed: int, steps: int) -> list[str]:
    out = run_dir(backend, seed)
    command = [sys.executable, "-m", "common.cli", "train", "--backend", backend, "--preset", PRESET,
               "--dataset", "fashion-mnist", "--batch-size", str(BATCH_SIZE), "--seed", str(seed),
               "--steps", str(steps), "--eval-every", str(EVAL_EVERY), "--checkpoint-every", str(EVAL_EVERY),
               "--keep-every", str(EVAL_EVERY), "--no-progress", "--out", str(out)]  # fmt: skip
    return command + (["--resume"] if (out / "run.json").exists() else [])


def run(args: argparse.Namespace) -> None:
    for backend, seed in plan(args.steps, args.seeds, args.seeded):
        metrics = run_dir(backend, seed) / "metrics.jsonl"
        done = metrics.exists() and any(json.loads(line)["step"] >= args.steps for line in metrics.open())
        if done:
            continue
        print(f"training {backend} seed {seed} to {args.steps} iterations", flush=True)
        subprocess.run(train_command(backend, seed, args.steps), cwd=ROOT, check=True)


def curve(backend: str, seed: int) -> list[dict]:
    lines = (run_dir(backend, seed) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "fd" in r]


def report(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    records = []
    for backend, seed in plan(args.steps, args.seeds, args.seeded):
        directory = run_dir(backend, seed)
        if not (directory / "metrics.jsonl").exists():
            continue
        # `dcgan eval` in a process of its own: each run is sampled on the backend that trained it,
        # and Keras takes one backend per process.
        scores = directory / "eval.json"
        command = [sys.executable, "-m", "common.cli", "eval", "--checkpoint", str(directory), "--json", str(scores),
                   "--no-progress"]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True)
        found = json.loads(scores.read_text())
        last = json.loads((directory / "metrics.jsonl").read_text().splitlines()[-1])
        record = {"backend": backend, "seed": seed, "steps": found["step"], "wall_s": round(last["time"], 1)}
        record.update({k: found[k] for k in FIELDS if k in found})
        record["reference"] = {k: {m: v[m] for m in ("fd", "fd_low", "fd_high")} for k, v in found["reference"].items()}
        records.append(record)
        grid = sorted((directory / "samples").glob("step_*.png"))[-1]
        shutil.copy(grid, RESULTS / f"{backend}-s{seed}.png")
        print(f"{backend} seed {seed}: FD {record['fd']:.2f} [{record['fd_low']:.2f}, {record['fd_high']:.2f}]")
    (RESULTS / "quality.json").write_text(json.dumps(records, indent=1) + "\n")
    plot(records, RESULTS / "fd.png")


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    colours = dict(zip(BACKENDS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for r in records:
        points = curve(r["backend"], r["seed"])
        first = r["seed"] == min(x["seed"] for x in records if x["backend"] == r["backend"])
        ax.plot([p["step"] for p in points], [p["fd"] for p in points], "o-" if first else ":",
                color=colours[r["backend"]], label=r["backend"] if first else None, markersize=3)  # fmt: skip
    floor = np.mean([r["reference"]["real_vs_real"]["fd"] for r in records])
    ax.axhline(floor, color="grey", linestyle="--", label="real vs real")
    ax.set(xlabel="iteration", ylabel="FD (Fashion-MNIST features)", yscale="log",
           title=f"{PRESET} on Fashion-MNIST, batch {BATCH_SIZE}: solid the first seed, dotted the others")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--steps", type=int, default=3000, help="iterations of every run (3000)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (0 1 2); the first on all")
    parser.add_argument("--seeded", nargs="+", default=["torch", "jax"], help="backends run at every seed")
    args = parser.parse_args(argv)
    {"run": run, "report": report}[args.action](args)


if __name__ == "__main__":
    main()

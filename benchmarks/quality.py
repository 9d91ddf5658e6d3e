"""The cross-backend quality study: does every backend train the DCGAN equally well?

    python -m benchmarks.quality run     # trains every (backend, seed) not yet done, resuming any stopped run
    python -m benchmarks.quality report  # scores the runs and writes benchmarks/results/quality/

Each run is `dcgan train` of mnist28 on the real Fashion-MNIST, the same config on every
backend, at each of the seeds, scored every EVAL_EVERY iterations (`--eval-every`: FD
(Fashion-MNIST features) and the rest, in its metrics.jsonl). Runs go to
runs/quality/BACKEND-sSEED, one at a time; a stopped study continues where it stopped (`dcgan
train --resume`). The report scores each run's checkpoint at --steps with `dcgan eval`
(10,000 samples, bootstrap interval, reference points) and writes quality.json (one record per
backend and seed), quality.md, fd.png and each run's last grid.

A run already in the committed quality.json is done: `run` skips it and `report` keeps its
record as it is, so a study can grow over several machines and sessions (`--backends` picks
whose runs to train), one committed run at a time.

Each backend is judged leave-one-out: its mean FD over its seeds against the range of every
other backend's seeds, so that no backend is measured against a spread its own runs made.
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
RECORDS = RESULTS / "quality.json"
FIELDS = ("backend", "seed", "steps", "fd", "fd_low", "fd_high", "kid", "precision", "recall", "density", "coverage",
          "classes_covered", "wall_s")  # fmt: skip


def plan(seeds: list[int], backends: list[str]) -> list[tuple[str, int]]:
    """Every backend at the first seed, then the next seed on every backend, and so on: a study
    stopped part way has compared all backends at as many seeds as it could."""
    return [(b, s) for s in seeds for b in backends]


def committed(steps: int) -> dict[tuple[str, int], dict]:
    """The committed records of runs at `steps` iterations, by (backend, seed)."""
    records = json.loads(RECORDS.read_text()) if RECORDS.exists() else []
    return {(r["backend"], r["seed"]): r for r in records if r["steps"] == steps}


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
    kept = committed(args.steps)
    for backend, seed in plan(args.seeds, args.backends):
        metrics = run_dir(backend, seed) / "metrics.jsonl"
        done = metrics.exists() and any(json.loads(line)["step"] >= args.steps for line in metrics.open())
        if done or (backend, seed) in kept:
            continue
        print(f"training {backend} seed {seed} to {args.steps} iterations", flush=True)
        subprocess.run(train_command(backend, seed, args.steps), cwd=ROOT, check=True)


def curve(backend: str, seed: int) -> list[dict]:
    lines = (run_dir(backend, seed) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "fd" in r]


def report(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    from provenance import made_by

    made = made_by("python -m benchmarks.quality report")  # before this report rewrites its own files
    RESULTS.mkdir(parents=True, exist_ok=True)
    kept = committed(args.steps)
    records = []
    for backend, seed in plan(args.seeds, list(BACKENDS)):
        directory = run_dir(backend, seed)
        checkpoint = directory / "checkpoints" / f"step_{args.steps:06d}.safetensors"
        if not checkpoint.exists():  # trained elsewhere (its committed record stands), not run, or not this far yet
            if (backend, seed) in kept:
                records.append(kept[backend, seed])
            else:
                print(f"{backend} seed {seed}: no checkpoint at {args.steps} iterations yet")
            continue
        # `dcgan eval` in a process of its own: each run is sampled on the backend that trained it,
        # and Keras takes one backend per process.
        # The checkpoint at --steps: a run continued past it (to look further along the curve)
        # is scored where the others are.
        scores = directory / f"eval-{args.steps}.json"
        command = [sys.executable, "-m", "common.cli", "eval", "--checkpoint", str(checkpoint), "--json", str(scores),
                   "--no-progress"]  # fmt: skip
        if not scores.exists():
            subprocess.run(command, cwd=ROOT, check=True)
        found = json.loads(scores.read_text())
        at_steps = next(r for r in map(json.loads, (directory / "metrics.jsonl").open()) if r["step"] == args.steps)
        record = {"backend": backend, "seed": seed, "steps": found["step"], "wall_s": round(at_steps["time"], 1)}
        record.update({k: found[k] for k in FIELDS if k in found})
        record["reference"] = {k: {m: v[m] for m in ("fd", "fd_low", "fd_high")} for k, v in found["reference"].items()}
        # every --eval-every score of the run (with --eval-n samples), past --steps too where it went on
        record["curve"] = [{k: round(p[k], 2) if k != "step" else p[k] for k in ("step", "fd", "fd_low", "fd_high")}
                           for p in curve(backend, seed)]  # fmt: skip
        records.append(record)
        grid = [g for g in sorted((directory / "samples").glob("step_*.png")) if int(g.stem[5:]) <= args.steps][-1]
        shutil.copy(grid, RESULTS / f"{backend}-s{seed}.png")
        print(f"{backend} seed {seed}: FD {record['fd']:.2f} [{record['fd_low']:.2f}, {record['fd_high']:.2f}]")
    RECORDS.write_text(json.dumps(records, indent=1) + "\n")
    plot(records, RESULTS / "fd.png", args.steps)
    (RESULTS / "quality.md").write_text(markdown(records, args, made))


def by_backend(records: list[dict]) -> dict[str, list[float]]:
    """Each backend's final FDs, one per seed, in BACKENDS order."""
    found = {}
    for r in sorted(records, key=lambda r: (list(BACKENDS).index(r["backend"]), r["seed"])):
        found.setdefault(r["backend"], []).append(r["fd"])
    return found


def leave_one_out(records: list[dict]) -> list[dict]:
    """Each backend's mean FD over its seeds against the lowest and highest FD of every seed of
    the *other* backends: inside that range, the backend trains as well as the others do, by
    what the others' own seed-to-seed variation shows. A backend with a single seed is judged
    too, and its line says so; the range needs at least two seeds among the others."""
    fds = by_backend(records)
    verdicts = []
    for backend, own in fds.items():
        others = [fd for name, found in fds.items() if name != backend for fd in found]
        if len(others) < 2:
            continue
        mean = float(np.mean(own))
        low, high = min(others), max(others)
        verdicts.append(dict(backend=backend, seeds=len(own), mean=mean, sd=float(np.std(own, ddof=1)) if len(own) > 1
                             else None, low=low, high=high, inside=low <= mean <= high))  # fmt: skip
    return verdicts


def markdown(records: list[dict], args: argparse.Namespace, made: str) -> str:
    """The table of every run, and each backend's first-seed FD against the seed spread."""
    rows = [
        f"| {r['backend']} | {r['seed']} | {r['steps']} | {r['fd']:.1f} [{r['fd_low']:.1f}, {r['fd_high']:.1f}] "
        f"| {r['kid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['density']:.3f} | {r['coverage']:.3f} "
        f"| {r['classes_covered']}/10 | {r['wall_s'] / 60:.1f} |"
        for r in records
    ]
    verdicts = leave_one_out(records)
    if not verdicts:
        verdict = ["Too few runs to judge a backend against the others' seeds."]
    else:
        verdict = ["Each backend's mean FD over its seeds, against the range of every seed of the other backends:", ""]
        for v in verdicts:
            spread = f" ± {v['sd']:.1f}" if v["sd"] is not None else ""
            inside = "inside" if v["inside"] else "**outside**"
            verdict.append(f"- {v['backend']}: {v['mean']:.1f}{spread} ({v['seeds']} seeds), {inside} "
                           f"the others' {v['low']:.1f} to {v['high']:.1f}")  # fmt: skip
    floor = records[0]["reference"]["real_vs_real"]["fd"] if records else float("nan")
    return "\n".join(
        [
            "# Does every backend train the DCGAN equally well?",
            "",
            made + " Runs made by `python -m benchmarks.quality run "
            f"--steps {args.steps}`: {PRESET} on the real Fashion-MNIST, batch {BATCH_SIZE}, the same config on every "
            "backend, scored at the last iteration by `dcgan eval` (10,000 samples against the 10,000 test images). "
            "Runs trained in earlier sessions keep the records committed then.",
            "",
            "| backend | seed | iterations | FD (Fashion-MNIST features) [95%] | KID | precision | recall | density "
            "| coverage | classes | wall, min |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Real vs real at the same n: FD {floor:.2f}. Wall times are of runs that shared the machine with other "
            "work, so they are not a speed comparison (docs/training-cpu.md has step times on an idle machine).",
            "",
            *verdict,
            "",
            "![FD over training](fd.png)",
            "",
        ]
    )


def plot(records: list[dict], path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    colours = dict(zip(BACKENDS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for r in records:
        points = [p for p in r["curve"] if p["step"] <= steps]
        first = r["seed"] == min(x["seed"] for x in records if x["backend"] == r["backend"])
        ax.plot([p["step"] for p in points], [p["fd"] for p in points], "o-" if first else ":",
                color=colours[r["backend"]], label=r["backend"] if first else None, markersize=3)  # fmt: skip
    floor = np.mean([r["reference"]["real_vs_real"]["fd"] for r in records])
    ax.plot([], [], " ", label=f"real vs real: {floor:.2f}")  # the floor, too low to draw on this scale
    ax.set_ylim(bottom=0)
    ax.set(xlabel="iteration", ylabel="FD (Fashion-MNIST features)",
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of every backend (0 1 2)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS),
                        help="whose runs `run` trains (default: all); `report` reports every backend")  # fmt: skip
    args = parser.parse_args(argv)
    {"run": run, "report": report}[args.action](args)


if __name__ == "__main__":
    main()

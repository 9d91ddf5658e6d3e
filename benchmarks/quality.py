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
from common.config import load_toml

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "quality"
RESULTS = ROOT / "benchmarks" / "results" / "quality"
PRESET, BATCH_SIZE, EVAL_EVERY = "mnist28", 64, 500
# G's moving average, kept beside G in every run trained from here on: it changes nothing of
# G's training (bit for bit), so G's FD still compares with the runs made before it, and each
# such run also scores the average. 0.995: the initial weights keep 0.995^3000 ≈ 3e-7 of it.
EMA = 0.995
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
               "--keep-every", str(EVAL_EVERY), "--set", f"optim.ema={EMA}", "--no-progress",
               "--out", str(out)]  # fmt: skip
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
    """Every --eval-every score of the run: `fd` (with its interval) of G itself, which every
    run has, and `fd_ema` of G's moving average where the run keeps one (its loop logs the
    average as fd and G as fd_raw)."""
    points = []
    for r in map(json.loads, (run_dir(backend, seed) / "metrics.jsonl").read_text().splitlines()):
        if "fd" not in r:
            continue
        raw = "_raw" if "fd_raw" in r else ""
        point = {"step": r["step"], **{f"fd{end}": round(r[f"fd{raw}{end}"], 2) for end in ("", "_low", "_high")}}
        if raw:
            point["fd_ema"] = round(r["fd"], 2)
        points.append(point)
    return points


def averaged(directory: Path) -> bool:
    """Whether the run keeps G's moving average (runs made before it existed do not)."""
    return load_toml(directory / "config.toml").get("optim.ema", 0.0) > 0


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
        # The checkpoint at --steps: a run continued past it (to look further along the curve)
        # is scored where the others are.
        # G itself is what the backends are compared on; the average, where kept, is scored beside it.
        found = score(checkpoint, directory / f"eval-{args.steps}.json", "raw")
        at_steps = next(r for r in map(json.loads, (directory / "metrics.jsonl").open()) if r["step"] == args.steps)
        record = {"backend": backend, "seed": seed, "steps": found["step"], "wall_s": round(at_steps["time"], 1)}
        record.update({k: found[k] for k in FIELDS if k in found})
        record["reference"] = {k: {m: v[m] for m in ("fd", "fd_low", "fd_high")} for k, v in found["reference"].items()}
        if averaged(directory):
            ema = score(checkpoint, directory / f"eval-{args.steps}-ema.json", "ema")
            record.update({f"fd_ema{end}": ema[f"fd{end}"] for end in ("", "_low", "_high")})
        # every --eval-every score of the run (with --eval-n samples), past --steps too where it went on
        record["curve"] = curve(backend, seed)
        records.append(record)
        grid = [g for g in sorted((directory / "samples").glob("step_*.png")) if int(g.stem[5:]) <= args.steps][-1]
        shutil.copy(grid, RESULTS / f"{backend}-s{seed}.png")
        print(f"{backend} seed {seed}: FD {record['fd']:.2f} [{record['fd_low']:.2f}, {record['fd_high']:.2f}]")
    RECORDS.write_text(json.dumps(records, indent=1) + "\n")
    plot(records, RESULTS / "fd.png", args.steps)
    plot_averaged(records, RESULTS / "ema.png", args.steps)
    (RESULTS / "quality.md").write_text(markdown(records, args, made))


def score(checkpoint: Path, scores: Path, generator: str) -> dict:
    """`dcgan eval` of one generator of the checkpoint, in a process of its own (each run is
    sampled on the backend that trained it, and Keras takes one backend per process); kept in
    `scores`, so a report run again scores only what is new."""
    if not scores.exists():
        command = [sys.executable, "-m", "common.cli", "eval", "--checkpoint", str(checkpoint), "--json", str(scores),
                   "--generator", generator, "--no-progress"]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True)
    return json.loads(scores.read_text())


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
    average = averaged_effect(records, args.steps)
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
            *average,
        ]
    )


def averaged_effect(records: list[dict], steps: int) -> list[str]:
    """What G's moving average gains: its FD against G's own in each run that keeps one, at the
    last iteration (`dcgan eval`) and along the curve (`--eval-every`)."""
    runs = [r for r in records if "fd_ema" in r]
    if not runs:
        return []
    rows = [f"| {r['backend']} | {r['seed']} | {r['fd']:.1f} [{r['fd_low']:.1f}, {r['fd_high']:.1f}] "
            f"| {r['fd_ema']:.1f} [{r['fd_ema_low']:.1f}, {r['fd_ema_high']:.1f}] | {r['fd_ema'] - r['fd']:+.1f} |"
            for r in runs]  # fmt: skip
    change = [r["fd_ema"] - r["fd"] for r in runs]
    along = {}
    for r in runs:
        for p in r["curve"]:
            if "fd_ema" in p and p["step"] <= steps:
                along.setdefault(p["step"], []).append(p["fd_ema"] - p["fd"])
    return [
        "## G's moving average",
        "",
        f"Runs trained with `optim.ema {EMA}` keep G's moving average beside G; it changes nothing of G's training, "
        "so their G is compared with the other runs above, and the average is scored beside it: the same checkpoint, "
        "the same 10,000 latent vectors. A negative change is a better FD.",
        "",
        "| backend | seed | FD of G [95%] | FD of the average [95%] | change |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Mean change at {steps} iterations over {len(runs)} runs: {np.mean(change):+.1f} FD "
        f"(from {min(change):+.1f} to {max(change):+.1f}).",
        "",
        "Along training (`--eval-every`, the runs' own smaller samples), the mean change at each scored iteration: "
        + ", ".join(f"{step}: {np.mean(d):+.1f}" for step, d in sorted(along.items()))
        + ".",
        "",
        "![G and its moving average over training](ema.png)",
        "",
    ]


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


def plot_averaged(records: list[dict], path: Path, steps: int) -> None:
    """FD over training of G (solid) and of its moving average (dashed) in each run keeping one."""
    runs = [r for r in records if "fd_ema" in r]
    if not runs:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for r, colour in zip(runs, colours):
        points = [p for p in r["curve"] if p["step"] <= steps and "fd_ema" in p]
        x = [p["step"] for p in points]
        label = f"{r['backend']} seed {r['seed']}"
        ax.plot(x, [p["fd"] for p in points], "o-", color=colour, markersize=3, label=label)
        ax.plot(x, [p["fd_ema"] for p in points], "s--", color=colour, markersize=3)
    ax.plot([], [], "k-", label="G")
    ax.plot([], [], "k--", label=f"its moving average ({EMA})")
    ax.set_ylim(bottom=0)
    ax.set(xlabel="iteration", ylabel="FD (Fashion-MNIST features)",
           title=f"{PRESET} on Fashion-MNIST: G (solid) and its moving average (dashed)")  # fmt: skip
    ax.grid(alpha=0.3)
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

"""Tables and charts the parity and quality pages show, made from the committed results when the
site is built: benchmarks/results/parity.json and benchmarks/results/quality/quality.json."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.backends import BACKENDS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PARITY = ROOT / "benchmarks" / "results" / "parity.json"
QUALITY = ROOT / "benchmarks" / "results" / "quality" / "quality.json"
THRESHOLDS = (250.0, 200.0, 150.0, 120.0)  # FD levels whose time to reach the quality page gives


def parity_summary(data: dict) -> str:
    """Per precision and check: the largest difference over every preset and pair, the
    tolerance, and how many comparisons passed, were reported only, or failed."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in data["comparisons"]:
        groups.setdefault((c["precision"], c["check"]), []).append(c)
    rows = [
        "| precision | check | largest difference | tolerance | pass | reported | failed |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (precision, check), found in sorted(groups.items(), key=lambda item: item[0][0], reverse=True):
        worst = max(c["diff"] for c in found)
        tolerance = found[0]["tolerance"]
        count = {v: sum(c["result"] == v for c in found) for v in ("pass", "info", "FAIL")}
        rows.append(
            f"| {precision} | {check} | {worst:.2e} | {'report' if tolerance is None else f'{tolerance:.0e}'} "
            f"| {count['pass']} | {count['info']} | " + (f"**{count['FAIL']}** |" if count["FAIL"] else "0 |")
        )
    env = data["environment"]
    presets, pairs, precisions, checks = (
        len({str(c[field]) for c in data["comparisons"]}) for field in ("preset", "pair", "precision", "check")
    )
    rows += [
        "",
        f"{len(data['comparisons'])} comparisons: {presets} presets × {pairs} backend pairs × {precisions} precisions "
        f"× {checks} checks. Made by "
        f"`{data['command']}` on {env['date'][:10]} at commit `{env['commit'][:7]}`, on {env['cpu']['model']} "
        f"({env['cpu']['usable_cpus']} CPUs), in {data['seconds']:.0f} s.",
    ]
    return "\n".join(rows)


def parity_failures(data: dict) -> str:
    """The comparisons that failed, each with its worst tensor or, for a check that raised, the error."""
    failed = [c for c in data["comparisons"] if c["result"] == "FAIL"]
    if not failed:
        return "None: every judged comparison passed."
    rows = ["| preset | pair | precision | check | worst tensor or error |", "|---|---|---|---|---|"]
    for c in failed:
        rows.append(
            f"| {c['preset']} | {c['pair'][0]} vs {c['pair'][1]} | {c['precision']} | {c['check']} | {c['worst']} |"
        )
    return "\n".join(rows)


def _runs() -> list[dict]:
    return json.loads(QUALITY.read_text())


def minutes_at(run: dict, step: int) -> float:
    """The run's wall-clock minutes at `step`, read off its mean pace up to its scored iteration
    (`wall_s` at `steps`, evaluations every 500 iterations included)."""
    return run["wall_s"] * step / run["steps"] / 60


def fd_table(runs: list[dict]) -> str:
    rows = [
        "| backend | seed | FD [95% bootstrap] | KID | precision | recall | coverage | classes | wall, min |",
        "|---|---:|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in sorted(runs, key=lambda r: (list(BACKENDS).index(r["backend"]), r["seed"])):
        rows.append(
            f"| {r['backend']} | {r['seed']} | {r['fd']:.1f} [{r['fd_low']:.1f}, {r['fd_high']:.1f}] | {r['kid']:.2f} "
            f"| {r['precision']:.3f} | {r['recall']:.3f} | {r['coverage']:.3f} | {r['classes_covered']}/10 "
            f"| {r['wall_s'] / 60:.1f} |"
        )
    rows += ["", "| backend | seeds | FD mean ± sd | range |", "|---|---:|---|---|"]
    for backend in BACKENDS:
        fds = [r["fd"] for r in runs if r["backend"] == backend]
        if not fds:
            continue
        spread = f"{statistics.mean(fds):.1f} ± {statistics.stdev(fds):.1f}" if len(fds) > 1 else f"{fds[0]:.1f}"
        rows.append(f"| {backend} | {len(fds)} | {spread} | {min(fds):.1f} to {max(fds):.1f} |")
    return "\n".join(rows)


def time_to_fd(runs: list[dict]) -> str:
    """For each run, the wall-clock minutes at the first scored iteration whose FD is at or
    below each threshold (– when the run never got there by its scored iteration)."""
    rows = [
        "| backend | seed | " + " | ".join(f"FD ≤ {t:.0f}" for t in THRESHOLDS) + " |",
        "|---|---:|" + "---:|" * len(THRESHOLDS),
    ]
    for r in sorted(runs, key=lambda r: (list(BACKENDS).index(r["backend"]), r["seed"])):
        cells = []
        for t in THRESHOLDS:
            hit = next((p for p in r["curve"] if p["step"] <= r["steps"] and p["fd"] <= t), None)
            cells.append("–" if hit is None else f"{minutes_at(r, hit['step']):.1f} min ({hit['step']} it)")
        rows.append(f"| {r['backend']} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def fd_time_chart(runs: list[dict], path: Path) -> None:
    colors = dict(zip(BACKENDS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labelled = set()
    for r in sorted(runs, key=lambda r: r["seed"]):
        points = [p for p in r["curve"] if p["step"] <= r["steps"]]
        label = r["backend"] if r["backend"] not in labelled else None
        labelled.add(r["backend"])
        ax.plot(
            [minutes_at(r, p["step"]) for p in points],
            [p["fd"] for p in points],
            marker="o",
            markersize=3,
            color=colors[r["backend"]],
            linestyle="-" if r["seed"] == 0 else ":",
            label=label,
        )
    ax.set_xlabel("wall-clock minutes of training (2 CPU cores)")
    ax.set_ylabel("FD, Fashion-MNIST features (lower is better)")
    ax.set_title("mnist28 on Fashion-MNIST: FD against time (solid: seed 0, dotted: seeds 1, 2)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})  # no timestamp: the same results give the same file
    plt.close(fig)


def fragments(generated: Path) -> dict[str, str]:
    """The Markdown fragments; the chart is written beside them."""
    parity = json.loads(PARITY.read_text())
    runs = _runs()
    fd_time_chart(runs, generated / "fd-time.svg")
    return {
        "parity-summary.md.inc": parity_summary(parity),
        "parity-failures.md.inc": parity_failures(parity),
        "quality-fd.md.inc": fd_table(runs),
        "quality-time.md.inc": time_to_fd(runs),
    }

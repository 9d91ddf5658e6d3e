"""How a training iteration's cost grows with the work: images/s and peak memory against
batch size, one line per backend and preset, from a `dcgan bench` run over several batch
sizes (each point a worker process of its own, as always)::

    benchmarks/scaling.sh    # dcgan bench per preset over batch sizes 16 to 256, then --devices 1 2
    python -m benchmarks.scaling benchmarks/results/scaling/cpu-*.json

writes, beside the first JSON, scaling.md (per backend and preset: images/s at each batch size,
the batch size where it stops gaining, and the memory each image costs) and scaling.png
(the two log-log panels).

"Stops gaining": the smallest batch size whose images/s is within GAIN of the best the
sweep reached; past it, larger batches buy less than that. Memory per image: the slope of
a least-squares line through peak RSS against batch size, which separates what each image
costs (activations, their gradients) from what a process holds whatever the batch (the
framework, the weights, Adam's moments); the intercept is that fixed part.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.modes import MODES
from benchmarks.report import read_json

GAIN = 0.10  # within 10% of the best images/s counts as "stopped gaining"
PRESET_STYLE = {"mnist28": ("o", ":"), "svhn32": ("s", "--"), "dcgan64": ("^", "-")}


def series(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """{(mode, preset): the mode's ok one-device records of the batch sweep, in batch order}."""
    found: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        if r["status"] == "ok" and r.get("devices", 1) == 1 and r.get("sweep", True):
            found.setdefault((r["mode"], r["preset"]), []).append(r)
    return {key: sorted(points, key=lambda r: r["batch_size"]) for key, points in found.items()}


def stops_gaining(points: list[dict], gain: float = GAIN) -> int:
    """The smallest batch size within `gain` of the best images/s of the sweep."""
    best = max(r["images_per_s"] for r in points)
    return next(r["batch_size"] for r in points if r["images_per_s"] >= (1 - gain) * best)


def efficiencies(records: list[dict]) -> list[dict]:
    """Each data-parallel record's scaling efficiency: its images/s over N times the same
    mode's at one device (same preset, same batch per device, so N times the work)."""
    ok = [r for r in records if r["status"] == "ok"]

    def key(r: dict) -> tuple:  # the same run's one-device record: speeds compare only within a run
        return r.get("run", 0), r["mode"], r["preset"], r["batch_size"]

    one = {key(r): r["images_per_s"] for r in ok if r.get("devices", 1) == 1}
    found = []
    for r in ok:
        base = one.get(key(r))
        if r.get("devices", 1) > 1 and base:
            found.append({**r, "efficiency": r["images_per_s"] / (r["devices"] * base), "one_device": base})
    return found


def memory_line(points: list[dict]) -> tuple[float, float] | None:
    """(bytes per image, fixed bytes): the least-squares line of peak RSS against batch size;
    None with fewer than two measured points."""
    measured = [(r["batch_size"], r["peak_mem_bytes"]) for r in points if r.get("peak_mem_bytes")]
    if len(measured) < 2:
        return None
    batch, peak = np.array(measured, dtype=float).T
    slope, intercept = np.polyfit(batch, peak, 1)
    return float(slope), float(intercept)


def markdown(results: dict) -> str:
    env, settings = results["environment"], results["settings"]
    found = series(results["records"])
    batches = sorted({r["batch_size"] for points in found.values() for r in points})
    lines = [
        f"CPU: {env['cpu']['model']} ({env['cpu']['usable_cpus']} usable of {env['cpu']['logical_cpus']} logical "
        f"CPUs; flags {', '.join(env['cpu']['flags'])}). GPU: {', '.join(env['gpus']) or 'none'}.",
        f"Date {env['date']}, commit `{env['commit']}`. Float32; median of {settings['repeats']} timed blocks after "
        f"{settings['warmup']} warm-up iterations, each (mode, preset, batch size) in a fresh process.",
        "",
        f"Stops gaining: the smallest batch size within {GAIN:.0%} of the best images/s of the sweep. "
        "MiB per image and fixed MiB: the least-squares line through peak RSS against batch size.",
        "",
    ]
    for preset in PRESET_STYLE:
        keys = [(m, preset) for m in MODES if (m, preset) in found]
        if not keys:
            continue
        lines += [
            f"### {preset}: images/s",
            "",
            "| mode | " + " | ".join(f"b{b}" for b in batches) + " | stops gaining at | MiB per image | fixed MiB |",
            "|---|" + "---:|" * (len(batches) + 3),
        ]
        for key in keys:
            by_batch = {r["batch_size"]: r for r in found[key]}
            cells = [f"{by_batch[b]['images_per_s']:.1f}" if b in by_batch else "–" for b in batches]
            memory = memory_line(found[key])
            per_image, fixed = (f"{memory[0] / 2**20:.2f}", f"{memory[1] / 2**20:,.0f}") if memory else ("–", "–")
            lines.append(
                f"| {key[0]} | " + " | ".join(cells) + f" | {stops_gaining(found[key])} | {per_image} | {fixed} |"
            )
        lines.append("")
    scaled = efficiencies(results["records"])
    if scaled:
        lines += [
            "### Data parallelism: scaling efficiency",
            "",
            "Images/s on N devices over N × images/s on one, the batch per device fixed (weak scaling).",
            "",
            "| mode | preset | batch per device | devices | images/s | on one device | efficiency |",
            "|---|---|---:|---:|---:|---:|---:|",
            *(
                f"| {r['mode']} | {r['preset']} | {r['batch_size']} | {r['devices']} | {r['images_per_s']:.1f} "
                f"| {r['one_device']:.1f} | {r['efficiency']:.2f} |"
                for r in scaled
            ),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def plot(results: dict, path: Path) -> None:
    """Two log-log panels, images/s and peak memory against batch size: a colour per mode, a
    marker and line style per preset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = series(results["records"])
    modes = [m for m in MODES if any(key[0] == m for key in found)]
    colours = dict(zip(modes, plt.get_cmap("tab10").colors))
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(13, 6.5))
    for (mode, preset), points in sorted(found.items(), key=lambda kv: (modes.index(kv[0][0]), kv[0][1])):
        marker, style = PRESET_STYLE.get(preset, ("x", "-."))
        batch = [r["batch_size"] for r in points]
        line = {"color": colours[mode], "marker": marker, "linestyle": style, "markersize": 4}
        speed.plot(batch, [r["images_per_s"] for r in points], label=f"{mode}, {preset}", **line)
        peaks = [(b, r["peak_mem_bytes"] / 2**20) for b, r in zip(batch, points) if r.get("peak_mem_bytes")]
        if peaks:
            memory.plot(*zip(*peaks), **line)
    for ax, label in ((speed, "images / s (higher is better)"), (memory, "peak RSS of the process, MiB")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    speed.set_title("throughput", fontsize=10)
    memory.set_title("memory", fontsize=10)
    env = results["environment"]
    device = env["gpus"][0] if env["gpus"] else f"{env['cpu']['model']}, {env['cpu']['usable_cpus']} CPUs"
    fig.suptitle(f"DCGAN training iteration against batch size, float32: {device}", fontsize=10)
    # Below both panels, one column per mode: inside, it hid lines wherever it was put.
    fig.legend(*speed.get_legend_handles_labels(), loc="lower center", ncol=len(modes), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0])
    parser.add_argument(
        "results", type=Path, nargs="+", help="JSONs written by `dcgan bench --json` (one per preset, say)"
    )
    args = parser.parse_args(argv)
    runs = [read_json(path) for path in args.results]
    for index, run in enumerate(runs):  # a run over several widths times its one-device baseline: not a sweep point
        for r in run["records"]:
            r.update(run=index, sweep=run["settings"].get("devices", [1]) == [1])
    results = {**runs[0], "records": [r for run in runs for r in run["records"]]}  # the first run's environment
    out = args.results[0].parent
    (out / "scaling.md").write_text(markdown(results))
    plot(results, out / "scaling.png")
    print(f"wrote {out / 'scaling.md'} and {out / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

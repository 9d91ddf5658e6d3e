"""The benchmark's result as JSON, a Markdown report and a bar chart, with ratios that mean the
same on any machine: how close the fastest mode comes to the machine's limit (the best
measured time of every convolution pass, benchmarks/layers.py) and in which passes each mode
loses its time against it, how far each backend's best mode is from the fastest, and what
bf16 gains over float32 where it runs.

    python -m benchmarks.report RESULTS_JSON [--markdown PATH] [--plot PATH]

writes the report of a recorded run (`dcgan bench --json`) again, without timing anything;
a run recorded under the benchmark's earlier precision names ("fp32") is read in today's
("float32"), and one recorded before the limit was taken pass by pass is reported with the
definition it used.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from benchmarks.layers import KERNELS, PASSES, as_times, limit, pass_counts, per_pass
from benchmarks.modes import MODES, OLD_PRECISIONS, PRECISIONS
from common.presets import make_config


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


def read_json(path: Path) -> dict:
    """A recorded run, its precisions in today's names: "fp32" (the benchmark's name for float32
    before it took the trainer's) becomes "float32" in the settings, the peaks (each framework's
    too), the records and the records' reasons. A run recorded before the limit was taken pass
    by pass (its peaks have no `passes`) computed `limit_s` as the iteration's FLOPs at the
    largest convolution's forward rate, which is not a bound: its records keep that figure as
    `forward_limit_s`. The figures are left as they were."""
    results = json.loads(path.read_text())
    old = re.compile(r"\b(" + "|".join(map(re.escape, OLD_PRECISIONS)) + r")\b")
    settings = results.get("settings", {})
    if "precisions" in settings:
        settings["precisions"] = [OLD_PRECISIONS.get(p, p) for p in settings["precisions"]]
    peaks = results.get("peaks", [])
    for item in [*peaks, *(f for p in peaks for f in p.get("by_framework", [])), *results.get("records", [])]:
        item["precision"] = OLD_PRECISIONS.get(item["precision"], item["precision"])
        if item.get("reason"):
            item["reason"] = old.sub(lambda m: OLD_PRECISIONS[m.group(1)], item["reason"])
    forward_only = {(p["preset"], p["batch_size"], p["precision"]) for p in peaks if "passes" not in p}
    for r in results.get("records", []):
        if "limit_s" in r and (r["preset"], r["batch_size"], r["precision"]) in forward_only:
            r["forward_limit_s"] = r.pop("limit_s")
    return results


def _mib(value: int | None) -> str:
    return f"{value / 2**20:,.0f}" if value else "–"


def _s(seconds: float) -> str:
    """Seconds with three decimals, four below 0.1 s (a GPU's iterations take milliseconds)."""
    return f"{seconds:.3f}" if seconds >= 0.1 else f"{seconds:.4f}"


def _num(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "–"


def _groups(records: list[dict]) -> dict[tuple[str, int, int], list[dict]]:
    """Records by (preset, batch size per device, devices)."""
    groups: dict[tuple[str, int, int], list[dict]] = {}
    for r in records:
        groups.setdefault((r["preset"], r["batch_size"], r.get("devices", 1)), []).append(r)
    return groups


def markdown(results: dict) -> str:
    env, settings = results["environment"], results["settings"]
    gpu = ", ".join(env["gpus"]) or "none"
    lines = [
        f"Device: **{settings['device']}**. CPU: {env['cpu']['model']} ({env['cpu']['usable_cpus']} usable of "
        f"{env['cpu']['logical_cpus']} logical CPUs; flags {', '.join(env['cpu']['flags'])}). GPU: {gpu}.",
        f"Date {env['date']}, commit `{env['commit']}`, Python {env['python']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + ".",
        f"Median of {settings['repeats']} timed blocks per mode after {settings['warmup']} warm-up iterations, "
        f"modes {'interleaved' if settings['interleave'] else 'one after another'}; each mode in a fresh process.",
        "",
    ]
    for (preset, batch, devices), records in _groups(results["records"]).items():
        lines += group_lines(results, preset, batch, records, devices)
    return "\n".join(lines).rstrip() + "\n"


def group_lines(results: dict, preset: str, batch: int, records: list[dict], devices: int = 1) -> list[str]:
    """One (preset, batch, devices): the modes that ran or failed, one sentence for those
    skipped, the machine's peak and limit, and the ratios of `summary`."""
    ok = [r for r in records if r["status"] == "ok"]
    flops = ok[0]["flops_per_iter"] if ok else None
    width = f" per device on {devices} devices" if devices > 1 else ""
    lines = [
        f"### {preset}, batch {batch}{width}" + (f" ({flops / 1e9:.1f} GFLOP per iteration)" if flops else ""),
        "",
        "| mode | precision | images/s | median s/it (IQR) | first call s | peak mem MiB | GFLOP/s | "
        "% of peak | × reference |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(ok, key=lambda r: (r["precision"], -r["images_per_s"])):
        fraction = f"{100 * r['peak_fraction']:.0f}%" if r.get("peak_fraction") is not None else "–"
        lines.append(
            f"| {r['mode']} | {r['precision']} | {r['images_per_s']:.1f} | {_s(r['median_s'])} ({_s(r['iqr_s'])}) | "
            f"{r['compile_s']:.1f} | {_mib(r.get('peak_mem_bytes'))} | {r['gflops_per_s']:.0f} | {fraction} | "
            f"{_num(r.get('speedup_vs_reference'), '.2f')} |"
        )
    for r in records:
        if r["status"] not in ("ok", "skipped"):
            lines.append(f"| {r['mode']} | {r['precision']} | {r['status']}: {r['reason']} ||||||||")
    lines.append("")
    if skipped := skipped_line(records):
        lines += [skipped, ""]
    for p in results["peaks"]:
        if (p["preset"], p["batch_size"]) == (preset, batch) and devices == 1:
            lines += [
                f"Machine peak, {p['precision']}: largest convolution `{p['conv_layer']}` "
                f"{p['conv_flops_per_s'] / 1e9:.0f} GFLOP/s ({p['conv_framework']}), GEMM {p['gemm_size']}² "
                f"{p['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s ({p['gemm_framework']}).",
                "",
            ]
            if line := limit_line(results, p):
                lines += [line, ""]
            if table := pass_lines(results, p):
                lines += [*table, ""]
    found = summary(preset, batch, records)
    return lines + (summary_lines(found) + [""] if found else [])


def skipped_line(records: list[dict]) -> str:
    """The modes of one (preset, batch) that were not run, in one sentence: grouped by reason,
    the reason shared by the most first ("" when every mode ran)."""
    by_reason: dict[str, list[dict]] = {}
    for r in records:
        if r["status"] == "skipped":
            by_reason.setdefault(r["reason"], []).append(r)
    if not by_reason:
        return ""
    parts = [
        f"{_which(skipped, records)}: {reason}"
        for reason, skipped in sorted(by_reason.items(), key=lambda item: -len(item[1]))
    ]
    return "Skipped: " + "; ".join(parts) + "."


def _which(skipped: list[dict], records: list[dict]) -> str:
    """The (mode, precision) pairs of `skipped`, shortly: "tf32 (all modes)" for a precision in
    which no mode ran, a mode's name alone when it ran in no precision, else modes and precisions."""
    precisions = list(dict.fromkeys(r["precision"] for r in records))
    by_mode: dict[str, list[str]] = {}
    for r in skipped:
        by_mode.setdefault(r["mode"], []).append(r["precision"])
    shared = {tuple(p) for p in by_mode.values()}
    if len(shared) > 1:
        return ", ".join(f"{mode} in {'/'.join(p)}" for mode, p in by_mode.items())
    (only,) = shared
    nothing_ran = all(r["status"] == "skipped" for r in records if r["precision"] == only[0])
    if len(by_mode) > 1 and len(only) == 1 and nothing_ran:
        return f"{only[0]} (all modes)"
    modes = ", ".join(by_mode)
    return modes if list(only) == precisions else f"{modes} in {'/'.join(only)}"


def _same(results: dict, peak: dict) -> list[dict]:
    """The records timed one device wide at the peak's (preset, batch, precision), fastest first."""
    key = (peak["preset"], peak["batch_size"], peak["precision"])
    return sorted(
        (
            r
            for r in results["records"]
            if r["status"] == "ok"
            and (r["preset"], r["batch_size"], r["precision"]) == key
            and r.get("devices", 1) == 1
        ),
        key=lambda r: r["median_s"],
    )


def limit_line(results: dict, peak: dict) -> str:
    """The limit beside the peak: every convolution pass at the best time any kernel set took
    for it, as often as an iteration runs it, as s/it, GFLOP/s, images/s and the most any mode
    could reach over reference-loop; where the limit came from. A run recorded before the
    limit was taken pass by pass gets its own limit, named for what it was, and the modes that
    beat it."""
    same = _same(results, peak)
    if not same:
        return ""
    flops, batch, precision = same[0]["flops_per_iter"], peak["batch_size"], peak["precision"]
    reference = next((r for r in same if r["mode"] == "reference-loop"), None)
    if not peak.get("passes"):
        limit_s = same[0].get("forward_limit_s")
        if not limit_s:
            return ""
        faster = [r["mode"] for r in same if r["median_s"] < limit_s]
        return (
            f"Limit, {precision}, as this run recorded it (before the limit was taken pass by pass): "
            f"{flops / 1e9:.1f} GFLOP at the largest convolution's forward rate, {flops / limit_s / 1e9:.0f} GFLOP/s: "
            f"{_s(limit_s)} s/it ({batch / limit_s:.1f} images/s). Not a bound: other passes and layers run "
            "faster than that one forward" + (f"; {', '.join(faster)} ran faster than it here." if faster else ".")
        )
    limit_s = peak["limit_s"]
    counts = _counts(peak)
    found = limit({k: as_times(rows) for k, rows in peak["passes"].items()}, counts)
    sources: dict[str, int] = {}
    for key, (_, kernels) in found["best"].items():
        if counts[key]:  # a pass no iteration runs (G's input gradient into its noise) gives nothing
            sources[kernels] = sources.get(kernels, 0) + 1
    line = (
        f"Limit, {precision}: {_s(limit_s)} s/it ({flops / limit_s / 1e9:.0f} GFLOP/s, {batch / limit_s:.1f} "
        "images/s), every convolution's forward, input gradient and weight gradient at the best time of the "
        "kernels timed, as often as an iteration runs it (the best from "
        + ", ".join(f"{k} in {n} passes" for k, n in sorted(sources.items(), key=lambda item: -item[1]))
        + ")"
    )
    if reference:
        line += f"; {reference['median_s'] / limit_s:.2f}× reference-loop's speed"
    return line + (
        ". No mode whose convolutions run through these kernels is faster, unless its passes run faster in its "
        "step than alone."
    )


def _counts(peak: dict) -> dict[tuple[str, str], int]:
    return pass_counts(make_config(peak["preset"], {"optim.batch_size": peak["batch_size"]}))


def pass_lines(results: dict, peak: dict) -> list[str]:
    """Where each mode loses its time against the limit, pass by pass: the seconds per
    iteration of each pass in the mode's kernels (`Mode.kernels`) and how much more than the
    best of that pass, its convolutions' total, and the rest of its step (its median less its
    convolutions: normalisation, activations, Adam, overheads; negative where the step runs its
    passes faster than they ran alone). Empty for a run recorded without the passes."""
    same = [r for r in _same(results, peak) if MODES[r["mode"]].kernels in peak.get("passes", {})]
    if not same:
        return []
    counts = _counts(peak)
    by_kernels = {k: per_pass(as_times(rows), counts) for k, rows in peak["passes"].items()}
    best = peak["limit_by_pass"]
    lines = [
        f"Where each {peak['precision']} mode loses its time against the limit: s per iteration in each pass of "
        "its convolutions (timed alone, in its kernels), + what it takes over the best of that pass; the rest "
        "of the step is its median less its convolutions.",
        "",
        "| mode | kernels | " + " | ".join(PASSES) + " | convolutions | rest of the step |",
        "|---|---|" + "---:|" * (len(PASSES) + 2),
        "| the limit | best of each pass | "
        + " | ".join(_s(best[p]) for p in PASSES)
        + f" | {_s(peak['limit_s'])} | – |",
    ]
    for r in same:
        kernels = MODES[r["mode"]].kernels
        times = by_kernels[kernels]
        cells = [f"{_s(times[p])} (+{_s(max(0.0, times[p] - best[p]))})" for p in PASSES]
        conv = sum(times.values())
        rest = r["median_s"] - conv
        lines.append(
            f"| {r['mode']} | {KERNELS[kernels][1]} | "
            + " | ".join(cells)
            + f" | {_s(conv)} | {'+' if rest >= 0 else '−'}{_s(abs(rest))} |"
        )
    return lines


def _best_by_backend(records: list[dict]) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for r in records:
        backend = MODES[r["mode"]].backend
        if backend not in best or r["median_s"] < best[backend]["median_s"]:
            best[backend] = r
    return best


def summary(preset: str, batch: int, records: list[dict]) -> dict | None:
    """Ratios within one (preset, batch) of a run, which a run on any machine can be read by.
    Of the project's own modes (reference-loop has its column in the table): the fastest float32
    mode and the share of the float32 limit's speed it reaches (`limit_fraction`, None without a
    measured peak); each backend's best float32 mode and its time as a multiple of the fastest's
    (`vs_fastest`); and where that backend ran bf16, its best bf16 mode's speed-up over it
    (`bf16_speedup`, else None). Backends are listed fastest first; None where no float32 mode of
    the project's ran. Computed from the records when the report is written, so a recorded run's
    JSON gets it too."""
    ok = [r for r in records if r["status"] == "ok" and r["mode"] != "reference-loop"]
    float32 = _best_by_backend([r for r in ok if r["precision"] == "float32"])
    if not float32:
        return None
    bf16 = _best_by_backend([r for r in ok if r["precision"] == "bf16"])
    fastest = min(float32.values(), key=lambda r: r["median_s"])
    backends = [
        {
            "backend": backend,
            "float32_mode": r["mode"],
            "float32_median_s": r["median_s"],
            "vs_fastest": r["median_s"] / fastest["median_s"],
            "bf16_mode": bf16[backend]["mode"] if backend in bf16 else None,
            "bf16_speedup": r["median_s"] / bf16[backend]["median_s"] if backend in bf16 else None,
        }
        for backend, r in sorted(float32.items(), key=lambda item: item[1]["median_s"])
    ]
    return {
        "preset": preset,
        "batch_size": batch,
        "fastest_mode": fastest["mode"],
        "fastest_median_s": fastest["median_s"],
        "limit_fraction": fastest["limit_s"] / fastest["median_s"] if fastest.get("limit_s") else None,
        "backends": backends,
    }


def summary_lines(found: dict) -> list[str]:
    """`summary`'s figures: a sentence and a table by backend (with bf16 columns where bf16 ran)."""
    bf16 = any(b["bf16_speedup"] for b in found["backends"])
    line = f"The fastest float32 mode is {found['fastest_mode']} ({_s(found['fastest_median_s'])} s/it)"
    if found["limit_fraction"] is not None:
        line += f", at {100 * found['limit_fraction']:.0f}% of the float32 limit's speed"
    line += ". Each backend's best float32 mode, its time as a multiple of the fastest's"
    lines = [
        line + (", and bf16's speed-up over it:" if bf16 else ":"),
        "",
        "| backend | best float32 mode | s/it | × the fastest's time |"
        + (" best bf16 mode | bf16 speed-up |" if bf16 else ""),
        "|---|---|---:|---:|" + ("---|---:|" if bf16 else ""),
    ]
    for b in found["backends"]:
        row = f"| {b['backend']} | {b['float32_mode']} | {_s(b['float32_median_s'])} | {b['vs_fastest']:.2f} |"
        if bf16:
            row += f" {b['bf16_mode'] or '–'} | {_num(b['bf16_speedup'], '.2f')} |"
        lines.append(row)
    return lines


def plot(results: dict, path: Path) -> None:
    """Images/s per mode and precision, one panel per (preset, batch), IQR as whiskers and the
    limit (every convolution pass at its best measured time) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results["records"] if r["status"] == "ok"]
    groups = sorted({(r["preset"], r["batch_size"]) for r in ok}, key=lambda g: (g[0] != "dcgan64", g))
    precisions = [p for p in PRECISIONS if any(r["precision"] == p for r in ok)]
    colours = {"float32": "#4477aa", "tf32": "#228833", "bf16": "#ee6677"}
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 0.5 + 0.45 * len(MODES) * len(groups) + 0.6), squeeze=False)
    for ax, (preset, batch) in zip(axes[:, 0], groups):
        records = [r for r in ok if (r["preset"], r["batch_size"]) == (preset, batch)]
        modes = [m for m in MODES if any(r["mode"] == m for r in records)]
        height = 0.8 / len(precisions)
        for i, precision in enumerate(precisions):
            for j, mode in enumerate(modes):
                r = next((r for r in records if r["mode"] == mode and r["precision"] == precision), None)
                if r is None:
                    continue
                y = j + (i - (len(precisions) - 1) / 2) * height
                low, high = batch / r["q75_s"], batch / r["q25_s"]
                ax.barh(
                    y,
                    r["images_per_s"],
                    height,
                    color=colours[precision],
                    xerr=[[r["images_per_s"] - low], [high - r["images_per_s"]]],
                    capsize=2,
                    label=precision if j == 0 or not ax.get_legend_handles_labels()[1].count(precision) else None,
                )
                ax.text(high, y, f"  {r['images_per_s']:.1f}", va="center", fontsize=7)  # past the whisker
            limits = [batch / r["limit_s"] for r in records if r["precision"] == precision and r.get("limit_s")]
            if limits:
                ax.axvline(
                    limits[0],
                    color=colours[precision],
                    linestyle="--",
                    linewidth=1,
                    label=f"{precision} limit (best time of each pass)",
                )
        ax.set_yticks(np.arange(len(modes)), modes, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("images / s (higher is better; whiskers: inter-quartile range)")
        ax.set_title(f"{preset}, batch {batch}, {results['settings']['device']}", fontsize=10)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    env = results["environment"]
    fig.suptitle(
        f"DCGAN training iteration: {env['cpu']['model']}" + (f", {env['gpus'][0]}" if env["gpus"] else ""), fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Write the report of a recorded run again, without timing anything.",
    )
    parser.add_argument("results", type=Path, help="a JSON written by `dcgan bench --json`")
    parser.add_argument("--markdown", type=Path, help="write the report here (default: print it)")
    parser.add_argument("--plot", type=Path, help="write the bar chart (PNG) here")
    args = parser.parse_args(argv)
    results = read_json(args.results)
    if args.markdown:
        args.markdown.write_text(markdown(results))
    else:
        print(markdown(results), end="")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())

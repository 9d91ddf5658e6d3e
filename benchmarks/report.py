"""The benchmark's result as JSON, a Markdown table and a bar chart, and its targets checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.modes import MODES

# The targets for dcgan64 at batch 64 on a CPU, against reference-loop (fp32).
TARGETS = {"fastest_fp32": 1.4, "backend_spread": 1.5, "bf16": 2.2}


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")


def _mib(value: int | None) -> str:
    return f"{value / 2**20:,.0f}" if value else "–"


def _num(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "–"


def markdown(results: dict) -> str:
    env, settings = results["environment"], results["settings"]
    gpu = ", ".join(env["gpus"]) or "none"
    lines = [
        f"Device: **{settings['device']}**. CPU: {env['cpu']['model']} ({env['cpu']['usable_cpus']} usable of "
        f"{env['cpu']['logical_cpus']} logical CPUs; flags {', '.join(env['cpu']['flags'])}). GPU: {gpu}.",
        f"Date {env['date']}, commit `{env['commit']}`, Python {env['python']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".",
        f"Median of {settings['repeats']} timed blocks per mode after {settings['warmup']} warm-up iterations, "
        f"modes {'interleaved' if settings['interleave'] else 'one after another'}; each mode in a fresh process.",
        "",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in results["records"]:
        groups.setdefault((r["preset"], r["batch_size"]), []).append(r)
    for (preset, batch), records in groups.items():
        ok = [r for r in records if r["status"] == "ok"]
        flops = ok[0]["flops_per_iter"] if ok else None
        lines += [f"### {preset}, batch {batch}" + (f" ({flops / 1e9:.1f} GFLOP per iteration)" if flops else ""), "",
                  "| mode | precision | images/s | median s/it (IQR) | first call s | peak mem MiB | GFLOP/s | "
                  "% of peak | × reference |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sorted(ok, key=lambda r: (r["precision"], -r["images_per_s"])):
            fraction = f"{100 * r['peak_fraction']:.0f}%" if r.get("peak_fraction") is not None else "–"
            lines.append(
                f"| {r['mode']} | {r['precision']} | {r['images_per_s']:.1f} | {r['median_s']:.3f} ({r['iqr_s']:.3f}) | "
                f"{r['compile_s']:.1f} | {_mib(r.get('peak_mem_bytes'))} | {r['gflops_per_s']:.0f} | {fraction} | "
                f"{_num(r.get('speedup_vs_reference'), '.2f')} |")
        for r in records:
            if r["status"] != "ok":
                lines.append(f"| {r['mode']} | {r['precision']} | {r['status']}: {r['reason']} ||||||||")
        lines.append("")
    for p in results["peaks"]:
        lines.append(
            f"Machine peak, {p['precision']} ({p['preset']}, batch {p['batch_size']}): largest convolution "
            f"`{p['conv_layer']}` {p['conv_flops_per_s'] / 1e9:.0f} GFLOP/s ({p['conv_framework']}), "
            f"GEMM {p['gemm_size']}² {p['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s ({p['gemm_framework']}).")
        lines += ["", limit_line(results, p)]
    lines += ["", *target_lines(results)]
    return "\n".join(lines).rstrip() + "\n"


def limit_line(results: dict, peak: dict) -> str:
    """The limit beside the peak: the iteration's FLOPs at the best convolution's FLOP/s, as
    s/it, images/s and the most any mode could reach over reference-loop there."""
    same = [r for r in results["records"] if r["status"] == "ok" and r["preset"] == peak["preset"]
            and r["batch_size"] == peak["batch_size"]]
    limited = [r for r in same if r["precision"] == peak["precision"] and r.get("limit_s")]
    if not limited:
        return ""
    limit_s, flops = limited[0]["limit_s"], limited[0]["flops_per_iter"]
    line = (f"Limit, {peak['precision']}: {flops / 1e9:.1f} GFLOP at {flops / limit_s / 1e9:.0f} GFLOP/s = "
            f"{limit_s:.3f} s/it ({peak['batch_size'] / limit_s:.1f} images/s)")
    reference = next((r for r in same if r["mode"] == "reference-loop"), None)
    if reference:
        line += (f": {reference['median_s'] / limit_s:.2f}× reference-loop, the most any mode reaches unless "
                 "its convolutions run faster than the machine's best one")
    return line + "."


def targets(results: dict, preset: str = "dcgan64", batch_size: int = 64) -> list[dict]:
    """The targets at (preset, batch): each with the figure reached and whether it is met."""
    ok = [r for r in results["records"] if r["status"] == "ok" and r["preset"] == preset and r["batch_size"] == batch_size]
    reference = next((r for r in ok if r["mode"] == "reference-loop"), None)
    fp32 = [r for r in ok if r["precision"] == "fp32" and r["mode"] != "reference-loop"]
    if reference is None or not fp32:
        return []
    found = []
    fastest = max(fp32, key=lambda r: r["images_per_s"])
    found.append({"target": f"fastest fp32 mode ≥ {TARGETS['fastest_fp32']}× reference-loop", "mode": fastest["mode"],
                  "value": fastest["speedup_vs_reference"], "met": fastest["speedup_vs_reference"] >= TARGETS["fastest_fp32"]})
    best_by_backend: dict[str, dict] = {}
    for r in fp32:
        backend = MODES[r["mode"]].backend
        if backend not in best_by_backend or r["images_per_s"] > best_by_backend[backend]["images_per_s"]:
            best_by_backend[backend] = r
    for backend, r in best_by_backend.items():
        ratio = fastest["images_per_s"] / r["images_per_s"]
        found.append({"target": f"{backend}'s best fp32 within {TARGETS['backend_spread']}× of the fastest",
                      "mode": r["mode"], "value": ratio, "met": ratio <= TARGETS["backend_spread"]})
    bf16 = [r for r in ok if r["precision"] == "bf16"]
    target = f"best bf16 ≥ {TARGETS['bf16']}× reference-loop"
    if bf16:
        best = max(bf16, key=lambda r: r["images_per_s"])
        found.append({"target": target, "mode": best["mode"],
                      "value": best["speedup_vs_reference"], "met": best["speedup_vs_reference"] >= TARGETS["bf16"]})
    else:  # the target holds only where the CPU has bf16 instructions: say why it was not timed
        skipped = [r for r in results["records"] if r["precision"] == "bf16" and r["status"] == "skipped"
                   and r["preset"] == preset and r["batch_size"] == batch_size and r["mode"] != "reference-loop"]
        if skipped:
            found.append({"target": target, "mode": None, "value": None, "met": None,
                          "reason": skipped[0]["reason"]})
    return found


def target_lines(results: dict) -> list[str]:
    found = targets(results)
    if not found:
        return []
    lines = ["Targets (dcgan64, batch 64):", "", "| target | mode | reached | met |", "|---|---|---:|---|"]
    for t in found:
        if t["met"] is None:
            lines.append(f"| {t['target']} | – | not timed | n/a: {t['reason']} |")
        else:
            lines.append(f"| {t['target']} | {t['mode']} | {t['value']:.2f}× | {'yes' if t['met'] else 'no'} |")
    return lines


def plot(results: dict, path: Path) -> None:
    """Images/s per mode and precision, one panel per (preset, batch), IQR as whiskers and the
    limit (the iteration's FLOPs at the best convolution's FLOP/s) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results["records"] if r["status"] == "ok"]
    groups = sorted({(r["preset"], r["batch_size"]) for r in ok}, key=lambda g: (g[0] != "dcgan64", g))
    precisions = [p for p in ("fp32", "tf32", "bf16") if any(r["precision"] == p for r in ok)]
    colours = {"fp32": "#4477aa", "tf32": "#228833", "bf16": "#ee6677"}
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
                ax.barh(y, r["images_per_s"], height, color=colours[precision],
                        xerr=[[r["images_per_s"] - low], [high - r["images_per_s"]]], capsize=2,
                        label=precision if j == 0 or not ax.get_legend_handles_labels()[1].count(precision) else None)
                ax.text(high, y, f"  {r['images_per_s']:.1f}", va="center", fontsize=7)  # past the whisker
            limits = [batch / r["limit_s"] for r in records if r["precision"] == precision and r.get("limit_s")]
            if limits:
                ax.axvline(limits[0], color=colours[precision], linestyle="--", linewidth=1,
                           label=f"{precision} limit (best conv FLOP/s)")
        ax.set_yticks(np.arange(len(modes)), modes, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("images / s (higher is better; whiskers: inter-quartile range)")
        ax.set_title(f"{preset}, batch {batch}, {results['settings']['device']}", fontsize=10)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    env = results["environment"]
    fig.suptitle(f"DCGAN training iteration: {env['cpu']['model']}" + (f", {env['gpus'][0]}" if env["gpus"] else ""),
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)

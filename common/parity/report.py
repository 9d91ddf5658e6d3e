"""The comparisons as a markdown table, and the float32 loss curves that are reported, not judged."""

from __future__ import annotations

import numpy as np

from common.parity.comparison import Comparison, Measured
from common.parity.inputs import ITERATIONS


def trajectories(results: dict[tuple[str, str], Measured | str], precision: str = "float32") -> str:
    """loss_D and loss_G over the five iterations on every backend, and their largest spread."""
    lines = []
    for metric in ("loss_D", "loss_G"):
        curves = {
            backend: r.arrays[f"steps5.{metric}"]
            for (backend, p), r in results.items()
            if p == precision and isinstance(r, Measured) and f"steps5.{metric}" in r.arrays
        }
        if not curves:
            continue
        lines.append(f"{metric} ({precision}), iterations 1..{ITERATIONS}:")
        lines += [f"  {backend:<17} " + " ".join(f"{v:.7f}" for v in curve) for backend, curve in curves.items()]
        spread = np.ptp(np.stack(list(curves.values())), axis=0)
        lines.append(f"  {'spread':<17} " + " ".join(f"{v:.1e}".rjust(9) for v in spread))
    return "\n".join(lines)


def format_table(comparisons: list[Comparison], title: str = "") -> str:
    rows = [
        "| pair | precision | check | max diff | tolerance | result | worst tensor |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        tolerance = "report" if c.tolerance is None else f"{c.tolerance:.0e}"
        rows.append(
            f"| {c.pair[0]} vs {c.pair[1]} | {c.precision} | {c.check} | {c.diff:.2e} | {tolerance} "
            f"| {c.verdict} | {c.key} |"
        )
    return (f"{title}\n\n" if title else "") + "\n".join(rows)

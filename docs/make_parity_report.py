"""Writes docs/parity-report.md, the numeric parity tables of every preset measured here, and
benchmarks/results/parity.json, the same comparisons as data (the site's headline table reads it).

Usage: .venv/bin/python docs/make_parity_report.py   (all presets, all backends, both precisions)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from provenance import made_by

from benchmarks.environment import environment
from common import parity
from common.presets import PRESETS, make_config

OUT = Path(__file__).with_name("parity-report.md")
DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "parity.json"


def main() -> None:
    cases = {preset: (make_config(preset), parity.random_state(make_config(preset))) for preset in PRESETS}
    made_in = environment()  # before this script writes its own outputs, which would mark the tree dirty
    start = time.perf_counter()
    results = parity.run_compared(cases)  # compared as the workers finish, not held in memory
    seconds = time.perf_counter() - start
    sections = []
    worst: dict[tuple[str, str], float] = {}
    records = []
    for preset, compared in results.items():
        comparisons, measured = compared.comparisons, compared.results
        for c in comparisons:
            records.append(
                {
                    "preset": preset,
                    "pair": list(c.pair),
                    "precision": c.precision,
                    "check": c.check,
                    "diff": c.diff,
                    "tolerance": c.tolerance,
                    "result": c.verdict,
                    "worst": c.key,
                }
            )
            worst[(c.precision, c.check)] = max(worst.get((c.precision, c.check), 0.0), c.diff)
        sections.append(parity.format_table(comparisons, f"## {preset}"))
        sections.append(
            "float32 loss curves (reported, not judged):\n\n```\n" + parity.trajectories(measured) + "\n```"
        )
    summary = ["| precision | check | largest difference over all presets and pairs | tolerance |", "|---|---|---|---|"]
    for (precision, check), diff in worst.items():
        tolerance = parity.TOLERANCES[precision][check].limit
        summary.append(
            f"| {precision} | {check} | {diff:.2e} | {'report' if tolerance is None else f'{tolerance:.0e}'} |"
        )
    OUT.write_text(
        "# Numeric parity, measured\n\n"
        + made_by(".venv/bin/python docs/make_parity_report.py")
        + f" {seconds:.0f} s for all presets, 5 backends, 2 precisions, "
        "one worker process per backend and precision, two at a time. Every preset starts from "
        "`common.parity.random_state` (non-zero biases, BN statistics away from 0/1, Adam three steps in) with "
        "batch 4; `dcgan parity` makes the same table for one preset or checkpoint. What each check measures and "
        "why the tolerances are what they are: `common/parity/`; the conventions that make them hold: "
        "[conventions.md](conventions.md).\n\n" + "\n".join(summary) + "\n\n" + "\n\n".join(sections) + "\n"
    )
    DATA.write_text(
        json.dumps(
            {
                "command": ".venv/bin/python docs/make_parity_report.py",
                "environment": made_in,
                "seconds": round(seconds, 1),
                "comparisons": records,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {OUT} and {DATA} in {seconds:.0f} s")


if __name__ == "__main__":
    main()

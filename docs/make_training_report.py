"""Writes docs/training-cpu.md and copies each run's grids (at 300 iterations and at the end)
and its loss plot to docs/images/.

Reads the run directories that the commands in the report made (runs/ is not committed;
this report and its pictures are). Run with: .venv/bin/python docs/make_training_report.py
"""

import json
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import made_by  # noqa: E402

from common.backends import BACKENDS  # noqa: E402
from common.rundir import RunDir  # noqa: E402

RUNS = [
    (
        f"runs/mnist28-{b}-1500",
        f"dcgan train --backend {b} --preset mnist28 --batch-size 64 --steps 1500 --out runs/mnist28-{b}-1500",
    )
    for b in BACKENDS
]
EARLY = 300  # the iteration of the earlier grid shown beside the last: each run samples every 150


def main() -> None:
    images = ROOT / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, pictures = [], []
    for run, command in RUNS:
        run_dir = ROOT / run
        records = RunDir(run_dir).read_metrics()
        if not records or not (run_dir / "loss.png").exists():  # absent, or still running
            continue
        meta = json.loads((run_dir / "run.json").read_text())
        batch = int(command.split("--batch-size ")[1].split()[0])
        # s/iteration from images/s; the first iteration (tracing, compiling) is left out of the median.
        seconds = [batch / r["images_per_s"] for r in records[1:]]
        last = records[-1]
        name = Path(run).name
        grid = sorted((run_dir / "samples").glob("step_*.png"))[-1]
        early = run_dir / "samples" / f"step_{EARLY:06d}.png"
        shutil.copy(grid, images / f"{name}.png")
        shutil.copy(early, images / f"{name}-step{EARLY}.png")
        shutil.copy(run_dir / "loss.png", images / f"{name}-loss.png")
        rows.append(
            f"| `{meta['backend']}` | {last['step']} | {statistics.median(seconds):.3f} "
            f"| {batch / records[0]['images_per_s']:.1f} "
            f"| {last['time'] / 60:.1f} | {last['loss_D']:.2f} / {last['loss_G']:.2f} | `{command}` |"
        )
        pictures += [
            f"**{meta['backend']}** ({name}), step {EARLY} and step {last['step']}:",
            "",
            f"![{name} step {EARLY}](images/{name}-step{EARLY}.png) ![{name}](images/{name}.png)",
            "",
        ]
    text = [
        "# Training mnist28 on Fashion-MNIST, CPU",
        "",
        made_by(".venv/bin/python docs/make_training_report.py")
        + " Real Fashion-MNIST (Debian's dataset-fashion-mnist), batch 64, seed 0, from the runs the commands "
        "below wrote (the runs' own commits and machines are those of the sessions that ran them).",
        "",
        "| backend | iterations | median s / iteration | first iteration, s | training loop, min "
        "| last loss_D / loss_G | command |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "s / iteration is the time of `train_step` with its metrics read back (the loop's `images_per_s`); "
        "the first iteration, which traces and compiles in JAX and Keras, is left out of the median and shown "
        "apart. The training loop's minutes leave out start-up (imports, loading the data). Runs were made one "
        "at a time on an otherwise idle machine.",
        "",
        "Each grid is G in eval mode on the run's fixed noise (64 latent vectors from the seed), written by the "
        f"run itself at iteration {EARLY} and at its end. On every backend the {EARLY}-iteration grid is one "
        "textured blob repeated for nearly every latent vector (G still ignores most of z), and by 1500 the "
        "silhouettes differ from vector to vector: tops, trousers, dresses, bags, blurred and with "
        "checkerboard artefacts. The grids are looked at, not scored: they show that every backend trains, "
        "not that all train equally well.",
        "",
        *pictures,
    ]
    (ROOT / "docs" / "training-cpu.md").write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()

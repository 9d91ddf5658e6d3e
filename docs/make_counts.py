"""Writes docs/parameter-counts.md: (G / D) parameter totals read off every backend's built model.

Each backend runs in its own `dcgan describe --json` process (Keras fixes its backend per
process). Run with: .venv/bin/python docs/make_counts.py
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provenance import made_by  # noqa: E402

from common.backends import BACKENDS  # noqa: E402
from common.presets import PRESETS  # noqa: E402

SOURCES = ["spec", *BACKENDS]


def totals(preset: str, source: str) -> str:
    args = [sys.executable, "-m", "common.cli", "describe", "--preset", preset, "--json"]
    args += [] if source == "spec" else ["--backend", source]
    out = json.loads(subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    return f"{out['generator']['params']:,} / {out['discriminator']['params']:,}"


def main() -> None:
    lines = [
        "# Parameter counts, generator / discriminator",
        "",
        "Read off the model each backend builds (`dcgan describe --preset P --backend B --json`);",
        "`spec` is the framework-free count. " + made_by(".venv/bin/python docs/make_counts.py"),
        "",
        "| preset | " + " | ".join(SOURCES) + " |",
        "|---|" + "---|" * len(SOURCES),
    ]
    for preset in PRESETS:
        lines.append(f"| `{preset}` | " + " | ".join(totals(preset, s) for s in SOURCES) + " |")
    (ROOT / "docs" / "parameter-counts.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

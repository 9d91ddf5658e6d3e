"""The site's generated parts, written into docs/_generated/ when the build starts and included
by the pages (```{include} _generated/NAME```), so that every table, code block and chart
comes from the code and the committed results of the commit being built:

- side-by-side-tabs.md.inc, side-by-side-columns.md.inc, side-by-side-lines.md.inc: the
  algorithm's pieces in each framework (docs/_ext/side_by_side.py);
- headline.md.inc: the headline table (benchmarks/summary.py), the README's too;
- layers-PRESET.md.inc: each preset's per-layer table, as `dcgan describe` computes it from the spec;
- parity-*.md.inc, quality-*.md.inc and fd-time.svg: the parity and quality pages' tables and chart
  (docs/_ext/results_pages.py).
"""

from __future__ import annotations

from pathlib import Path

import results_pages
import side_by_side
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

from benchmarks import summary
from common.config import Config
from common.describe import describe
from common.presets import PRESETS, make_config

GENERATED = Path(__file__).resolve().parents[1] / "_generated"


def _write(name: str, text: str) -> None:
    """Writes only what changed, so Sphinx rebuilds only the pages whose inputs moved."""
    path = GENERATED / name
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def layer_table(config: Config) -> str:
    found = describe(config)
    rows = []
    for role in ("generator", "discriminator"):
        rows += [
            f"**{role.capitalize()}**: {found[role]['params']:,} parameters",
            "",
            "| layer | kind | output shape (C, H, W) | parameters |",
            "|---|---|---|---:|",
        ]
        for layer in found[role]["layers"]:
            shape = " × ".join(str(n) for n in layer["output_shape"])
            rows.append(f"| `{layer['name']}` | {layer['kind']} | {shape} | {layer['params']:,} |")
        rows.append("")
    return "\n".join(rows)


def generate(app: Sphinx) -> None:
    GENERATED.mkdir(exist_ok=True)
    try:
        _write("side-by-side-tabs.md.inc", side_by_side.tabs_page())
        _write("side-by-side-columns.md.inc", side_by_side.columns_page())
        _write("side-by-side-lines.md.inc", side_by_side.totals())
    except side_by_side.MissingSymbol as error:
        raise ExtensionError(str(error)) from None
    _write("headline.md.inc", "{.headline}\n" + summary.markdown())  # the class keeps its cells on one line
    for preset in PRESETS:
        _write(f"layers-{preset}.md.inc", layer_table(make_config(preset)))
    for name, text in results_pages.fragments(GENERATED).items():
        _write(name, text)


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

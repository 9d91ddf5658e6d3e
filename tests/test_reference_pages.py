"""The two reference pages a newcomer finds modules by stay complete: docs/reference/layout.md
(where each thing lives) names every module, and docs/reference/api.md documents each one.
A module added without them fails here, in milliseconds, rather than going unseen."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "pytorch_impl", "jax_impl", "keras_impl", "benchmarks")


def modules() -> list[Path]:
    """Every module of the packages, relative to the root: packages' own __init__ and
    __main__ files are left out (a package is documented through its modules)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name not in ("__init__.py", "__main__.py"):
                found.append(path.relative_to(ROOT))
    return found


def test_the_layout_page_names_every_module():
    """Top-level modules of common by their path; the rest by file name, as the rows of the
    package they sit in list them."""
    text = (ROOT / "docs/reference/layout.md").read_text()
    missing = [
        str(path)
        for path in modules()
        if (str(path) if path.parts[0] == "common" and len(path.parts) == 2 else path.name) not in text
    ]
    assert not missing, f"docs/reference/layout.md does not name: {', '.join(missing)}"


def test_the_api_page_documents_every_module():
    text = (ROOT / "docs/reference/api.md").read_text()
    documented = set(re.findall(r"automodule:: (\S+)", text))
    missing = [name for name in (".".join(path.with_suffix("").parts) for path in modules()) if name not in documented]
    assert not missing, f"docs/reference/api.md has no automodule for: {', '.join(missing)}"

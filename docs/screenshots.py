"""Writes docs/images/site-home.png and docs/images/site-side-by-side.png: the site in chromium.

The home page (docs/index.html), the top of the page, and the side-by-side page
(docs/side-by-side.html, its framework tabs switched to JAX), its section on the D step,
each in a 1400-pixel-wide window. The
site is built for the pictures (as `make docs` builds it: a warning fails) unless --site
names one already built. The browser is Debian's chromium, served and driven as
tests/test_site.py does (docs/site_browser.py).

Run with: .venv/bin/python docs/screenshots.py [--site site]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import site_browser  # noqa: E402

IMAGES = site_browser.ROOT / "docs" / "images"
VIEWPORT = {"width": 1400, "height": 900}
SHOTS = [  # (page, the framework tab to choose or None, the section to show or None: the top, height, picture)
    ("docs/index.html", None, None, 1360, "site-home.png"),  # down through the headline table
    ("docs/side-by-side.html", "JAX", "the-d-step", 900, "site-side-by-side.png"),
]


def take(site: Path) -> list[Path]:
    written = []
    with site_browser.serve(site) as origin, site_browser.browser_context(viewport=VIEWPORT) as context:
        page = context.new_page()
        for name, tab, section, height, picture in SHOTS:
            if not (site / name).is_file():
                raise SystemExit(f"{name} is not in the site at {site}")
            page.goto(f"{origin}/{name}", wait_until="load")
            if tab:
                site_browser.choose_tab(page, tab)
            top = 0
            if section:
                top = page.locator(f"section#{section}").evaluate("e => e.getBoundingClientRect().top + window.scrollY")
                top = max(0, round(top) - 16)
            path = IMAGES / picture
            page.screenshot(
                path=path,
                full_page=True,
                clip={"x": 0, "y": top, "width": VIEWPORT["width"], "height": height},
            )
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, help="a site already built (default: build one in a temporary folder)")
    args = parser.parse_args()
    try:
        site_browser.chromium()
        if args.site:
            written = take(args.site.resolve())
        else:
            with tempfile.TemporaryDirectory(prefix="dcgan-site-") as tmp:
                out = Path(tmp) / "site"
                print(f"building the site into {out}", flush=True)
                site_browser.build(out)
                written = take(out)
    except (site_browser.BuildFailed, site_browser.ChromiumMissing) as error:
        raise SystemExit(str(error)) from None
    for path in written:
        print(f"wrote {path.relative_to(site_browser.ROOT)}")


if __name__ == "__main__":
    main()

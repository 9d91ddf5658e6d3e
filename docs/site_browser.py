"""Builds the site, serves it on 127.0.0.1 and opens it in Debian's chromium.

Shared by tests/test_site.py (which opens every page of the site) and docs/screenshots.py
(which takes the pictures of it in docs/images/). The browser is Debian's `chromium`
(`apt-get install chromium`, or `make setup`), driven by Playwright: Playwright's own browser
download is never used, so nothing here needs the network.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPHINX_BUILD = Path(sys.executable).with_name("sphinx-build")  # the venv's, next to its python
INSTALL_CHROMIUM = "Debian's chromium is missing: install it with `apt-get install chromium` (or `make setup`)"


class BuildFailed(RuntimeError):
    """sphinx-build failed (a warning is an error); the message holds its output."""


class ChromiumMissing(RuntimeError):
    """No `chromium` on PATH."""


def build(out: Path) -> None:
    """Builds the whole site into `out`, as `make docs` does: every warning is an error.

    The same command: a fresh build (-E) on every core (-j auto), its doctrees beside `out`
    rather than in it, so `out` holds only the site. Raises BuildFailed with sphinx-build's
    output when it fails.
    """
    out = Path(out)
    doctrees = out.with_name(out.name + ".doctrees")
    command = [SPHINX_BUILD, "-W", "--keep-going", "-q", "-E", "-j", "auto", "-d", doctrees, "-c", "docs", ".", out]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        output = (result.stdout + result.stderr).strip()
        raise BuildFailed(f"sphinx-build -W failed (exit {result.returncode}):\n{output}")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per request otherwise, on stderr
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serves `directory` on a free port of 127.0.0.1; yields its origin, http://127.0.0.1:PORT."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def chromium() -> str:
    """The path of Debian's chromium; raises ChromiumMissing, saying how to install it."""
    path = shutil.which("chromium")
    if path is None:
        raise ChromiumMissing(INSTALL_CHROMIUM)
    return path


# Only 127.0.0.1 resolves: a request to any other host fails at once (the page still makes it, so a
# test sees it), and nothing leaves the machine. Cheaper than routing every request through
# Playwright, which also turns the browser's cache off.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


@contextmanager
def browser_context(**options) -> Iterator:
    """One headless chromium, offline but for 127.0.0.1, and one context of it (`new_context(**options)`)."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", OFFLINE])
        try:
            context = browser.new_context(**options)
            yield context
            context.close()
        finally:
            browser.close()


def tab_sets(page) -> list[dict]:
    """Each sphinx-design tab-set of the page: its tab labels, sync group and the label now checked."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.sd-tab-set')].map(set => {
            const labels = [...set.querySelectorAll(':scope > label.sd-tab-label')];
            const checked = set.querySelector(':scope > input:checked');
            const label = checked && set.querySelector(`:scope > label[for="${checked.id}"]`);
            const content = label && label.nextElementSibling;
            return {
                labels: labels.map(l => l.textContent.trim()),
                groups: [...new Set(labels.map(l => l.dataset.syncGroup).filter(Boolean))],
                checked: label ? label.textContent.trim() : null,
                shown: !!content && getComputedStyle(content).display !== 'none',
            };
        })"""
    )


def choose_tab(page, label: str, index: int = 0) -> None:
    """Clicks the tab labelled `label` of the page's tab-set number `index` (synced sets follow)."""
    tab_set = page.locator(".sd-tab-set").nth(index)
    exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
    tab_set.locator(":scope > label.sd-tab-label", has_text=exact).first.click()

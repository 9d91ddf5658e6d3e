"""The documentation site, built as `make docs` builds it and opened page by page in a real browser.

The site is built once (every Sphinx warning an error), served on 127.0.0.1 and every .html
page of it opened in Debian's chromium (docs/site_browser.py: the same build, server and
browser as docs/screenshots.py). On every page: no console error, no failed request, no
request to any host but the local server (no CDN, no web font: the site works offline), every
image loaded, and every link into the site leads to a file of the build and, with a
#fragment, to an element of that id on its page. Then the framework tabs of
docs/side-by-side.html switch together, and the search page finds `train_step`.

A build that fails (a warning) fails test_site_builds_without_warnings with sphinx-build's
output, and the other tests with one line each. No page is skipped: genindex, py-modindex,
search and the root's redirect to docs/index.html pass like the others. Without chromium the
tests fail (never skip), saying how to install it. About a minute on 2 cores, most of it the build.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from playwright.sync_api import Error as PlaywrightError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))

import site_browser  # noqa: E402

SIDE_BY_SIDE = "docs/side-by-side.html"
FRAMEWORKS = ("PyTorch", "JAX", "Keras")
REFRESH = re.compile(r"""<meta\s+http-equiv=["']refresh["']\s+content=["']\d+;\s*url=([^"']+)["']""", re.I)

# After the load event: lazy images made eager and waited for (5 s at most), then the page's
# ids (and <a name>s), its links (as written, and as the browser resolves them) and the
# images that did not load.
INSPECT = """async () => {
    const images = [...document.images];
    images.forEach(img => { if (img.loading === 'lazy') img.loading = 'eager'; });
    const settled = images.map(img => img.complete ? null
        : new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); }));
    await Promise.race([Promise.all(settled), new Promise(done => setTimeout(done, 5000))]);
    return {
        ids: [...document.querySelectorAll('[id]')].map(e => e.id)
            .concat([...document.querySelectorAll('a[name]')].map(a => a.name)),
        links: [...document.querySelectorAll('a[href]')].map(a => [a.getAttribute('href'), a.href]),
        broken: images.filter(img => !img.complete || img.naturalWidth === 0)
            .map(img => img.getAttribute('src') || img.currentSrc),
    };
}"""


@dataclass
class Problems:
    """What one page (or one action on it) did wrong in the browser."""

    console: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


class Recorder:
    """Listens to one browser page: console errors, failed requests and requests off the local server."""

    def __init__(self, page, origin: str):
        self.origin = origin + "/"
        self.now = Problems()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.now.console.append(f"uncaught {error.name}: {error.message}"))
        page.on("request", self._request)
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def start(self) -> Problems:
        self.now = Problems()
        return self.now

    def _local(self, url: str) -> bool:
        return url.startswith(self.origin) or url.startswith(("data:", "blob:"))  # data: and blob: go nowhere

    def _console(self, message):
        where = message.location.get("url", "")
        # Chromium asks the server's root for /favicon.ico on its own (the site names no icon): that
        # 404 is the local server's, not the site's (published, the site is not at its host's root).
        if message.type == "error" and where != self.origin + "favicon.ico":
            self.now.console.append(f"{message.text}" + (f" (at {where})" if where else ""))

    def _request(self, request):
        if not self._local(request.url):
            self.now.foreign.append(request.url)

    def _failed(self, request):
        if self._local(request.url):  # a foreign one fails too (its host does not resolve), reported as foreign
            self.now.failed.append(f"{request.url}: {request.failure}")

    def _response(self, response):
        if response.status >= 400:
            self.now.failed.append(f"{response.url}: HTTP {response.status}")


@dataclass
class Visit:
    problems: Problems
    links: list[tuple[str, str]]  # (href as written, URL as resolved)
    broken_images: list[str]


@dataclass
class Crawl:
    site: Path
    origin: str
    visits: dict[str, Visit]  # by the page's path in the site
    ids: dict[str, set[str]]


def pages_of(site: Path) -> list[str]:
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))


def target(url: str, site: Path) -> tuple[str, str]:
    """The file of the build that a URL of the local server serves, and the URL's fragment."""
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/")
    if not path or path.endswith("/") or (site / path).is_dir():
        path = f"{path.rstrip('/')}/index.html".lstrip("/")
    return path, unquote(parts.fragment)


def fail(what: str, problems: dict[str, list[str]]) -> None:
    """Fails naming every culprit, each with the pages it is on (a sidebar link is on all of them)."""
    if problems:
        lines = []
        for culprit, pages in sorted(problems.items()):
            where = ", ".join(pages[:3]) + (f" and {len(pages) - 3} more pages" if len(pages) > 3 else "")
            lines.append(f"  {culprit}  [on {where}]")
        pytest.fail(f"{what} ({len(problems)}):\n" + "\n".join(lines), pytrace=False)


@pytest.fixture(scope="module")
def context():
    try:
        site_browser.chromium()
        missing = None
    except site_browser.ChromiumMissing as error:
        missing = str(error)
    if missing:  # failed outside the except block: one line, no chained traceback
        pytest.fail(missing, pytrace=False)
    with site_browser.browser_context(viewport={"width": 1280, "height": 900}) as context:
        yield context


@dataclass
class Build:
    out: Path
    failure: str | None  # sphinx-build's output, when it failed


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Build:
    out = tmp_path_factory.mktemp("site") / "site"
    try:
        site_browser.build(out)
    except site_browser.BuildFailed as error:
        return Build(out, str(error))
    return Build(out, None)


@pytest.fixture(scope="module")
def site(build) -> Path:
    if build.failure:  # one line here; test_site_builds_without_warnings shows sphinx-build's output
        pytest.fail("no site to open: sphinx-build -W failed (see test_site_builds_without_warnings)", pytrace=False)
    return build.out


@pytest.fixture(scope="module")
def origin(site):
    with site_browser.serve(site) as origin:
        yield origin


@pytest.fixture(scope="module")
def browser_page(origin, context):
    """The one page every test navigates, and the recorder listening to it."""
    page = context.new_page()
    return page, Recorder(page, origin)


@pytest.fixture(scope="module")
def crawl(browser_page, site, origin) -> Crawl:
    """Every .html page of the build, opened once."""
    page, recorder = browser_page
    visits, ids = {}, {}
    for name in pages_of(site):
        problems = recorder.start()
        url = f"{origin}/{name}"
        refresh = REFRESH.search((site / name).read_text(encoding="utf-8", errors="replace"))
        try:
            page.goto(url, wait_until="load")
            if refresh:  # the root's index.html: it leads on to docs/index.html, which is crawled on its own
                destination = urljoin(url, refresh.group(1))
                page.wait_for_url(destination, wait_until="load")
                visits[name], ids[name] = Visit(problems, [(refresh.group(1), destination)], []), set()
                continue
            found = page.evaluate(INSPECT)
        except PlaywrightError as error:  # a page that does not load, or times out: its failure, not a traceback
            problems.failed.append(f"{url}: {error.message.splitlines()[0]}")
            visits[name], ids[name] = Visit(problems, [], []), set()
            continue
        visits[name] = Visit(problems, [tuple(link) for link in found["links"]], found["broken"])
        ids[name] = set(found["ids"])
    return Crawl(site, origin, visits, ids)


def by_culprit(crawl: Crawl, kind) -> dict[str, list[str]]:
    problems = defaultdict(list)
    for name, visit in crawl.visits.items():
        for culprit in dict.fromkeys(kind(visit)):
            problems[culprit].append(name)
    return problems


def test_site_builds_without_warnings(build):
    if build.failure:
        pytest.fail(build.failure, pytrace=False)


def test_every_page_is_opened(crawl):
    assert "docs/index.html" in crawl.visits, f"no docs/index.html among the pages: {sorted(crawl.visits)}"
    assert "index.html" in crawl.visits, "no index.html at the site's root (docs/_root/ should put it there)"


def test_no_console_errors(crawl):
    fail("console errors", by_culprit(crawl, lambda visit: visit.problems.console))


def test_no_failed_requests(crawl):
    fail("failed requests (or HTTP status >= 400)", by_culprit(crawl, lambda visit: visit.problems.failed))


def test_no_requests_off_the_local_server(crawl):
    fail("requests to another host than the local server", by_culprit(crawl, lambda visit: visit.problems.foreign))


def test_every_image_loads(crawl):
    fail("images that did not load (naturalWidth 0)", by_culprit(crawl, lambda visit: visit.broken_images))


def test_internal_links_and_anchors_resolve(crawl):
    def broken(visit: Visit):
        for written, url in visit.links:
            if not url.startswith(crawl.origin + "/"):
                continue  # off the site: not followed
            path, fragment = target(url, crawl.site)
            if not (crawl.site / path).is_file():
                yield f"link {written!r}: no {path} in the build"
            elif fragment and path.endswith(".html"):
                if fragment not in crawl.ids[path]:  # every page was crawled
                    yield f"link {written!r}: no id {fragment!r} on {path}"

    fail("internal links or anchors that lead nowhere", by_culprit(crawl, broken))


def framework_sets(page) -> list[tuple[int, dict]]:
    """The page's tab-sets of the framework sync group (or with a JAX tab), with their index."""
    return [
        (i, s) for i, s in enumerate(site_browser.tab_sets(page)) if "framework" in s["groups"] or "JAX" in s["labels"]
    ]


def test_framework_tabs_switch_together(browser_page, crawl):
    page, recorder = browser_page
    if not (crawl.site / SIDE_BY_SIDE).is_file():
        pytest.fail(
            f"{SIDE_BY_SIDE} is not in the build (docs/side-by-side.md, with its tab-sets of "
            ":sync-group: framework, is missing), so its framework tabs cannot be checked",
            pytrace=False,
        )
    problems = recorder.start()
    page.goto(f"{crawl.origin}/{SIDE_BY_SIDE}", wait_until="load")
    sets = framework_sets(page)
    assert len(sets) >= 2, f"{SIDE_BY_SIDE}: {len(sets)} framework tab-set(s), expected several: {sets}"
    unsynced = [f"tab-set {i} (tabs {s['labels']})" for i, s in sets if s["groups"] != ["framework"]]
    assert not unsynced, f"{SIDE_BY_SIDE}: tab-sets not (only) in :sync-group: framework: {unsynced}"
    lacking = {label: [i for i, s in sets if label not in s["labels"]] for label in FRAMEWORKS}
    lacking = {label: indices for label, indices in lacking.items() if indices}
    assert not lacking, f"{SIDE_BY_SIDE}: tab-sets without a tab for each framework {FRAMEWORKS}: {lacking}"

    first = sets[0][0]
    for label in ("PyTorch", "JAX"):  # to PyTorch first, so that choosing JAX is a change on every set
        site_browser.choose_tab(page, label, first)
        wrong = [
            f"tab-set {i} shows {s['checked']!r}" + ("" if s["shown"] else " (its content hidden)")
            for i, s in framework_sets(page)
            if s["checked"] != label or not s["shown"]
        ]
        assert not wrong, (
            f"{SIDE_BY_SIDE}: after clicking {label!r} on tab-set {first}, not every set followed: {wrong}"
        )
    fail(f"problems in the browser on {SIDE_BY_SIDE} while switching tabs", by_culprit_of(problems, SIDE_BY_SIDE))


def test_search_finds_train_step(browser_page, crawl):
    page, recorder = browser_page
    problems = recorder.start()
    page.goto(f"{crawl.origin}/search.html?q=train_step", wait_until="load")
    results = page.locator("#search-results ul.search li a")
    try:
        results.first.wait_for(timeout=20_000)
        summary = None
    except PlaywrightError:  # a timeout: report what the page says instead
        summary = page.locator("#search-results").inner_text(timeout=1_000)
    if summary is not None:
        pytest.fail(f"search.html?q=train_step: no result after 20 s; the page says: {summary!r}", pytrace=False)
    pages = []
    for url in results.evaluate_all("links => links.map(a => a.href)"):
        path, _ = target(url, crawl.site)
        if url.startswith(crawl.origin + "/") and path.endswith(".html") and (crawl.site / path).is_file():
            pages.append(path)
    assert pages, f"search.html?q=train_step: no result links to a page of the site: {results.all_inner_texts()}"
    fail("problems in the browser while searching", by_culprit_of(problems, "search.html?q=train_step"))


def by_culprit_of(problems: Problems, where: str) -> dict[str, list[str]]:
    return {culprit: [where] for culprit in problems.console + problems.failed + problems.foreign}

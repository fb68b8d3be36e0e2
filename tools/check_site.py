"""Open every page of a built documentation site in headless Chromium and report what is broken.

Usage::

    mkdocs build --strict
    python tools/check_site.py site --screenshots runs/docs-check

The site is served on 127.0.0.1 (a random port) and each page is opened in Debian's ``chromium``
(driven by Playwright; no browser is downloaded). A page fails on:

- a console error or an uncaught script error;
- a request that leaves 127.0.0.1 (it is blocked and reported), fails, or answers 400 or more;
- a link to a page or file of the site that does not exist, or an anchor (``#id``) that the
  target page does not have;
- an image that does not decode, an audio file the browser cannot read;
- a formula left as TeX: a ``.arithmatex`` element MathJax did not render, or TeX commands or
  ``$`` delimiters left in the page's text outside code.

It also types ``quantize_from`` and ``ResGenSampler`` into the site search and checks that each
finds its entry on an API page, and saves screenshots of the home page, one tutorial and one API
page. Exit status 1 when anything failed (each problem on one line).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urldefrag, urlsplit

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ModuleNotFoundError:  # reported by check_site, which imports playwright itself
    PlaywrightTimeout = TimeoutError

SEARCH_TERMS = {"quantize_from": "api/quantizers/", "ResGenSampler": "api/diffusion/"}
"""Each term the site search must find: a result must link to the term's own entry (an anchor
ending in the term) on the given API page."""

SCREENSHOTS = {
    "home.png": "",
    "tutorial.png": "tutorials/build-a-generator/",
    "api.png": "api/quantizers/",
}
"""Screenshot file name -> page (relative to the site root)."""

# TeX left in prose: a backslash command, \( \) \[ \] delimiters, or $...$ / $$.
RAW_TEX = re.compile(r"\\[A-Za-z]{2,}|\\[()\[\]]|\$\$|\$[^\s$][^$\n]*\$")

_PAGE_STATE = """() => {
  const out = {links: [], ids: [], math: 0, rendered: 0, prose: ""};
  out.links = Array.from(document.querySelectorAll("a[href]"), a => a.href);
  out.ids = Array.from(document.querySelectorAll("[id]"), e => e.id)
    .concat(Array.from(document.querySelectorAll("a[name]"), a => a.name));
  const math = document.querySelectorAll(".arithmatex");
  out.math = math.length;
  out.rendered = Array.from(math).filter(e => e.querySelector("mjx-container")).length;
  const article = document.querySelector("article") || document.body;
  const copy = article.cloneNode(true);
  copy.querySelectorAll("pre, code, mjx-container, script, style").forEach(e => e.remove());
  out.prose = copy.textContent;
  return out;
}"""

_MEDIA_STATE = """async () => {
  const wait = (ms) => new Promise(r => setTimeout(r, ms));
  const bad = [];
  for (const img of document.querySelectorAll("img")) {
    try { await Promise.race([img.decode(), wait(10000)]); } catch (e) {}
    if (!img.complete || img.naturalWidth === 0) bad.push("image " + img.currentSrc || img.src);
  }
  for (const audio of document.querySelectorAll("audio")) {
    const ok = await new Promise(resolve => {
      if (audio.readyState >= 1 && audio.duration > 0) return resolve(true);
      audio.addEventListener("loadedmetadata", () => resolve(audio.duration > 0));
      audio.addEventListener("error", () => resolve(false));
      setTimeout(() => resolve(false), 10000);
      audio.preload = "metadata";
      audio.load();
    });
    const src = audio.currentSrc || (audio.querySelector("source") || {}).src;
    if (!ok) bad.push("audio " + src + " (error " + (audio.error && audio.error.code) + ")");
  }
  return bad;
}"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        """No access log."""


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        """A connection the browser dropped is not the site's problem (its requests are
        checked in the browser)."""


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def find_chromium() -> str:
    """The system Chromium (``RESGEN_CHROMIUM`` overrides); an error naming the package."""
    path = os.environ.get("RESGEN_CHROMIUM") or shutil.which("chromium")
    if not path:
        raise FileNotFoundError(
            "no chromium on PATH: run `bash tools/install_docs.sh .venv/bin/python` "
            "(apt-get install chromium)"
        )
    return path


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the site, as paths relative to its root (``""`` for the home page)."""
    pages = []
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site).as_posix()
        if rel == "404.html":
            continue
        pages.append(rel[: -len("index.html")] if rel.endswith("index.html") else rel)
    return pages


def _page_key(url: str, base: str) -> str | None:
    """The page a same-site URL points to (as in :func:`site_pages`), or ``None`` for another
    site."""
    if not url.startswith(base):
        return None
    path = unquote(urlsplit(url).path)[1:]
    return path[: -len("index.html")] if path.endswith("index.html") else path


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def site_search(
    page,  # noqa: ANN001 (playwright's Page)
    base: str,
    term: str,
    timeout: float = 60.0,
) -> tuple[list[str], str]:
    """Search the site for ``term`` from the home page; returns the result links and what the
    search box said last.

    The theme reads the box on focus, on ``keyup`` and when its search worker has loaded the
    index, and ignores a value it has already searched. ``?q=TERM`` opens the home page with the
    box filled, so the query runs as soon as the index is ready; if no result shows, the box is
    cleared and typed again (a key event each time) until ``timeout`` seconds pass.
    """
    box = "input.md-search__input"
    counted = """() => /[0-9]+ matching document/i.test(
      (document.querySelector(".md-search-result__meta") || {}).textContent || "")"""
    page.goto(f"{base}?q={quote(term)}", wait_until="load")
    deadline = time.monotonic() + timeout
    while True:
        try:
            # a count, then the results rendered after it ("No matching documents" may also be
            # the answer of a worker that is still loading: only a count ends the wait)
            page.wait_for_function(counted, timeout=5000)
            page.wait_for_selector(".md-search-result__item", timeout=5000)
            links = page.eval_on_selector_all(
                ".md-search-result__item a", "links => links.map(a => a.href)"
            )
            return links, page.inner_text(".md-search-result__meta")
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                return [], page.inner_text(".md-search-result__meta")
        for value in ("", term):  # two different values, each announced by a key release
            page.fill(box, value)
            page.press(box, "End")


def check_site(
    site: str | Path, screenshots: str | Path | None = None, *, search: bool = True
) -> list[str]:
    """Open every page of the built site ``site`` in headless Chromium; returns the problems
    found (empty when the site is sound).

    Args:
        site: the built site (``mkdocs build``'s ``site_dir``).
        screenshots: folder for the screenshots of :data:`SCREENSHOTS` (``None``: none taken).
        search: also check that the site search finds each of :data:`SEARCH_TERMS`.
    """
    from playwright.sync_api import sync_playwright

    site = Path(site)
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"{site} is not a built site (no index.html)")
    pages = site_pages(site)
    problems: list[str] = []
    with serve(site) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium())
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        current = {"page": ""}
        blocked: set[str] = set()

        def report(message: str) -> None:
            line = f"{current['page'] or '/'}: {message}"
            if line not in problems:  # a fault seen twice (e.g. a retried image) counts once
                problems.append(line)

        def route(route) -> None:  # noqa: ANN001 (playwright's Route)
            url = route.request.url
            if url.startswith(base) or url.startswith(("data:", "blob:")):
                route.continue_()
                return
            blocked.add(url)
            report(f"request leaves the site: {url}")
            route.abort("blockedbyclient")

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and report(f"console error: {m.text}"))
        page.on("pageerror", lambda e: report(f"script error: {e}"))
        page.on(
            "requestfailed",
            lambda r: r.url not in blocked and report(f"request failed: {r.url} ({r.failure})"),
        )
        page.on("response", lambda r: r.status >= 400 and report(f"HTTP {r.status}: {r.url}"))

        links: dict[str, list[str]] = {}
        ids: dict[str, set[str]] = {}
        for rel in pages:
            current["page"] = rel
            response = page.goto(base + rel, wait_until="load")
            if response is None or response.status != 200:
                report(f"page answered {response and response.status}")
                continue
            page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
            state = page.evaluate(_PAGE_STATE)
            if state["rendered"] != state["math"]:
                unrendered = state["math"] - state["rendered"]
                report(f"{unrendered} of {state['math']} formulas left unrendered")
            raw = list(RAW_TEX.finditer(state["prose"]))
            if raw:
                first = raw[0]
                text = state["prose"][max(0, first.start() - 30) : first.end() + 30]
                report(
                    f"raw TeX in the text ({len(raw)} places), first: {' '.join(text.split())!r}"
                )
            for bad in page.evaluate(_MEDIA_STATE):
                report(f"does not load: {bad}")
            page.wait_for_load_state("networkidle")  # nothing cut off by the next navigation
            links[rel] = state["links"]
            ids[rel] = set(state["ids"])
            for name, target in SCREENSHOTS.items():
                if screenshots is not None and rel == target:
                    Path(screenshots).mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(Path(screenshots) / name))

        # Links: every same-site target exists, and so does its anchor.
        statuses: dict[str, int] = {}
        for rel, hrefs in links.items():
            current["page"] = rel
            for href in sorted(set(hrefs)):
                url, fragment = urldefrag(href)
                target = _page_key(url, base)
                if target is None:
                    continue  # another site or scheme: a link, not a request
                if target in ids:
                    if fragment and unquote(fragment) not in ids[target]:
                        report(f"broken anchor: {href[len(base) - 1 :]}")
                    continue
                if url not in statuses:
                    statuses[url] = _status(url)
                if statuses[url] != 200:
                    report(f"broken link ({statuses[url]}): {href[len(base) - 1 :]}")

        # Search: each term finds a result on its API page.
        current["page"] = ""
        for term, target in SEARCH_TERMS.items() if search else ():
            hrefs, said = site_search(page, base, term)
            if not hrefs:
                report(f"search for {term!r} shows no result within a minute (it says {said!r})")
            elif not any(
                _page_key(urldefrag(h)[0], base) == target and urldefrag(h)[1].endswith(term)
                for h in hrefs
            ):
                found = [h[len(base) - 1 :] for h in hrefs[:6]]
                report(f"search for {term!r} does not find its entry on {target} (found: {found})")
        browser.close()
    if screenshots is not None:
        missing = [target for target in SCREENSHOTS.values() if target not in pages]
        problems += [f"{target}: page to screenshot is missing" for target in missing]
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line: check a built site, print each problem, exit 1 if there is any."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default="site", help="the built site (mkdocs build)")
    parser.add_argument("--screenshots", default=None, help="folder for the screenshots")
    args = parser.parse_args(argv)
    problems = check_site(args.site, args.screenshots)
    for problem in problems:
        print(problem)
    pages = len(site_pages(Path(args.site)))
    print(f"{pages} pages checked: {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""The documentation site, built and opened page by page in headless Chromium.

``tools/check_site.py`` does the checking (see its docstring for what fails a page); the first
test proves on a small hand-made site that each kind of fault is caught, the second builds the
real site (``mkdocs build --strict``) and requires no problem at all. Needs what
``tools/install_docs.sh`` installs (chromium, MathJax, Roboto); a missing piece fails the test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("RESGEN_DOCS_SCREENSHOTS", ROOT / "runs" / "docs-check"))
"""Where the screenshots of the home page, a tutorial and an API page are saved."""


def _load_checker():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("check_site", ROOT / "tools" / "check_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_site = _load_checker()

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>t</title>{head}</head>
<body><article><h1 id="top">Test</h1>{body}</article></body></html>"""


def _write(site: Path, rel: str, body: str = "", head: str = "") -> None:
    path = site / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_PAGE.format(head=head, body=body))


def test_the_checker_catches_each_kind_of_fault(tmp_path: Path) -> None:
    site = tmp_path / "site"
    # a sound page: an anchor, a link to it, an image, no script
    from PIL import Image

    (site / "img").mkdir(parents=True)
    Image.new("RGB", (4, 4), "red").save(site / "img" / "ok.png")
    _write(site, "index.html", '<a href="good/#top">ok</a> <img src="img/ok.png">')
    _write(site, "good/index.html", '<p id="here">fine</p> <a href="../#top">home</a>')
    # one fault per page
    faults = {
        "link/": '<a href="../nowhere/">x</a>',
        "anchor/": '<a href="../good/#missing">x</a>',
        "image/": '<img src="../img/missing.png">',
        "audio/": '<audio controls src="../img/ok.png"></audio>',
        "tex/": r"<p>the loss is \(\sum_i z_i\) per position</p>",
        "console/": "<script>console.error('boom')</script>",
        "outside/": '<script src="https://unpkg.com/mathjax@3/es5/tex-mml-chtml.js"></script>',
    }
    for rel, body in faults.items():
        _write(site, rel + "index.html", body)
    problems = check_site.check_site(site, screenshots=None, search=False)
    print("\n".join(problems))
    by_page = {rel: [p for p in problems if p.startswith(rel + ":")] for rel in faults}
    assert "broken link (404): /nowhere/" in " ".join(by_page["link/"])
    assert "broken anchor: /good/#missing" in " ".join(by_page["anchor/"])
    assert "does not load: image" in " ".join(by_page["image/"])
    assert "does not load: audio" in " ".join(by_page["audio/"])
    assert "raw TeX" in " ".join(by_page["tex/"])
    assert "console error: boom" in " ".join(by_page["console/"])
    assert "request leaves the site: https://unpkg.com/" in " ".join(by_page["outside/"])
    # the sound pages report nothing
    assert not [p for p in problems if p.startswith(("/:", "good/:"))], problems


# Not --quiet: it hides the warnings that --strict counts, and a broken Markdown link would pass.
@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def test_every_page_works_offline_in_chromium(built_site: Path) -> None:
    problems = check_site.check_site(built_site, screenshots=SCREENSHOTS)
    assert not problems, "\n".join(problems)
    for name in check_site.SCREENSHOTS:
        assert (SCREENSHOTS / name).stat().st_size > 10_000, name
    print(f"screenshots in {SCREENSHOTS}")


def test_no_page_names_an_outside_script_or_font(built_site: Path) -> None:
    """A static complement of the browser check: no built page refers to an outside script,
    style sheet or font (links to other sites are fine; loading from them is not)."""
    import re

    loads = re.compile(r"<(?:script|link|img|audio|source)\b[^>]*\b(?:src|href)=\"(https?:)?//")
    offenders = []
    for page in built_site.rglob("*.html"):
        offenders += [
            f"{page.relative_to(built_site)}: {m.group(0)}"
            for m in loads.finditer(page.read_text(encoding="utf-8"))
        ]
    assert not offenders, offenders

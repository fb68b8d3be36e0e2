"""MkDocs hook: the site serves its own math renderer and fonts, so it works with no network.

``mkdocs.yml`` loads MathJax from ``javascripts/mathjax/`` and the Roboto text font from
``assets/fonts/roboto/``; this hook copies both into the built site after every build:

- MathJax 3 (its ``es5`` tree: the renderer, its fonts and the extensions it loads on demand),
  installed from npm by ``tools/install_docs.sh`` under ``<venv>/share/resgen-docs/``, or from
  the folder named by ``RESGEN_MATHJAX_DIR`` (a ``mathjax`` package folder);
- Roboto (woff2) from Debian's ``fonts-roboto-fontface`` package.

A missing source fails the build with the command that installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

MATHJAX_VERSION = "3.2.2"
"""The MathJax release ``tools/install_docs.sh`` installs (``docs/javascripts/mathjax.js``
configures this major version)."""

ROBOTO_DIR = Path("/usr/share/fonts-roboto-fontface/fonts/roboto")
"""Where ``apt-get install fonts-roboto-fontface`` puts the web fonts."""

ROBOTO_FILES = (
    "Roboto-Regular.woff2",
    "Roboto-RegularItalic.woff2",
    "Roboto-Bold.woff2",
    "Roboto-BoldItalic.woff2",
    "Roboto-Light.woff2",
    "Roboto-Medium.woff2",
)
"""The weights ``docs/stylesheets/extra.css`` declares."""

INSTALL = "bash tools/install_docs.sh .venv/bin/python"


def mathjax_dir() -> Path:
    """The installed ``mathjax`` package folder (checked: version and renderer present)."""
    override = os.environ.get("RESGEN_MATHJAX_DIR")
    folder = (
        Path(override)
        if override
        else Path(sys.prefix) / "share" / "resgen-docs" / "node_modules" / "mathjax"
    )
    entry = folder / "es5" / "tex-mml-chtml.js"
    if not entry.is_file():
        raise PluginError(f"MathJax is not installed at {folder} (no {entry.name}); run: {INSTALL}")
    version = json.loads((folder / "package.json").read_text())["version"]
    if version != MATHJAX_VERSION:
        raise PluginError(
            f"MathJax {version} at {folder}, the site needs {MATHJAX_VERSION}; run: {INSTALL}"
        )
    return folder


def on_post_build(config, **_: object) -> None:  # noqa: ANN001 (mkdocs' config object)
    """Copy MathJax and the Roboto web fonts into the built site."""
    site = Path(config["site_dir"])
    target = site / "javascripts" / "mathjax"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(mathjax_dir() / "es5", target)
    missing = [name for name in ROBOTO_FILES if not (ROBOTO_DIR / name).is_file()]
    if missing:
        raise PluginError(
            f"Roboto web fonts missing from {ROBOTO_DIR} ({', '.join(missing)}); run: {INSTALL}"
        )
    fonts = site / "assets" / "fonts" / "roboto"
    fonts.mkdir(parents=True, exist_ok=True)
    for name in ROBOTO_FILES:
        shutil.copyfile(ROBOTO_DIR / name, fonts / name)

"""MkDocs hook: Sphinx-style roles in docstrings become links to the API reference.

The library's docstrings name other objects the Sphinx way (``:class:`ResidualVQ```,
``:func:`~resgen.diffusion.masking.split_embeddings```). The Google-style renderer leaves the
role in the text, so a reader would see ``:class:ResidualVQ``. This hook, in two passes:

1. ``on_page_content`` (every page, before any is written) notes each API anchor
   (``id="resgen.…"``) and the page it is on, and replaces each role with a marked code span
   (``~`` keeps the last name only, as in Sphinx), so the search index holds plain names;
2. ``on_post_page`` turns each marked span into a link to its anchor: the exact dotted path, or
   else the one anchor whose path ends with the name (a name that several objects share, or an
   object outside the reference such as ``torch.Tensor``, stays plain code).
"""

from __future__ import annotations

import html
import re
from typing import Any

from mkdocs.utils import get_relative_url

ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")
MARKED = re.compile(r'<code data-xref="([\w.]+)">([^<]*)</code>')
ANCHOR = re.compile(r'\bid="(resgen(?:\.\w+)*)"')

_anchors: dict[str, str] = {}
"""Dotted path of every API anchor -> the URL of its page (filled during the build)."""


def on_pre_build(config: Any) -> None:  # noqa: ARG001 - mkdocs' hook signature
    """Forget the anchors of a previous build (``mkdocs serve`` rebuilds in one process)."""
    _anchors.clear()


def _mark(match: re.Match[str]) -> str:
    short, name = match.groups()
    shown = name.rsplit(".", 1)[-1] if short else name
    return f'<code data-xref="{name}">{html.escape(shown)}</code>'


def on_page_content(content: str, page: Any, config: Any, files: Any) -> str:  # noqa: ARG001
    """Note the page's API anchors; mark its roles (see the module docstring)."""
    for path in ANCHOR.findall(content):
        _anchors.setdefault(path, page.url)
    return ROLE.sub(_mark, content)


def resolve(name: str) -> str | None:
    """The dotted path of the anchor ``name`` refers to, or ``None`` when none or several."""
    if name in _anchors:
        return name
    suffix = "." + name
    found = [path for path in _anchors if path.endswith(suffix)]
    return found[0] if len(found) == 1 else None


def on_post_page(output: str, page: Any, config: Any) -> str:  # noqa: ARG001
    """Link each marked code span to its anchor, or leave it plain code."""

    def link(match: re.Match[str]) -> str:
        name, shown = match.groups()
        target = resolve(name)
        if target is None:
            return f"<code>{shown}</code>"
        href = get_relative_url(_anchors[target], page.url) + "#" + target
        return f'<a href="{href}"><code>{shown}</code></a>'

    return MARKED.sub(link, output)

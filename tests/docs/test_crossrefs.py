"""The docs hook that turns Sphinx roles of docstrings into links (``tools/docs_crossrefs.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]


def _hook():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(
        "docs_crossrefs", ROOT / "tools" / "docs_crossrefs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_roles_become_links_to_their_anchor_or_plain_code() -> None:
    hook = _hook()
    hook.on_pre_build(None)
    api = SimpleNamespace(url="api/quantizers/")
    guide = SimpleNamespace(url="guides/intro/")
    hook.on_page_content(
        '<h2 id="resgen.quantizers.residual_vq.ResidualVQ">R</h2>'
        '<h2 id="resgen.a.Config"></h2><h2 id="resgen.b.Config"></h2>',
        api,
        None,
        None,
    )
    content = hook.on_page_content(
        "see :class:<code>~resgen.quantizers.residual_vq.ResidualVQ</code>, "
        ":class:<code>ResidualVQ</code>, :class:<code>Config</code> and "
        ":class:<code>torch.Tensor</code>",
        guide,
        None,
        None,
    )
    assert ":class:" not in content  # the search index gets plain names
    page = hook.on_post_page(content, guide, None)
    link = '<a href="../../api/quantizers/#resgen.quantizers.residual_vq.ResidualVQ">'
    assert page.count(link) == 2
    assert f"{link}<code>ResidualVQ</code></a>," in page  # `~` shows the last name only
    assert "<code>Config</code> and" in page and "#resgen.a.Config" not in page  # ambiguous
    assert page.endswith("<code>torch.Tensor</code>")  # outside the reference: plain code

"""The packages stack without imports that run back up: the training loop imports no recipe,
no TTS part and no data set; the data layer and the TTS parts import no recipe."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "resgen"

# package -> packages of resgen it must not import
FORBIDDEN = {
    "training": ("resgen.recipes", "resgen.tts", "resgen.data", "resgen.eval"),
    "data": ("resgen.recipes", "resgen.tts", "resgen.training"),
    "tts": ("resgen.recipes",),
}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_back_up(package: str) -> None:
    bad = [
        f"{path.relative_to(ROOT.parent)} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in sorted(_imports(path))
        if module.startswith(FORBIDDEN[package])
    ]
    assert not bad, bad

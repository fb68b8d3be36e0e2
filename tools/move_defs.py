"""Move named top-level definitions from one Python module to another, text unchanged.

usage: python tools/move_defs.py SRC DST NAME [NAME ...]

Each definition (def, class, or assignment to the name) moves with its decorators, the comment
lines right above it and the docstring right below an assignment; it is appended to DST (created
when missing) in its source order. Imports are not touched: fix them afterwards (ruff --fix).
Used for the splits of issue 24; ``tools/compare_moved_ast.py`` checks the result.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path


def _names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def main(src: str, dst: str, names: list[str]) -> None:
    text = Path(src).read_text()
    lines = text.splitlines(keepends=True)
    body = ast.parse(text).body
    wanted, spans = set(names), []
    for i, node in enumerate(body):
        if not _names(node) & wanted:
            continue
        wanted -= _names(node)
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        while start > 0 and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        end = node.end_lineno
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(node, (ast.Assign, ast.AnnAssign))
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            end = nxt.end_lineno
        spans.append((start, end))
    if wanted:
        sys.exit(f"not found in {src}: {', '.join(sorted(wanted))}")
    moved = ["".join(lines[a:b]).rstrip("\n") + "\n" for a, b in spans]
    keep = lines[:]
    for a, b in reversed(spans):
        del keep[a:b]
    Path(src).write_text(re.sub(r"\n{4,}", "\n\n\n", "".join(keep)).rstrip("\n") + "\n")
    out = Path(dst)
    old = out.read_text().rstrip("\n") + "\n\n\n" if out.exists() else ""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(old + "\n\n".join(moved))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])

"""Rewrite imports and dotted references of the modules moved by issue 24 to their new homes.

usage: python tools/rewrite_imports.py FILE [FILE ...]

``from OLD import a, b`` becomes one ``from NEW import ...`` per new module that defines the
names (found by parsing the new modules); ``OLD.NAME`` in text (docstrings, docs pages, Sphinx
roles) becomes ``NEW.NAME``, and a bare ``OLD`` becomes the module it was moved to with git.
Sort the imports afterwards (``ruff check --select I --fix``).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# old module -> (the module ``git mv`` took it to, other modules that received part of it)
MOVES: dict[str, tuple[str, ...]] = {
    "resgen.recipes.trainer": ("resgen.training.trainer",),
    "resgen.recipes.checkpoint": ("resgen.training.checkpoint",),
    "resgen.recipes.averaging": ("resgen.training.averaging",),
    "resgen.recipes.plots": ("resgen.training.plots",),
    "resgen.recipes.run_lock": ("resgen.training.run_lock",),
    "resgen.eval.audio_io": ("resgen.data.audio_io",),
    "resgen.eval.image_io": ("resgen.data.image_io",),
    "resgen.recipes.fashion_data": ("resgen.data.fashion_mnist",),
    "resgen.recipes.libritts": ("resgen.data.libritts",),
    "resgen.recipes.tts_corpus": (
        "resgen.data.speech_corpus.builder",
        "resgen.data.speech_corpus.grammar",
        "resgen.data.speech_corpus.voices",
        "resgen.data.manifest",
    ),
    "resgen.recipes.tts_alignment": (
        "resgen.data.speech_corpus.phone_alignments",
        "resgen.tts.front_ends",
    ),
    "resgen.recipes.tts_data": ("resgen.tts.batches",),
    "resgen.recipes.tts_eval": ("resgen.tts.synthesis", "resgen.recipes.tts_synth"),
    "resgen.recipes.tts_aligner": ("resgen.tts.timing",),
    "resgen.recipes.tts_training": ("resgen.tts.objectives", "resgen.recipes.tts_synth"),
    "resgen.recipes.tts_config": ("resgen.recipes.tts_synth_config",),
}


def defined(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
    return out


def home(old: str, name: str) -> str:
    for new in MOVES[old]:
        if name in defined(new):
            return new
    raise SystemExit(f"{name} of {old} is defined in none of {MOVES[old]}")


def rewrite(text: str) -> str:
    lines = text.splitlines(keepends=True)
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = None
    if tree is not None:
        edits = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in MOVES:
                indent = re.match(r"\s*", lines[node.lineno - 1]).group(0)
                groups: dict[str, list[str]] = {}
                for alias in node.names:
                    name = alias.name + (f" as {alias.asname}" if alias.asname else "")
                    groups.setdefault(home(node.module, alias.name), []).append(name)
                new = "".join(
                    f"{indent}from {m} import {', '.join(n)}\n" for m, n in groups.items()
                )
                edits.append((node.lineno - 1, node.end_lineno, new))
        for a, b, new in sorted(edits, reverse=True):
            lines[a:b] = [new]
        text = "".join(lines)
    for old in sorted(MOVES, key=len, reverse=True):
        dotted = re.compile(re.escape(old) + r"(?:\.(\w+))?(?![\w])")

        def sub(m: re.Match[str], old: str = old) -> str:
            name = m.group(1)
            if name is None:
                return MOVES[old][0]
            return f"{home(old, name)}.{name}"

        text = dotted.sub(sub, text)
    for script in ("tts_probe", "tts_depths", "tts_rescore", "tts_timing", "tts_training_step"):
        text = re.sub(rf"benchmarks([/.]){script}\b", rf"experiments\g<1>{script}", text)
    return text


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        path = Path(arg)
        old = path.read_text()
        new = rewrite(old)
        if new != old:
            path.write_text(new)
            print(f"rewrote {arg}")

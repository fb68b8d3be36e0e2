"""Compare every moved top-level definition of issue 24 with its old self, by AST.

usage: python tools/compare_moved_ast.py [BASE]

BASE is the revision before the move (default: the merge base of HEAD and main).

For each module that issue 24 moved or split, every top-level definition (function, class,
assignment) of the old module (``git show BASE:path``) is looked up in the modules that received
it and compared with ``ast.dump`` (no line numbers). Before comparing, the old source gets the
same import-path rewrite the move applied (``tools/rewrite_imports.py``, in imports and
docstrings), so a definition that differs only there counts as identical; so does one whose
docstrings differ only in line breaks, or whose references to a module object differ only in
the module's local name (see ``_Normalize``). Any other difference must be listed in ALLOWED
(or a removal in REMOVED) with its reason: it is printed (as a unified diff of the unparsed
code) and the script fails on a difference not listed there.
"""

from __future__ import annotations

import ast
import difflib
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rewrite_imports import MOVES, ROOT, rewrite  # noqa: E402


def _path(module: str) -> str:
    return module.replace(".", "/") + ".py"


# old file -> the files that received its definitions
FILES: dict[str, list[str]] = {_path(old): [_path(n) for n in new] for old, new in MOVES.items()}
FILES["resgen/recipes/tts_synth.py"] = ["resgen/recipes/tts_synth.py"]
for script in ("tts_probe", "tts_depths", "tts_rescore", "tts_timing", "tts_training_step"):
    FILES[f"benchmarks/{script}.py"] = [f"experiments/{script}.py"]

# (old file, name) -> why its code changed
ALLOWED: dict[tuple[str, str], str] = {
    ("resgen/recipes/tts_data.py", "training_batch"): (
        "takes pair_prob and prompt_fraction instead of the whole TTSSynthConfig"
    ),
    ("resgen/recipes/tts_data.py", "held_out_batches"): (
        "takes batch_size, pair_prob, prompt_fraction, max_length and seed instead of the config"
    ),
    ("resgen/recipes/tts_training.py", "train_resgen"): (
        "its batch via _generator_batch (shared with the other generator, which calls "
        "training_batch with the two fields it reads); held-out batches via _held_out"
    ),
    ("resgen/recipes/tts_training.py", "train_ar"): (
        "its batch via _generator_batch (shared with the other generator, which calls "
        "training_batch with the two fields it reads); held-out batches via _held_out"
    ),
    ("resgen/recipes/tts_synth.py", "run"): (
        "takes device= (the Recipe protocol) and refuses any but the CPU"
    ),
    ("resgen/recipes/tts_synth.py", "__all__"): "lists the stages moved into the module",
    ("resgen/recipes/tts_corpus.py", "__all__"): "split over four modules",
    ("resgen/recipes/tts_alignment.py", "__all__"): "the front-ends moved to resgen.tts",
    ("resgen/recipes/tts_training.py", "__all__"): "the training stages moved to the recipe",
    ("resgen/recipes/tts_eval.py", "__all__"): "the evaluation moved to the recipe",
    ("benchmarks/tts_probe.py", "main"): "held_out_batches takes the values it reads",
    ("resgen/recipes/fashion_data.py", "load_fashion_mnist"): (
        "reads both files with the one IDX reader, resgen.data.idx.read_idx"
    ),
    ("resgen/eval/image_io.py", "load_idx_images"): "reads the file with resgen.data.idx.read_idx",
    ("resgen/recipes/tts_config.py", "TTSSynthConfig"): (
        "docstring only: two measured findings replaced by pointers to docs/tts.md"
    ),
}

# (old file, name) -> why it is gone
REMOVED: dict[tuple[str, str], str] = {
    ("resgen/recipes/fashion_data.py", "_read_idx"): "replaced by resgen.data.idx.read_idx",
    ("resgen/eval/image_io.py", "_IDX_IMAGE_MAGIC"): "checked by resgen.data.idx.read_idx",
}


# module objects the diagnostic scripts import whole; the move renamed them
_MODULE_ALIASES = {
    "tts_config",
    "tts_data",
    "tts_eval",
    "tts_training",
    "tts_synth",
    "tts_synth_config",
    "batches",
    "tts_batches",
    "synthesis",
    "objectives",
}


class _Normalize(ast.NodeTransformer):
    """What the comparison forgives: whitespace inside strings (docstrings rewrapped after a
    longer import path) and the name of a module object before an attribute (``tts_data.X`` and
    ``batches.X`` both read ``<module>.X``; the attribute, the definition's name, is kept)."""

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if isinstance(node.value, str):
            return ast.Constant(" ".join(node.value.split()))
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if isinstance(node.value, ast.Name) and node.value.id in _MODULE_ALIASES:
            return ast.Attribute(ast.Name("<module>", node.value.ctx), node.attr, node.ctx)
        return self.generic_visit(node)


def _defs(source: str) -> dict[str, ast.stmt]:
    out: dict[str, ast.stmt] = {}
    for node in _Normalize().visit(ast.parse(source)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
    return out


def main(base: str | None = None) -> int:
    if base is None:
        base = subprocess.run(
            ["git", "merge-base", "HEAD", "main"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    failures, allowed, same = [], [], 0
    for old_file, new_files in FILES.items():
        old_source = subprocess.run(
            ["git", "show", f"{base}:{old_file}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        old_defs = _defs(rewrite(old_source))
        new_defs: dict[str, tuple[str, ast.stmt]] = {}
        for new_file in new_files:
            for name, node in _defs((ROOT / new_file).read_text()).items():
                new_defs.setdefault(name, (new_file, node))
        for name, old in old_defs.items():
            if name not in new_defs:
                if (old_file, name) in REMOVED:
                    allowed.append(f"{old_file}:{name} removed: {REMOVED[old_file, name]}")
                else:
                    failures.append(f"{old_file}:{name} is in none of {new_files}")
                continue
            new_file, new = new_defs[name]
            if ast.dump(old) == ast.dump(new):
                same += 1
                continue
            diff = "\n".join(
                difflib.unified_diff(
                    ast.unparse(old).splitlines(), ast.unparse(new).splitlines(), lineterm="", n=1
                )
            )
            line = f"{old_file}:{name} -> {new_file}"
            if (old_file, name) in ALLOWED:
                allowed.append(f"{line}: {ALLOWED[old_file, name]}\n{diff}")
            else:
                failures.append(f"{line}: NOT ALLOWED\n{diff}")
    print(f"{same} moved definitions identical to their old selves (import paths rewritten)")
    print(f"{len(allowed)} allowed differences:")
    for entry in allowed:
        print("  " + entry.replace("\n", "\n    "))
    if failures:
        print(f"{len(failures)} differences not allowed:")
        for entry in failures:
            print("  " + entry.replace("\n", "\n    "))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

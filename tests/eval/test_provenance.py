"""The commit recorded beside benchmark results."""

import re
from pathlib import Path

from resgen.eval.provenance import git_commit


def test_the_commit_is_the_checkout_s_and_unknown_outside_one(tmp_path: Path) -> None:
    here = git_commit(Path(__file__).resolve().parent)
    assert re.fullmatch(r"[0-9a-f]{40}", here) or here == "unknown"
    assert git_commit() == here  # the package's own checkout: this repository
    assert git_commit(tmp_path) == "unknown"

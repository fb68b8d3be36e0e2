"""The Triton nearest-code kernel under Triton's CPU interpreter, compared with the torch reference.

The cases live in ``triton_cases.py`` and run in a fresh process with ``TRITON_INTERPRET=1``:
Triton decides once, when it is first imported, whether its standard library is compiled or
interpreted, so the interpreter cannot be switched on inside a process that may already use
compiled Triton (torch.compile on a GPU machine, for instance).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resgen.quantizers import nearest_code

pytest.importorskip("triton")

CASES = Path(__file__).with_name("triton_cases.py")


def test_triton_kernel_matches_reference_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)]
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the interpreted Triton cases did not finish in 300 s:\n{e.stdout}")
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


def test_forcing_triton_on_cpu_without_the_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        nearest_code(torch.randn(3, 4), torch.randn(5, 4), backend="triton")

"""No evaluator opens a network connection: every socket connect and DNS look-up fails.

The evaluators run in a fresh interpreter (so that import-time code is covered too) whose socket
module is patched before anything else is imported; each attempt is recorded and refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")

SCRIPT = r"""
import json, socket, sys
attempts = []

def refuse(name):
    def blocked(*args, **kwargs):
        attempts.append(f"{name}{args[1:] if name.startswith('socket.') else args}")
        raise OSError("network disabled by resgen's offline test")
    return blocked

socket.socket.connect = refuse("socket.connect")
socket.socket.connect_ex = refuse("socket.connect_ex")
socket.create_connection = refuse("create_connection")
socket.getaddrinfo = refuse("getaddrinfo")

import torch
from pathlib import Path
from resgen.eval.asr import PocketSphinxRecognizer, WhisperRecognizer
from resgen.data.audio_io import load_audio
from resgen.eval.features import InceptionFeatures
from resgen.eval.speaker import ResemblyzerEncoder

results = {}
results["inception"] = list(InceptionFeatures()(torch.zeros(2, 1, 28, 28)).shape)
audio, rate = load_audio(sys.argv[1])
results["whisper"] = WhisperRecognizer().transcribe(audio, rate)
results["pocketsphinx"] = PocketSphinxRecognizer().transcribe(audio, rate)
results["resemblyzer"] = list(ResemblyzerEncoder().embed(audio, rate).shape)
print(json.dumps({"attempts": attempts, "results": results}))
"""


@pytest.mark.skipif(not LIBRIVOX.is_dir(), reason="pocketsphinx-testdata missing")
def test_evaluators_run_with_network_refused(tmp_path) -> None:
    clip = sorted(LIBRIVOX.glob("*.wav"))[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HOME"] = str(tmp_path)  # no cached downloads to fall back on
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(clip)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["attempts"] == [], report["attempts"]
    results = report["results"]
    assert results["inception"] == [2, 2048]
    assert "young man" in results["whisper"].lower()
    assert results["pocketsphinx"]
    assert results["resemblyzer"] == [256]

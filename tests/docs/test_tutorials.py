"""Every tutorial of the documentation runs, as written, from an empty folder.

The ```python and ```bash blocks of each page under ``docs/tutorials/`` are run in order in one
fresh Python process (the shell blocks through ``bash -euo pipefail``), the way a reader who
copies them would; ```text blocks are output shown to the reader and are not run. A tutorial
that breaks fails here, with the page and line of the block in the traceback. Each test then
checks what its tutorial says it produces, and prints the tutorial's wall time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import wave
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "docs" / "tutorials"
FENCE = re.compile(r"^```(python|bash)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def tutorial_script(page: Path) -> str:
    """One Python program running the page's code blocks in order."""
    text = page.read_text()
    lines = ["import subprocess as _tutorial_subprocess"]
    for match in FENCE.finditer(text):
        language, code = match.groups()
        line = text.count("\n", 0, match.start()) + 2
        lines.append(f"# ---- {page.name}, line {line} ({language}) ----")
        if language == "python":
            lines.append(code)
        else:
            lines.append(
                f"_tutorial_subprocess.run(['bash', '-euo', 'pipefail', '-c', {code!r}], "
                "check=True)"
            )
    return "\n".join(lines) + "\n"


def run_tutorial(name: str, folder: Path) -> tuple[str, float]:
    """Run ``docs/tutorials/NAME.md`` in ``folder``; returns its output and wall seconds."""
    page = TUTORIALS / f"{name}.md"
    script = folder / "tutorial.py"
    script.write_text(tutorial_script(page))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    tick = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - tick
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"docs/tutorials/{name}.md failed:\n{output[-6000:]}"
    print(f"tutorial {name}: {seconds:.0f} s")
    return done.stdout, seconds


def test_every_tutorial_page_has_a_test() -> None:
    pages = {p.stem for p in TUTORIALS.glob("*.md")}
    tested = {n[len("test_tutorial_") :].replace("_", "-") for n in globals() if
              n.startswith("test_tutorial_")}  # fmt: skip
    assert pages == tested, (pages, tested)
    for page in pages:  # every page has code to run
        assert len(FENCE.findall((TUTORIALS / f"{page}.md").read_text())) >= 3, page


def test_the_runner_reports_a_failing_block(tmp_path: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text('```python\nx = 1\n```\n\ntext\n\n```bash\ntest "$(echo 2)" = 3\n```\n')
    script = tutorial_script(page)
    assert "broken.md, line 2 (python)" in script and "broken.md, line 8 (bash)" in script
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode != 0 and "CalledProcessError" in done.stderr


def test_tutorial_build_a_generator(tmp_path: Path) -> None:
    out, _ = run_tutorial("build-a-generator", tmp_path)
    for name in ("resgen", "resgen-unguided", "resgen-quantization-confidence", "token-level"):
        assert Image.open(tmp_path / f"{name}.png").size == (8 * 28 * 2, 10 * 28 * 2), name
    scores = dict(re.findall(r"^(\S[^\n]*?)\s+(0\.\d\d|1\.00)$", out, re.MULTILINE))
    assert set(scores) >= {"real images", "ResGen, guidance 3", "token-level head, guidance 3"}
    assert 0.5 < float(scores["real images"]) < 0.8  # the nearest-mean classifier's accuracy
    assert float(scores["ResGen, guidance 3"]) > 0.2  # above chance (0.1): it carries the class


def test_tutorial_your_own_images(tmp_path: Path) -> None:
    run_tutorial("your-own-images", tmp_path)
    for run in ("shapes-smoke", "shapes"):
        metrics = json.loads((tmp_path / "runs" / run / "metrics.json").read_text())
        assert metrics["classes"] == ["circle", "cross", "square"], run
        assert Image.open(tmp_path / "runs" / run / "samples.png").size == (560, 3 * 56), run
    assert metrics["classifier_test_accuracy"] > 0.9  # the held-out shapes are told apart
    assert Image.open(tmp_path / "crosses-and-squares.png").size == (6 * 56, 2 * 56)


def test_tutorial_zero_shot_speech(tmp_path: Path) -> None:
    out, _ = run_tutorial("zero-shot-speech", tmp_path)
    with wave.open(str(tmp_path / "spoken" / "hello.wav"), "rb") as handle:
        assert handle.getframerate() == 16000 and handle.getnframes() > 1600
    assert re.search(r"^wer\b", out, re.MULTILINE) and re.search(r"^similarity\b", out, re.M)


def test_tutorial_evaluate_samples(tmp_path: Path) -> None:
    out, _ = run_tutorial("evaluate-samples", tmp_path)
    results = json.loads((tmp_path / "image-scores.json").read_text())
    assert results["fid_noisy"] > results["fid_clean"] >= 0
    assert (tmp_path / "real-stats.npz").is_file()
    for key in ("fid", "precision", "recall", "inception_score", "wer", "cer", "similarity"):
        assert re.search(rf"^{key}\b", out, re.MULTILINE), key

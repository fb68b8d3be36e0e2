"""Try the ``resgen`` command line as a new user would, with bad inputs and faults, and classify
what each one gets.

Usage (from the repository root; takes a few minutes on 2 cores)::

    python tools/bad_inputs.py --work /tmp/bad-inputs [--image-run RUN] [--tts-run RUN]

Without ``--image-run``/``--tts-run`` the smoke presets are trained first (about 20 s and 2 min).
Each case runs ``python -m resgen.cli ...`` in a subprocess and is classified as:

* ``clear error``: a non-zero exit, no traceback, a one-line message, nothing half-written;
* ``unhelpful``: a non-zero exit without a traceback, but several lines or leftovers;
* ``traceback``: a Python traceback on stderr;
* ``silent wrong``: exit 0 where an error was due, or a wrong result;
* ``correct``: a case that must succeed did, with the right result;
* ``code executed``: a planted pickle payload ran (its marker file appeared).

The table of cases is the "Reliability" page of the documentation.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WORK = Path("/tmp/bad-inputs")
MARKER = WORK / "PWNED"


class Payload:
    """A pickle that creates :data:`MARKER` when unpickled (what a hostile run folder holds)."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def payload_bytes() -> bytes:
    return pickle.dumps({"step": 1, "x": Payload()})


@dataclass
class Case:
    """One bad invocation: its arguments, what must happen, and how to check a success."""

    name: str
    argv: list[str]
    expect: str = "error"  # "error" or "success"
    check: Callable[[], bool] | None = None  # for "success": is the result right?
    clean: Callable[[], bool] | None = None  # for "error": was nothing half-written?
    limit_file_size: int | None = None
    background: list[str] | None = None  # a command started just before (a second writer)
    outcome: str = ""
    message: str = field(default="")


def run_cli(argv: list[str], limit: int | None = None) -> subprocess.CompletedProcess:
    def preexec() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "resgen.cli", *argv],
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        env={**os.environ, "TQDM_DISABLE": "1"},
        timeout=900,
    )


def classify(case: Case) -> None:
    MARKER.unlink(missing_ok=True)
    holder = None
    if case.background:
        holder = subprocess.Popen(
            [sys.executable, "-m", "resgen.cli", *case.background],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(8)  # let it import torch and take the folder
    result = run_cli(case.argv, case.limit_file_size)
    if holder is not None:
        holder.wait()
    err = result.stderr.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    case.message = lines[-1] if lines else ""
    if MARKER.exists():
        case.outcome = "code executed"
    elif "Traceback (most recent call last)" in err:
        case.outcome = "traceback"
    elif case.expect == "success":
        ok = result.returncode == 0 and (case.check is None or case.check())
        case.outcome = "correct" if ok else "silent wrong"
        if result.returncode != 0:
            case.outcome = "unhelpful" if lines else "silent wrong"
    elif result.returncode == 0:
        case.outcome = "silent wrong"
    elif len(lines) == 1 and (case.clean is None or case.clean()):
        case.outcome = "clear error"
    else:
        case.outcome = "unhelpful"


# --------------------------------------------------------------------------- fixtures
def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    return path


def copy_run(run: Path, name: str) -> Path:
    target = WORK / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("corpus", "samples"))
    return target


def plant_payload(run: Path) -> Path:
    """Every non-weight file of a copy of ``run`` gets a payload beside it (``state.pt``) or
    holds one (the old ``state.pt`` name in every checkpoint folder)."""
    for folder in run.glob("*/final"):
        (folder / "state.pt").write_bytes(payload_bytes())
    for folder in run.glob("*/latest"):
        (folder / "state.pt").write_bytes(payload_bytes())
    return run


def interrupted(stage: Path) -> None:
    """Make a stage look killed part-way: its ``final/`` becomes the only ``latest/``."""
    if (stage / "final").exists():
        shutil.rmtree(stage / "latest", ignore_errors=True)
        os.replace(stage / "final", stage / "latest")


def truncate(path: Path, keep: int = 100) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def no_leftovers(folder: Path) -> Callable[[], bool]:
    before = set(folder.iterdir()) if folder.exists() else set()
    return lambda: (set(folder.iterdir()) if folder.exists() else set()) == before


def missing(path: Path) -> Callable[[], bool]:
    return lambda: not path.exists()


def build_cases(image_run: Path, tts_run: Path) -> list[Case]:
    from PIL import Image

    w = WORK
    cases: list[Case] = []
    add = cases.append
    smoke = ["train", "image-fashion", "--preset", "smoke"]

    # ---- train
    add(Case("train: unknown recipe", ["train", "nope", "--out", str(w / "t0")]))
    add(Case("train: unknown preset", [*smoke[:2], "--preset", "huge", "--out", str(w / "t1")]))
    add(
        Case(
            "train: --depth 0",
            [*smoke, "--depth", "0", "--out", str(w / "t2")],
            clean=missing(w / "t2"),
        )
    )
    add(
        Case(
            "train: --depth -3",
            [*smoke, "--depth", "-3", "--out", str(w / "t3")],
            clean=missing(w / "t3"),
        )
    )
    add(
        Case(
            "train: --data-dir missing",
            [*smoke, "--data-dir", str(w / "nodata"), "--out", str(w / "t4")],
            clean=missing(w / "t4"),
        )
    )
    corrupt_data = w / "corrupt-data"
    corrupt_data.mkdir(exist_ok=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):  # fmt: skip
        (corrupt_data / name).write_bytes(os.urandom(2000))
    add(
        Case(
            "train: --data-dir of corrupt files",
            [*smoke, "--data-dir", str(corrupt_data), "--out", str(w / "t5")],
            clean=missing(w / "t5"),
        )
    )
    a_file = w / "a-file"
    a_file.write_text("not a folder\n")
    add(Case("train: --out is a file", [*smoke, "--out", str(a_file)]))
    add(Case("train: --out under a file", [*smoke, "--out", str(a_file / "run")]))
    bad_recipe = copy_run(image_run, "bad-recipe")
    (bad_recipe / "recipe.json").write_text("{ not json")
    add(Case("train: corrupt recipe.json", [*smoke, "--out", str(bad_recipe)]))
    add(
        Case(
            "train: --out holds a tts run",
            [*smoke, "--out", str(copy_run(tts_run, "tts-as-image"))],
        )
    )
    add(
        Case(
            "train: --device cuda without a GPU",
            [*smoke, "--device", "cuda", "--out", str(w / "t6")],
            clean=missing(w / "t6"),
        )
    )
    truncated = copy_run(image_run, "truncated-latest")
    interrupted(truncated / "generator")
    truncate(truncated / "generator" / "latest" / "generator.safetensors")
    add(Case("train: resume from a truncated latest/", [*smoke, "--out", str(truncated)]))
    random_latest = copy_run(image_run, "random-latest")
    interrupted(random_latest / "generator")
    (random_latest / "generator" / "latest" / "generator.safetensors").write_bytes(os.urandom(5000))
    add(Case("train: resume from a random latest/", [*smoke, "--out", str(random_latest)]))
    hostile = plant_payload(copy_run(image_run, "hostile-train"))
    interrupted(hostile / "generator")
    for name in ("state.json", "state.safetensors"):
        (hostile / "generator" / "latest" / name).unlink(missing_ok=True)
    add(Case("train: resume from latest/ with a pickle payload", [*smoke, "--out", str(hostile)]))
    second = w / "second-writer"
    shutil.rmtree(second, ignore_errors=True)
    add(
        Case(
            "train: a second writer on the same --out",
            [*smoke, "--out", str(second)],
            background=[*smoke, "--out", str(second)],
        )
    )
    add(
        Case(
            "train: disk full (file size limit 300 kB)",
            [*smoke, "--out", str(w / "full")],
            limit_file_size=300_000,
        )
    )

    # ---- sample
    grid = w / "grid.png"
    sample = ["sample", "--checkpoint", str(image_run), "--classes", "0,3", "--per-class", "2"]
    add(
        Case(
            "sample: missing checkpoint",
            ["sample", "--checkpoint", str(w / "none"), "--classes", "0", "--out", str(grid)],
        )
    )
    add(
        Case(
            "sample: a tts run",
            ["sample", "--checkpoint", str(tts_run), "--classes", "0", "--out", str(grid)],
        )
    )
    trunc = copy_run(image_run, "truncated-final")
    truncate(trunc / "generator" / "final" / "generator.safetensors")
    add(
        Case(
            "sample: truncated weights",
            ["sample", "--checkpoint", str(trunc), "--classes", "0", "--out", str(grid)],
            clean=missing(grid),
        )
    )
    rnd = copy_run(image_run, "random-final")
    (rnd / "generator" / "final" / "generator.safetensors").write_bytes(os.urandom(4000))
    add(
        Case(
            "sample: random weights file",
            ["sample", "--checkpoint", str(rnd), "--classes", "0", "--out", str(grid)],
            clean=missing(grid),
        )
    )
    wrong = copy_run(image_run, "wrong-config")
    cfg = wrong / "generator" / "final" / "config.json"
    data = json.loads(cfg.read_text())
    data["network"]["width"] = 64
    cfg.write_text(json.dumps(data))
    add(
        Case(
            "sample: config.json not matching the weights",
            ["sample", "--checkpoint", str(wrong), "--classes", "0", "--out", str(grid)],
            clean=missing(grid),
        )
    )
    badcfg = copy_run(image_run, "corrupt-config")
    (badcfg / "codec" / "final" / "config.json").write_text("{]")
    add(
        Case(
            "sample: corrupt config.json",
            ["sample", "--checkpoint", str(badcfg), "--classes", "0", "--out", str(grid)],
            clean=missing(grid),
        )
    )
    corrupt_recipe = copy_run(image_run, "corrupt-recipe")
    (corrupt_recipe / "recipe.json").write_text("\x00\x01garbage")
    add(
        Case(
            "sample: corrupt recipe.json",
            ["sample", "--checkpoint", str(corrupt_recipe), "--classes", "0", "--out", str(grid)],
            clean=missing(grid),
        )
    )
    add(
        Case(
            "sample: --classes 0,99", [*sample[:4], "0,99", "--out", str(grid)], clean=missing(grid)
        )
    )
    add(
        Case("sample: --classes a,b", [*sample[:4], "a,b", "--out", str(grid)], clean=missing(grid))
    )
    add(
        Case(
            "sample: --per-class 0",
            [*sample[:5], "--per-class", "0", "--out", str(grid)],
            clean=missing(grid),
        )
    )
    add(
        Case(
            "sample: --per-class -2",
            [*sample[:5], "--per-class", "-2", "--out", str(grid)],
            clean=missing(grid),
        )
    )
    outdir = w / "out-dir"
    outdir.mkdir(exist_ok=True)
    add(
        Case(
            "sample: --out is a folder", [*sample, "--out", str(outdir)], clean=no_leftovers(outdir)
        )
    )
    add(Case("sample: --out under a file", [*sample, "--out", str(a_file / "x.png")]))
    add(Case("sample: --out /dev/full", [*sample, "--out", "/dev/full"]))
    add(
        Case(
            "sample: --out x.txt (no image format)",
            [*sample, "--out", str(w / "x.txt")],
            clean=missing(w / "x.txt"),
        )
    )
    add(
        Case(
            "sample: --device cuda without a GPU",
            [*sample, "--device", "cuda", "--out", str(grid)],
            clean=missing(grid),
        )
    )
    jpeg = w / "grid.jpg"

    def is_jpeg() -> bool:
        return jpeg.read_bytes()[:3] == b"\xff\xd8\xff"

    add(
        Case(
            "sample: --out x.jpg writes a JPEG",
            [*sample, "--out", str(jpeg)],
            expect="success",
            check=is_jpeg,
        )
    )
    readable = w / "readable.png"

    def world_readable() -> bool:
        return readable.stat().st_mode & 0o777 == 0o666 & ~_umask()

    add(
        Case(
            "sample: output readable as the umask says",
            [*sample, "--out", str(readable)],
            expect="success",
            check=world_readable,
        )
    )
    hostile_sample = plant_payload(copy_run(image_run, "hostile-sample"))
    add(
        Case(
            "sample: run folder with pickle payloads",
            [*sample[:1], "--checkpoint", str(hostile_sample), *sample[3:], "--out", str(grid)],
            expect="success",
        )
    )

    # ---- tts
    prompt = write_wav(w / "prompt.wav", 2.0)
    speech = w / "speech.wav"
    tts = ["tts", "--checkpoint", str(tts_run), "--text", "Hello there.", "--prompt-text", "Hello."]
    add(
        Case(
            "tts: missing prompt",
            [*tts, "--prompt", str(w / "none.wav"), "--out", str(speech)],
            clean=missing(speech),
        )
    )
    not_wav = w / "not-audio.wav"
    not_wav.write_text("this is text, not audio\n")
    add(
        Case(
            "tts: prompt is not audio",
            [*tts, "--prompt", str(not_wav), "--out", str(speech)],
            clean=missing(speech),
        )
    )
    empty = write_wav(w / "empty.wav", 0.0)
    add(
        Case(
            "tts: empty prompt",
            [*tts, "--prompt", str(empty), "--out", str(speech)],
            clean=missing(speech),
        )
    )
    short = write_wav(w / "short.wav", 0.1)
    add(
        Case(
            "tts: 0.1 s prompt",
            [*tts, "--prompt", str(short), "--out", str(speech)],
            clean=missing(speech),
        )
    )
    add(
        Case(
            "tts: an image run",
            [
                "tts",
                "--checkpoint",
                str(image_run),
                *tts[3:],
                "--prompt",
                str(prompt),
                "--out",
                str(speech),
            ],
            clean=missing(speech),
        )
    )
    add(
        Case(
            "tts: --steps 0",
            [*tts, "--prompt", str(prompt), "--steps", "0", "--out", str(speech)],
            clean=missing(speech),
        )
    )
    add(
        Case(
            "tts: --frames -5",
            [*tts, "--prompt", str(prompt), "--frames", "-5", "--out", str(speech)],
            clean=missing(speech),
        )
    )
    add(
        Case(
            "tts: --out is a folder",
            [*tts, "--prompt", str(prompt), "--out", str(outdir)],
            clean=no_leftovers(outdir),
        )
    )
    add(
        Case(
            "tts: --out x.mp3 (not WAV)",
            [*tts, "--prompt", str(prompt), "--out", str(w / "x.mp3")],
            clean=missing(w / "x.mp3"),
        )
    )
    trunc_tts = copy_run(tts_run, "tts-truncated")
    truncate(trunc_tts / "resgen" / "final" / "resgen.safetensors")
    add(
        Case(
            "tts: truncated weights",
            [
                "tts",
                "--checkpoint",
                str(trunc_tts),
                *tts[3:],
                "--prompt",
                str(prompt),
                "--out",
                str(speech),
            ],
            clean=missing(speech),
        )
    )
    hostile_tts = plant_payload(copy_run(tts_run, "hostile-tts"))
    add(
        Case(
            "tts: run folder with pickle payloads",
            [
                "tts",
                "--checkpoint",
                str(hostile_tts),
                *tts[3:],
                "--prompt",
                str(prompt),
                "--out",
                str(speech),
            ],
            expect="success",
        )
    )

    # ---- eval fid
    real = w / "real"
    real.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    for i, p in enumerate(pictures):
        Image.fromarray(p).save(real / f"{i:02d}.png")
    deep = w / "sixteen-bit"
    deep.mkdir(exist_ok=True)
    for i, p in enumerate(pictures):
        Image.fromarray(p.astype(np.uint16) * 257).save(deep / f"{i:02d}.png")
    corrupt_images = w / "corrupt-images"
    shutil.rmtree(corrupt_images, ignore_errors=True)
    shutil.copytree(real, corrupt_images)
    (corrupt_images / "05.png").write_bytes(os.urandom(300))
    truncated_images = w / "truncated-images"
    shutil.rmtree(truncated_images, ignore_errors=True)
    shutil.copytree(real, truncated_images)
    truncate(truncated_images / "03.png", 60)
    fid = ["eval", "fid", "--features", "fashion", "--classifier", str(image_run), "--no-progress"]
    add(Case("eval fid: a corrupt PNG", [*fid, "--real", str(real), "--fake", str(corrupt_images)]))
    add(
        Case(
            "eval fid: a truncated PNG",
            [*fid, "--real", str(real), "--fake", str(truncated_images)],
        )
    )
    text_images = w / "text-images"
    text_images.mkdir(exist_ok=True)
    (text_images / "a.png").write_text("hello")
    add(
        Case(
            "eval fid: a text file named .png",
            [*fid, "--real", str(real), "--fake", str(text_images)],
        )
    )
    deep_case = Case(
        "eval fid: 16-bit PNGs read right (FID to their 8-bit twins ~ 0)",
        [*fid, "--real", str(real), "--fake", str(deep), "--json"],
        expect="success",
    )
    add(deep_case)
    add(Case("eval fid: --real missing", [*fid, "--real", str(w / "none"), "--fake", str(real)]))
    add(
        Case(
            "eval fid: --limit-real 0",
            [*fid, "--real", str(real), "--fake", str(real), "--limit-real", "0"],
        )
    )
    add(
        Case(
            "eval fid: --k 0 with precision/recall",
            [*fid, "--real", str(real), "--fake", str(real), "--precision-recall", "--k", "0"],
        )
    )
    add(
        Case(
            "eval fid: --batch-size 0",
            [*fid, "--real", str(real), "--fake", str(real), "--batch-size", "0"],
        )
    )
    bad_npz = w / "bad.npz"
    bad_npz.write_bytes(os.urandom(500))
    add(
        Case(
            "eval fid: corrupt .npz statistics", [*fid, "--real", str(bad_npz), "--fake", str(real)]
        )
    )
    add(
        Case(
            "eval fid: --save-real into a folder",
            [*fid, "--real", str(real), "--fake", str(real), "--save-real", str(outdir)],
            clean=no_leftovers(outdir),
        )
    )
    add(
        Case(
            "eval fid: --classifier a tts run",
            [*fid[:4], "--classifier", str(tts_run), "--real", str(real), "--fake", str(real)],
        )
    )
    add(
        Case(
            "eval fid: --classifier random bytes",
            [*fid[:4], "--classifier", str(w / "a-file"), "--real", str(real), "--fake", str(real)],
        )
    )
    latest_run = copy_run(image_run, "classifier-latest")
    _perturbed_latest(latest_run / "classifier")
    latest_case = Case(
        "eval fid: --classifier RUN uses final/ over latest/",
        [
            *fid[:4],
            "--classifier",
            str(latest_run),
            "--no-progress",
            "--real",
            str(real),
            "--fake",
            str(deep),
            "--json",
        ],
        expect="success",
    )
    add(latest_case)

    # ---- eval wer / sim
    audio = w / "audio"
    shutil.rmtree(audio, ignore_errors=True)
    audio.mkdir()
    for name in ("a", "b", "c"):
        write_wav(audio / f"{name}.wav", 1.0)
    two = w / "two.txt"
    two.write_text("a hello\nb hello\n")
    add(
        Case(
            "eval wer: fewer transcripts than audio files",
            ["eval", "wer", "--audio", str(audio), "--text", str(two), "--no-progress"],
        )
    )
    bad_audio = w / "bad-audio"
    shutil.rmtree(bad_audio, ignore_errors=True)
    shutil.copytree(audio, bad_audio)
    (bad_audio / "b.wav").write_text("not audio")
    three = w / "three.txt"
    three.write_text("a hello\nb hello\nc hello\n")
    add(
        Case(
            "eval wer: a non-WAV .wav",
            ["eval", "wer", "--audio", str(bad_audio), "--text", str(three), "--no-progress"],
        )
    )
    empty_audio = w / "empty-audio"
    shutil.rmtree(empty_audio, ignore_errors=True)
    shutil.copytree(audio, empty_audio)
    write_wav(empty_audio / "c.wav", 0.0)
    add(
        Case(
            "eval wer: an empty WAV",
            ["eval", "wer", "--audio", str(empty_audio), "--text", str(three), "--no-progress"],
        )
    )
    add(
        Case(
            "eval wer: --threads 0",
            [
                "eval",
                "wer",
                "--audio",
                str(audio),
                "--text",
                str(three),
                "--threads",
                "0",
                "--no-progress",
            ],
        )
    )
    add(
        Case(
            "eval wer: --text missing",
            ["eval", "wer", "--audio", str(audio), "--text", str(w / "none.txt"), "--no-progress"],
        )
    )
    binary_text = w / "binary.txt"
    binary_text.write_bytes(os.urandom(200))
    add(
        Case(
            "eval wer: --text is binary",
            ["eval", "wer", "--audio", str(audio), "--text", str(binary_text), "--no-progress"],
        )
    )
    # speech from the TTS run, so that the speaker encoder finds a voice in the good files
    speech = w / "speech"
    shutil.rmtree(speech, ignore_errors=True)
    speech.mkdir()
    for source in sorted((tts_run / "samples").glob("*_truth.wav"))[:2]:
        shutil.copy(source, speech / source.name)
    bad_speech = w / "bad-speech"
    shutil.rmtree(bad_speech, ignore_errors=True)
    shutil.copytree(speech, bad_speech)
    (bad_speech / "0-not-audio.wav").write_text("not audio")  # sorted first
    reference = next(speech.iterdir())
    add(
        Case(
            "eval sim: a non-WAV .wav",
            ["eval", "sim", "--audio", str(bad_speech), "--reference", str(reference),
             "--no-progress"],
        )
    )  # fmt: skip
    add(
        Case(
            "eval sim: --reference missing",
            [
                "eval",
                "sim",
                "--audio",
                str(audio),
                "--reference",
                str(w / "none.wav"),
                "--no-progress",
            ],
        )
    )
    add(
        Case(
            "eval sim: an empty WAV reference",
            ["eval", "sim", "--audio", str(speech), "--reference", str(empty), "--no-progress"],
        )
    )
    deep_case.check = _fid_near_zero
    latest_case.check = lambda: _fid_of_final(latest_run, real, deep)
    return cases


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _perturbed_latest(stage: Path) -> None:
    """A ``latest/`` beside ``final/`` holding other weights (as an interrupted retrain leaves)."""
    from safetensors.torch import load_file, save_file

    latest = stage / "latest"
    shutil.rmtree(latest, ignore_errors=True)
    shutil.copytree(stage / "final", latest)
    tensors = load_file(str(latest / "classifier.safetensors"))
    negated = {k: v.neg() if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(negated, str(latest / "classifier.safetensors"))


def _fid_near_zero() -> bool:
    fid = ["eval", "fid", "--features", "fashion", "--classifier", str(IMAGE_RUN), "--json"]
    out = run_cli([*fid, "--real", str(WORK / "real"), "--fake", str(WORK / "sixteen-bit")])
    return out.returncode == 0 and abs(json.loads(out.stdout.splitlines()[-1])["fid"]) < 1e-3


def _fid_of_final(run: Path, real: Path, fake: Path) -> bool:
    args = ["--no-progress", "--real", str(real), "--fake", str(fake), "--json"]
    by_run = run_cli(["eval", "fid", "--features", "fashion", "--classifier", str(run), *args])
    final = run / "classifier" / "final" / "classifier.safetensors"
    by_file = run_cli(["eval", "fid", "--features", "fashion", "--classifier", str(final), *args])
    if by_run.returncode or by_file.returncode:
        return False
    return (
        json.loads(by_run.stdout.splitlines()[-1])["fid"]
        == json.loads(by_file.stdout.splitlines()[-1])["fid"]
    )


IMAGE_RUN = Path()


def main() -> int:
    global WORK, MARKER, IMAGE_RUN
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--image-run", type=Path, default=None)
    parser.add_argument("--tts-run", type=Path, default=None)
    parser.add_argument("--only", default=None, help="run only cases whose name contains this")
    parser.add_argument("--json", type=Path, default=None, help="write the outcomes here")
    args = parser.parse_args()
    WORK = args.work.resolve()
    MARKER = WORK / "PWNED"
    WORK.mkdir(parents=True, exist_ok=True)
    image_run = args.image_run or WORK / "image-run"
    tts_run = args.tts_run or WORK / "tts-run"
    for recipe, run in (("image-fashion", image_run), ("tts-synth", tts_run)):
        if not (run / "metrics.json").is_file():
            done = run_cli(["train", recipe, "--preset", "smoke", "--out", str(run)])
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
                return 1
    IMAGE_RUN = image_run.resolve()
    cases = build_cases(image_run.resolve(), tts_run.resolve())
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    for case in cases:
        classify(case)
        print(f"{case.outcome:14s} {case.name}: {case.message[:150]}", flush=True)
    counts = collections.Counter(c.outcome for c in cases)
    print(f"\n{len(cases)} cases: " + ", ".join(f"{n} {k}" for k, n in counts.most_common()))
    if args.json:
        args.json.write_text(
            json.dumps(
                [{"name": c.name, "outcome": c.outcome, "message": c.message} for c in cases],
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

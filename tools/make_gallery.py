"""Copy a run's samples into the documentation's gallery, small enough to keep in the repository.

Images: each sample grid is halved (the recipes write every pixel as 2x2; halving with a box
filter gives back the 28x28 samples exactly) and saved as PNG. Speech: each chosen held-out
sentence of a ``tts-synth`` run, one file per kind, is converted from the run's 16-bit WAV to
Ogg Vorbis with sox (``sox IN.wav -C 3 OUT.ogg``, about 6 KB per second). The script prints the
gallery's tables (Markdown) for ``docs/gallery.md``, with each row's Whisper transcript from the
run's ``metrics.json``.

Usage::

    python tools/make_gallery.py images NAME=GRID.png ...
    python tools/make_gallery.py speech RUN_DIR [--sentences 2 | --speakers A,B]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "assets" / "gallery"
KINDS = {
    "prompt": "voice prompt",
    "truth": "ground truth",
    "vocoded": "vocoded (true mels, Griffin-Lim)",
    "resynth": "codec resynthesis",
    "resgen": "ResGen",
    "ar": "autoregressive baseline",
}
"""The kinds of audio shown, in the gallery's order, with their row labels."""


def images(pairs: list[str]) -> None:
    """Halve each ``NAME=GRID`` into ``GALLERY/images/NAME.png``."""
    folder = GALLERY / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for pair in pairs:
        name, grid = pair.split("=", 1)
        with Image.open(grid) as image:
            half = image.convert("L").reduce(2)
        target = folder / f"{name}.png"
        half.save(target, optimize=True)
        print(f"{target.relative_to(ROOT)}: {half.size[0]}x{half.size[1]}, "
              f"{target.stat().st_size / 1024:.0f} KB")  # fmt: skip


def speech(run: Path, sentences: int, speakers: list[str] | None = None) -> None:
    """Convert the first held-out sentence of each of ``speakers`` (default: of the first
    ``sentences`` speakers) of ``run`` and print their tables."""
    folder = GALLERY / "speech"
    folder.mkdir(parents=True, exist_ok=True)
    index = json.loads((run / "samples" / "index.json").read_text())
    rows = json.loads((run / "metrics.json").read_text())["rows"]
    chosen, seen, wanted_speakers = [], set(), set(speakers or ())
    for number, item in enumerate(index):  # the first sentence of each speaker, in turn
        wanted = item["speaker"] in wanted_speakers if wanted_speakers else len(chosen) < sentences
        if item["speaker"] not in seen and wanted:
            chosen.append((number, item))
            seen.add(item["speaker"])
    for number, item in chosen:
        name = item["name"]
        print(f'\n**"{item["text"]}"** (speaker `{item["speaker"]}`)\n')
        print("| audio | | Whisper heard |")
        print("| --- | --- | --- |")
        for kind, label in KINDS.items():
            source = run / "samples" / f"{name}_{kind}.wav"
            target = folder / f"{name}_{kind}.ogg"
            subprocess.run(["sox", str(source), "-C", "5", str(target)], check=True)
            heard = rows[kind]["transcripts"][number] if kind in rows else ""
            # raw HTML is not rewritten by mkdocs: relative to the page URL /gallery/
            src = "../" + target.relative_to(ROOT / "docs").as_posix()
            player = f'<audio controls preload="metadata" src="{src}"></audio>'
            print(f"| {label} | {player} | {heard} |")
    total = sum(p.stat().st_size for p in folder.glob("*.ogg"))
    print(f"\n{len(list(folder.glob('*.ogg')))} files, {total / 1024:.0f} KB", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    image_parser = sub.add_parser("images")
    image_parser.add_argument("grids", nargs="+", help="NAME=PATH of a sample grid")
    speech_parser = sub.add_parser("speech")
    speech_parser.add_argument("run", type=Path, help="a finished tts-synth run folder")
    speech_parser.add_argument("--sentences", type=int, default=2)
    speech_parser.add_argument(
        "--speakers", default=None, help="comma-separated held-out speakers (default: the first)"
    )
    args = parser.parse_args(argv)
    if args.what == "images":
        images(args.grids)
    else:
        speech(args.run, args.sentences, args.speakers.split(",") if args.speakers else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

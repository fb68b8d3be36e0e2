"""A finished text-to-speech run evaluated on more targets, with guidance rows side by side.

The ``tts-synth`` recipe scores ``eval_per_speaker`` targets per held-out speaker (8 in the
demo: 48 targets, whose WER interval is about 13 points wide). This script copies a finished
run's trained stages into a new folder, leaving its samples and metrics behind, and evaluates
it again with more targets per speaker (24 by default: 144 targets) through the recipe's own
evaluation stage, with the preset's rows and three (one of them the demo's own) that isolate
what classifier-free guidance does to ResGen:

- ``resgen_guided``: temperature 0.5 and guidance 2 on the mixture logits (today's rule);
- ``resgen_guided_hidden``: the same with guidance on the hidden states (the earlier rule,
  ``SamplerConfig.guidance="hidden"``), whose means drift from the codewords;
- ``resgen_hidden_t0``: guidance 2 on the hidden states at temperature 0, beside the main row
  (temperature 0, no guidance): guidance alone.

It prints every row with its 95 % interval, then paired differences of WER (the same targets,
drawn again together) between rows, and writes all of it, with the command, date and git
commit, to ``--json``::

    python benchmarks/tts_targets.py --run runs/tts-synth-demo --out runs/tts-demo-144

The copy is evaluated by ``resgen.recipes.tts_synth.run``, which refuses a run trained with
another configuration than ``--preset``'s; re-running the script on the same ``--out``
evaluates again without copying.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

from attrs import evolve

from resgen.eval.provenance import git_commit
from resgen.eval.text import error_rate_difference
from resgen.files import atomic_write
from resgen.recipes.tts_synth import run
from resgen.recipes.tts_synth_config import PRESETS

GUIDANCE_ROWS: dict[str, dict[str, float | int | str]] = {
    "resgen_guided": {"temperature": 0.5, "guidance_scale": 2.0, "guidance": "logits"},
    "resgen_guided_hidden": {"temperature": 0.5, "guidance_scale": 2.0, "guidance": "hidden"},
    "resgen_hidden_t0": {"guidance_scale": 2.0, "guidance": "hidden"},
}
"""The guidance rows added to the preset's own ResGen rows."""

PAIRS = (
    ("resgen_guided_hidden", "resgen_guided"),
    ("resgen_hidden_t0", "resgen"),
    ("resgen_guided", "resgen"),
    ("ar", "resgen"),
)
"""Rows compared on the same targets: (row, against)."""

_LEFT_BEHIND = ("samples", "metrics.json", "loss.png", ".lock")


def copy_trained_stages(run_dir: Path, out: Path) -> None:
    """Copy ``run_dir`` into ``out`` without its samples, metrics and lock (``out`` must not
    exist; the copy is made beside it and renamed, so a broken copy is never left as ``out``).

    Raises:
        FileNotFoundError: ``run_dir`` holds no finished run (no ``metrics.json``).
    """
    if not (run_dir / "metrics.json").is_file():
        raise FileNotFoundError(f"{run_dir} holds no finished tts-synth run (no metrics.json)")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(run_dir, partial, ignore=shutil.ignore_patterns(*_LEFT_BEHIND))
    partial.rename(out)


def main(argv: list[str] | None = None) -> int:
    """Copy, evaluate, print and write the table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished tts-synth run")
    parser.add_argument("--out", type=Path, required=True, help="where the copy is evaluated")
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--per-speaker", type=int, default=24, help="targets per held-out speaker")
    parser.add_argument("--data-dir", type=Path, help="the corpus folder the run was given")
    parser.add_argument("--json", type=Path, default=Path("docs/results/tts_targets.json"))
    args = parser.parse_args(argv)
    if args.per_speaker < 1:
        parser.error(f"--per-speaker must be at least 1, got {args.per_speaker}")
    if not args.out.exists():
        try:
            copy_trained_stages(args.run, args.out)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    base = PRESETS[args.preset]
    config = evolve(
        base,
        eval_per_speaker=args.per_speaker,
        resgen_variants={**base.resgen_variants, **GUIDANCE_ROWS},
    )
    tick = time.perf_counter()
    metrics = run(args.out, config, data_dir=args.data_dir)
    seconds = time.perf_counter() - tick
    rows = metrics["rows"]
    references = [
        item["text"]
        for item in json.loads((args.out / "samples" / "index.json").read_text(encoding="utf-8"))
    ]
    print(f"{metrics['eval_utterances']} targets, evaluated in {seconds:.0f} s")
    print(f"{'row':22s} {'WER (95 %)':>22s} {'CER':>6s} {'SIM':>6s} {'SIM other':>9s}")
    for name, entry in rows.items():
        low, high = entry.get("wer_interval_95", (float("nan"),) * 2)
        print(
            f"{name:22s} {entry.get('wer', float('nan')):8.3f} ({low:.3f}-{high:.3f}) "
            f"{entry.get('cer', float('nan')):6.3f} {entry.get('sim_prompt', float('nan')):6.3f} "
            f"{entry.get('sim_other_speakers') or float('nan'):9.3f}"
        )
    differences = {}
    if all("transcripts" in entry for entry in rows.values()):
        print("paired WER differences (row - against, 95 % interval):")
        for row, against in PAIRS:
            value, interval = error_rate_difference(
                references, rows[row]["transcripts"], rows[against]["transcripts"]
            )
            differences[f"{row} - {against}"] = {"wer": value, "interval_95": interval}
            print(f"  {row} - {against}: {value:+.3f} ({interval[0]:+.3f} to {interval[1]:+.3f})")
    table = {
        "command": "python benchmarks/tts_targets.py " + " ".join(argv or sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "run": str(args.run),
        "preset": args.preset,
        "targets": metrics["eval_utterances"],
        "rows_added": GUIDANCE_ROWS,
        "evaluation_seconds": seconds,
        "paired_wer_differences": differences,
        "metrics": metrics,
    }
    text = json.dumps(table, indent=2) + "\n"
    atomic_write(args.json, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

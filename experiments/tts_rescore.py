"""Re-score a finished ``tts-synth`` run's WAVs with other Whisper decoding settings.

The recipe scores every row with Whisper tiny.en decoding greedily (beam 1, temperature 0).
This script transcribes the same files under ``samples/`` (the texts come from
``samples/index.json``) with each beam size asked for and prints every row's WER and CER, so
that a conclusion drawn from the rows can be checked against the recogniser's own decoding
errors. With ``--beam-sizes 1`` it reproduces the run's ``metrics.json``.

Usage::

    python experiments/tts_rescore.py --run runs/tts-synth-demo [--beam-sizes 1,5]
        [--rows truth,vocoded,resynth,resgen,ar]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from resgen.data.audio_io import load_audio
from resgen.eval.asr import WhisperRecognizer
from resgen.eval.text import character_error_rate, word_error_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a finished tts-synth run")
    parser.add_argument("--beam-sizes", default="1,5", help="Whisper beams to score with")
    parser.add_argument(
        "--rows",
        default="truth,vocoded,resynth,resgen,resgen_1step,ar",
        help="rows to score (the WAV suffixes under samples/)",
    )
    args = parser.parse_args()
    samples = Path(args.run) / "samples"
    if not (samples / "index.json").is_file():
        raise SystemExit(f"{samples} has no index.json: is {args.run} a finished tts-synth run?")
    index = json.loads((samples / "index.json").read_text())
    refs = [item["text"] for item in index]
    rows = [r for r in args.rows.split(",") if r]
    for row in rows:
        missing = [i["name"] for i in index if not (samples / f"{i['name']}_{row}.wav").is_file()]
        if missing:
            raise SystemExit(
                f"row {row!r} has no WAV for {missing[0]} (and {len(missing) - 1} more)"
            )
    results: dict[str, dict[str, float]] = {}
    for beam in (int(b) for b in args.beam_sizes.split(",") if b):
        asr = WhisperRecognizer(beam_size=beam)
        for row in rows:
            hyps = [
                asr.transcribe(*load_audio(samples / f"{item['name']}_{row}.wav")) for item in index
            ]
            scores = {"wer": word_error_rate(refs, hyps), "cer": character_error_rate(refs, hyps)}
            results[f"beam{beam}/{row}"] = scores
            print(
                f"beam {beam}, {row}: WER {scores['wer']:.3f}, CER {scores['cer']:.3f} "
                f"({len(refs)} utterances)",
                flush=True,
            )
    print(json.dumps({k: {m: round(v, 4) for m, v in s.items()} for k, s in results.items()}))


if __name__ == "__main__":
    main()

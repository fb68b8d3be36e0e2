#!/usr/bin/env bash
# Run both smoke presets into OUT/{img,tts} with the source tree SRC first on the path, then
# write OUT/hashes.txt (sha256 of every *.safetensors) and OUT/metrics.*.json (metrics.json
# without its timing keys). Two fingerprints of one code are compared with `diff -r`.
# usage: tools/smoke_fingerprint.sh SRC OUT [PYTHON]
set -euo pipefail
src=$(realpath "$1"); out=$2; py=${3:-/work/main/.venv/bin/python}
mkdir -p "$out"; out=$(realpath "$out")
cd "$src"
export PYTHONPATH="$src"
"$py" -m resgen.cli train image-fashion --preset smoke --out "$out/img" > "$out/img.log" 2>&1
"$py" -m resgen.cli train tts-synth --preset smoke --out "$out/tts" > "$out/tts.log" 2>&1
(cd "$out" && find img tts -name '*.safetensors' | sort | xargs sha256sum) > "$out/hashes.txt"
for run in img tts; do
  "$py" - "$out/$run/metrics.json" > "$out/metrics.$run.json" <<'PY'
import json, sys
TIMING = {  # wall-clock measurements: the only keys that may differ between two runs
    "sampling_seconds_per_image", "wall_seconds", "wall_seconds_total", "ar_rtf", "resgen_rtf",
    "ar_sampling_seconds", "resgen_sampling_seconds", "ar_train_seconds", "resgen_train_seconds",
}
def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items()
                if k not in TIMING}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value
print(json.dumps(strip(json.load(open(sys.argv[1]))), indent=1, sort_keys=True))
PY
done
echo "fingerprint in $out"

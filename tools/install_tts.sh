#!/usr/bin/env bash
# Install what the TTS recipe's text front-end and synthetic corpus need (resgen.codecs.phonemes,
# resgen.recipes.tts_corpus), fully offline at run time afterwards. Voices and versions are the
# ones verified in shared/research/data.md (sections 2 and 6).
#
# Usage: bash tools/install_tts.sh PATH/TO/venv/bin/python
#
# Idempotent: when every package already imports at the pinned version and the synthesisers and
# voices are present, it returns in about a second without touching pip or apt.
set -euo pipefail

PY="${1:?usage: install_tts.sh PATH/TO/python}"

# Pinned PyPI requirements, installed with their dependencies (gruut pulls dateparser, num2words,
# python-crfsuite, gruut-ipa, ...).
REQS=(
    "gruut==2.4.0"
    "gruut-lang-en==2.0.1"
    "onnxruntime==1.32.0"
)
# Installed WITHOUT dependencies: hibari-tts needs only numpy and onnxruntime (above).
NODEPS=(
    "hibari-tts==0.2.1"
)
# Debian packages: the flite voices (kal16, awb, rms, slt), festival with the ked and kal diphone
# voices and the slt HTS voice, and sox for resampling, pitch and tempo.
APT=(flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox)

pinned_ok() {
    "$PY" "$(dirname "$0")/check_pins.py" "${REQS[@]}" "${NODEPS[@]}"
}

if ! pinned_ok; then
    "$PY" -m pip install --quiet --disable-pip-version-check "${REQS[@]}"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps "${NODEPS[@]}"
    pinned_ok
fi
# Quick import check (no model is loaded here).
"$PY" -c "import gruut, gruut_lang_en, gruut_ipa, hibari, onnxruntime"

apt_missing() {
    local missing=()
    for pkg in "${APT[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    echo "${missing[@]:-}"
}

MISSING="$(apt_missing)"
if [ -n "$MISSING" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if ! $SUDO apt-get install -y -q $MISSING >/dev/null; then
        $SUDO apt-get update -q >/dev/null
        # shellcheck disable=SC2086
        $SUDO apt-get install -y -q $MISSING >/dev/null
    fi
fi
for prog in flite festival sox; do
    command -v "$prog" >/dev/null || { echo "install_tts: $prog is still missing" >&2; exit 1; }
done
echo "install_tts: TTS front-end, voices and sox ready"

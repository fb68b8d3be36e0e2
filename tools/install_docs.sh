#!/usr/bin/env bash
# Install what the documentation site and its browser check need, so that the built site loads
# nothing from outside itself and the tests can open it in a real browser:
#   - MathJax 3 from npm (copied into the built site by tools/docs_offline.py);
#   - Roboto web fonts (Debian fonts-roboto-fontface, copied likewise);
#   - Chromium (Debian chromium), driven by Playwright from PyPI (pyproject's dev extras). No
#     browser build is ever downloaded: tools/check_site.py launches the system chromium.
#
# Usage: bash tools/install_docs.sh PATH/TO/venv/bin/python
#
# Idempotent: when everything is present it returns in about a second without touching npm or apt.
set -euo pipefail

PY="${1:?usage: install_docs.sh PATH/TO/python}"
MATHJAX_VERSION=3.2.2   # keep in step with MATHJAX_VERSION in tools/docs_offline.py
PREFIX="$("$PY" -c 'import sys; print(sys.prefix)')/share/resgen-docs"
APT=(chromium fonts-roboto-fontface)

apt_missing() {
    local missing=()
    for pkg in "${APT[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    # npm may come with a nodejs that is not Debian's (it conflicts with Debian's npm package)
    command -v npm >/dev/null || missing+=(npm)
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

installed_mathjax() {
    "$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['version'])" \
        "$PREFIX/node_modules/mathjax/package.json" 2>/dev/null || true
}
if [ "$(installed_mathjax)" != "$MATHJAX_VERSION" ]; then
    mkdir -p "$PREFIX"
    npm install --prefix "$PREFIX" --no-save --no-audit --no-fund --loglevel=error \
        "mathjax@$MATHJAX_VERSION" >/dev/null
    [ "$(installed_mathjax)" = "$MATHJAX_VERSION" ] \
        || { echo "install_docs: MathJax $MATHJAX_VERSION did not install" >&2; exit 1; }
fi

command -v chromium >/dev/null || { echo "install_docs: chromium is still missing" >&2; exit 1; }
"$PY" -c "import playwright.sync_api" \
    || { echo "install_docs: playwright missing (pip install -e '.[dev]')" >&2; exit 1; }
echo "install_docs: MathJax $MATHJAX_VERSION, Roboto and chromium ready"

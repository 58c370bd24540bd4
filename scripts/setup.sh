#!/usr/bin/env bash
# Create .venv and install LabelFree with its test tools. Safe to run again (skips if up to date).
#   LABELFREE_TORCH=cuda  install the default (CUDA on Linux) torch build instead of the CPU pin
#   PYTHON=python3.11     the interpreter to build the venv with
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${LABELFREE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.labelfree-installed"
want="$(cat pyproject.toml constraints-cpu.txt | sha256sum | cut -c1-16)-${LABELFREE_TORCH:-cpu}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if [ "${LABELFREE_TORCH:-cpu}" = "cuda" ]; then
        "$VENV/bin/python" -m pip install -q -e ".[dev,cluster,bioimageio,napari]"
    else
        "$VENV/bin/python" -m pip install -q -c constraints-cpu.txt -e ".[dev,cluster,bioimageio,napari]"
    fi
    echo "$want" > "$stamp"
fi

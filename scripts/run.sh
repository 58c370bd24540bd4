#!/usr/bin/env bash
# Set up (first time) and run LabelFree: the desktop app on the demo image when a screen is
# available, otherwise the command line on the demo image (outputs in ./demo-output).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
demo="resources/demo/demo_phase_neurons.ome.tif"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ "${LABELFREE_CLI:-0}" != "1" ]; then
    exec .venv/bin/python -m labelfree_app "$demo"
fi
.venv/bin/labelfree models list
.venv/bin/labelfree predict "$demo" -o demo-output --tta   # the default model for a single plane: lf-nuclei-2d
echo "Predictions written to $(pwd)/demo-output"

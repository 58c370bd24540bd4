#!/usr/bin/env bash
# Build the one-folder PyInstaller bundle (packaging/build/dist/labelfree) from a clean virtual
# environment that holds only LabelFree's dependencies, PyInstaller and the CPU torch.
#
#   bash packaging/build.sh            reuse packaging/build/venv when its inputs did not change
#   bash packaging/build.sh --fresh    recreate the virtual environment first
#
#   LABELFREE_PKG_DIR=/some/dir  build there instead of packaging/build (venv, work, dist)
#   LABELFREE_TORCH=cuda         bundle PyPI's default torch (a CUDA build on Linux/Windows, ~3 GB)
#   PYTHON=python3.11            interpreter for the venv (needs a shared libpython)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
OUT="${LABELFREE_PKG_DIR:-$ROOT/packaging/build}"
PYTHON="${PYTHON:-python3}"
VENV="$OUT/venv"
TORCH="${LABELFREE_TORCH:-cpu}"
mkdir -p "$OUT"
start=$(date +%s)

if [ "${1:-}" = "--fresh" ]; then
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ] && [ ! -x "$VENV/Scripts/python.exe" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="$VENV/Scripts/python.exe"  # Windows (Git Bash)

stamp="$VENV/.labelfree-package"
want="$(cat pyproject.toml constraints-cpu.txt | sha256sum | cut -c1-16)-$TORCH"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== installing LabelFree's dependencies and PyInstaller into $VENV (torch: $TORCH)"
    "$PY" -m pip install -q --upgrade pip
    if [ "$TORCH" = "cpu" ]; then
        # The CPU torch: on Linux/Windows PyPI's default wheel is a multi-GB CUDA build.
        "$PY" -m pip install -q -c constraints-cpu.txt ".[package]" \
            ${LABELFREE_TORCH_INDEX:+--extra-index-url "$LABELFREE_TORCH_INDEX"}
    else
        "$PY" -m pip install -q ".[package]"
    fi
    echo "$want" > "$stamp"
fi
installed=$(date +%s)

echo "== PyInstaller"
"$PY" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$OUT/dist" --workpath "$OUT/work" packaging/labelfree.spec
end=$(date +%s)

bundle="$OUT/dist/labelfree"
[ -d "$OUT/dist/LabelFree.app" ] && bundle="$OUT/dist/LabelFree.app"
echo "== built $bundle"
echo "venv: $((installed - start)) s, PyInstaller: $((end - installed)) s, total: $((end - start)) s"
du -sh "$bundle" | cut -f1 | sed 's/^/bundle size: /'

#!/usr/bin/env bash
# A self-extracting per-user installer (makeself, zstd): installs into ~/.local without root.
#   bash packaging/linux/make_run.sh [BUNDLE_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
OUT_BASE="${LABELFREE_PKG_DIR:-$ROOT/packaging/build}"
BUNDLE="${1:-$OUT_BASE/dist/labelfree}"
OUT="${2:-$OUT_BASE/installers}"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' labelfree_app/__init__.py)"
[ -x "$BUNDLE/labelfree" ] || { echo "No bundle at $BUNDLE: run packaging/build.sh first." >&2; exit 1; }
command -v makeself >/dev/null || { echo "makeself is missing: apt-get install makeself" >&2; exit 1; }

stage="$OUT_BASE/run-root"
rm -rf "$stage"
mkdir -p "$stage" "$OUT"
cp -a "$BUNDLE" "$stage/labelfree"
cp packaging/linux/install.sh packaging/linux/labelfree.desktop.in "$stage/"
cp resources/icons/labelfree.png "$stage/"
chmod 755 "$stage/install.sh"

run="$OUT/LabelFree-${VERSION}-linux-$(uname -m).run"
start=$(date +%s)
makeself --zstd --complevel "${RUN_ZSTD_LEVEL:-9}" --threads 0 --nox11 --tar-quietly --sha256 \
    "$stage" "$run" "LabelFree $VERSION" ./install.sh >/dev/null
echo "built $run in $(( $(date +%s) - start )) s: $(du -h "$run" | cut -f1)"
rm -rf "$stage"

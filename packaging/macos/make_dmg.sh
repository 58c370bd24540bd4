#!/usr/bin/env bash
# macOS: turn the PyInstaller LabelFree.app (packaging/build.sh on a Mac builds it) into a
# drag-to-Applications .dmg. Runs on macOS only (hdiutil); see .github/workflows/installers.yml.
#
#   bash packaging/macos/make_dmg.sh [APP] [OUT_DIR]
#   CODESIGN_IDENTITY="Developer ID Application: ..."  sign with a real identity (default: ad-hoc)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
OUT_BASE="${LABELFREE_PKG_DIR:-$ROOT/packaging/build}"
APP="${1:-$OUT_BASE/dist/LabelFree.app}"
OUT="${2:-$OUT_BASE/installers}"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' labelfree_app/__init__.py)"
[ -d "$APP" ] || { echo "No app at $APP: run packaging/build.sh on macOS first." >&2; exit 1; }
command -v hdiutil >/dev/null || { echo "hdiutil is macOS-only." >&2; exit 1; }

# PyInstaller signs ad hoc already; re-sign the whole bundle so the seal covers every file
# (Apple Silicon refuses to run unsigned code). Without a Developer ID and notarization,
# Gatekeeper asks the user to confirm the first start (right-click > Open).
codesign --force --deep --sign "${CODESIGN_IDENTITY:--}" "$APP"
codesign --verify --deep --strict "$APP"

stage="$OUT_BASE/dmg-root"
rm -rf "$stage" && mkdir -p "$stage" "$OUT"
cp -R "$APP" "$stage/"
ln -s /Applications "$stage/Applications"
dmg="$OUT/LabelFree-$VERSION-macos-$(uname -m).dmg"
rm -f "$dmg"
hdiutil create -volname "LabelFree $VERSION" -srcfolder "$stage" -fs HFS+ -format UDZO \
    -imagekey zlib-level=9 -ov "$dmg"
hdiutil verify "$dmg"
rm -rf "$stage"
echo "built $dmg: $(du -h "$dmg" | cut -f1)"

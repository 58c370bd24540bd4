#!/usr/bin/env bash
# Compile labelfree.nsi with Debian's makensis on a stand-in payload (fake .exe files), so the
# script's syntax, includes and defines are checked on Linux. The real Setup.exe is built on a
# Windows runner from the real bundle (.github/workflows/installers.yml).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${LABELFREE_PKG_DIR:-$(pwd)/packaging/build}/nsis-check"
rm -rf "$OUT" && mkdir -p "$OUT/dist/labelfree/_internal/resources"
printf 'MZ stand-in\n' > "$OUT/dist/labelfree/labelfree.exe"
printf 'MZ stand-in\n' > "$OUT/dist/labelfree/labelfree-gui.exe"
head -c 1048576 /dev/urandom > "$OUT/dist/labelfree/_internal/payload.bin"
cp resources/selftest_expected.json "$OUT/dist/labelfree/_internal/resources/"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' labelfree_app/__init__.py)"
makensis -V2 -WX -DVERSION="$VERSION" -DDIST="$OUT/dist/labelfree" -DOUTFILE="$OUT/LabelFree-$VERSION-Setup.exe" \
    packaging/windows/labelfree.nsi
ls -l "$OUT/LabelFree-$VERSION-Setup.exe"

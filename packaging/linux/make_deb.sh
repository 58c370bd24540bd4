#!/usr/bin/env bash
# Package the PyInstaller bundle as a .deb: /opt/labelfree, `labelfree` on the PATH (/usr/bin),
# a desktop entry and an icon. Everything the package installs is in its file list, so
# `dpkg -r labelfree` removes it all (user data in ~/.local/share/LabelFree etc. stays).
#
#   bash packaging/linux/make_deb.sh [BUNDLE_DIR] [OUT_DIR]
#   DEB_COMPRESS=xz  for dpkg older than 1.21.18 (Debian 11, Ubuntu 20.04), which cannot read zstd
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"
OUT_BASE="${LABELFREE_PKG_DIR:-$ROOT/packaging/build}"
BUNDLE="${1:-$OUT_BASE/dist/labelfree}"
OUT="${2:-$OUT_BASE/installers}"
COMPRESS="${DEB_COMPRESS:-zstd}"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' labelfree_app/__init__.py)"
ARCH="$(dpkg --print-architecture)"
[ -x "$BUNDLE/labelfree" ] || { echo "No bundle at $BUNDLE: run packaging/build.sh first." >&2; exit 1; }

stage="$OUT_BASE/deb-root"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" "$stage/usr/share/applications" \
         "$stage/usr/share/icons/hicolor/256x256/apps" "$stage/usr/share/doc/labelfree" "$OUT"
cp -a "$BUNDLE" "$stage/opt/labelfree"
ln -s /opt/labelfree/labelfree "$stage/usr/bin/labelfree"
sed -e "s|@EXEC@|/opt/labelfree/labelfree|g" -e "s|@ICON@|labelfree|g" packaging/linux/labelfree.desktop.in \
    > "$stage/usr/share/applications/labelfree.desktop"
install -m 644 resources/icons/labelfree.png "$stage/usr/share/icons/hicolor/256x256/apps/labelfree.png"
cat > "$stage/usr/share/doc/labelfree/copyright" <<TXT
LabelFree $VERSION: BSD-3-Clause. Bundles Python, PyTorch (BSD), Qt for Python (LGPLv3), ONNX
Runtime (MIT), NumPy, SciPy, scikit-image, tifffile, imagecodecs and their libraries, each under
its own license (see the dist-info folders in /opt/labelfree/_internal).
TXT
chmod -R u+rwX,go+rX,go-w "$stage"

size_kb="$(du -sk "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<TXT
Package: labelfree
Version: $VERSION
Architecture: $ARCH
Maintainer: LabelFree developers <labelfree@example.org>
Installed-Size: $size_kb
Section: science
Priority: optional
Depends: libc6 (>= 2.28), libgl1, libegl1, libfontconfig1, libxkbcommon0, libxkbcommon-x11-0, libdbus-1-3, libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, libxcb-shape0
Homepage: https://example.org/labelfree
Description: predict fluorescence microscopy images from transmitted light
 LabelFree predicts fluorescence images (nuclei, membranes, ...) from bright-field,
 phase-contrast or DIC images with U-Net and conditional diffusion models. This package
 bundles its own Python, PyTorch (CPU build) and Qt under /opt/labelfree.
TXT
# Nothing but the packaged files is ever written under /opt/labelfree (the frozen app writes no
# bytecode, its caches live in the user's home), so removal needs no maintainer scripts. The
# desktop and icon caches are refreshed by dpkg triggers of desktop-file-utils / hicolor.

deb="$OUT/labelfree_${VERSION}_${ARCH}.deb"
start=$(date +%s)
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$stage" "$deb" >/dev/null
echo "built $deb in $(( $(date +%s) - start )) s: $(du -h "$deb" | cut -f1)"
rm -rf "$stage"

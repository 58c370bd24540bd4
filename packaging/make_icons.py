"""Render the app's drawn icon (gui.app.app_icon) to resources/icons: PNG, Windows .ico, macOS .icns.

    QT_QPA_PLATFORM=offscreen python packaging/make_icons.py

The files are committed; run this again only when the icon drawing changes. Needs Pillow.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    from PIL import Image
    from PySide6.QtCore import QBuffer, QIODevice, QSize
    from PySide6.QtWidgets import QApplication

    from labelfree_app.gui.app import app_icon

    app = QApplication.instance() or QApplication([])  # noqa: F841 (QPixmap needs it)
    out = ROOT / "resources" / "icons"
    out.mkdir(parents=True, exist_ok=True)
    icon = app_icon()
    images: dict[int, Image.Image] = {}
    for size in (16, 32, 48, 64, 128, 256, 512):
        pixmap = icon.pixmap(QSize(size, size)).scaled(size, size)
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        pixmap.save(buffer, "PNG")
        images[size] = Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGBA")
    images[256].save(out / "labelfree.png")
    images[256].save(out / "labelfree.ico", sizes=[(s, s) for s in (16, 32, 48, 64, 128, 256)])
    images[512].save(out / "labelfree.icns")
    for name in ("labelfree.png", "labelfree.ico", "labelfree.icns"):
        print(out / name, (out / name).stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ISL planes opened through File ▸ Open… as a person would, predicted, and the window saved (Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/open_stack_screenshot.py \\
        ../shared/data/isl_condition_b docs/screenshots/isl_stack_opened.png

Every image of FOLDER is chosen in the Open dialog (the 13 phase planes and the 3 confocal max
projections); the drop question is answered Yes, as the user would. The window leaves out the
fluorescence files, opens one 13-plane z-stack, picks its model by the one rule and predicts it
with the real engine (``labelfree_app.gui.screenshot.ScreenshotRun``). User folders go to a
temporary LABELFREE_HOME, so nothing is installed or left behind.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="1600x900")
    args = parser.parse_args()
    os.environ["LABELFREE_HOME"] = tempfile.mkdtemp(prefix="labelfree-shot-")

    import pyqtgraph as pg
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QApplication, QFileDialog

    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.screenshot import ScreenshotRun
    from labelfree_app.gui.settings import GuiSettings

    app = QApplication(sys.argv[:1])
    pg.setConfigOptions(imageAxisOrder="row-major")
    window = MainWindow(CoreBackend(), GuiSettings())
    window.resize(*(int(v) for v in args.size.split("x")))
    window.show()
    chosen = sorted(str(p) for p in args.folder.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff"))
    QFileDialog.getOpenFileNames = lambda *a, **k: (chosen, "Images")  # the user's choice in the dialog
    window.ask_open_as_stack = lambda count: True  # ... and Yes to "Open these 13 files as one z-stack?"
    next(a for a in window.findChildren(QAction) if a.text().replace("&", "") == "Open…").trigger()
    note = window.statusBar().currentMessage()
    shot = ScreenshotRun(window, args.out, before_save=lambda w: w.show_message(note))
    shot.start()
    code = app.exec()
    window.shut_down()
    print(f"{shot.status}: {args.out} (model {window.controls.model_id()})")
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())

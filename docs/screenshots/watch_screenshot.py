"""File ▸ Watch folder… with files arriving, beside the window showing the newest prediction (Xvfb).

    xvfb-run -a -s "-screen 0 2600x1000x24" .venv/bin/python docs/screenshots/watch_screenshot.py \\
        docs/screenshots/watch_dialog.png

The demo image is copied into a temporary "microscope" folder under several names while the
dialog watches it (one under a ``.part`` name, then renamed, as acquisition software does), and
predicted with the bundled ``lf-nuclei-2d`` by the real watch. The picture is taken once two
or three files are done and the next is still settling (or being predicted); the window on the left
shows the newest prediction, read from the file the watch wrote. User folders go to a temporary
LABELFREE_HOME, so nothing is installed or left behind.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

MODEL = "lf-nuclei-2d"
NAMES = ("pos01_t001.ome.tif", "pos02_t001.ome.tif", "pos01_t002.ome.tif", "pos02_t002.ome.tif")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--timeout", type=float, default=500.0, help="give up after this many seconds")
    args = parser.parse_args()
    os.environ["LABELFREE_HOME"] = tempfile.mkdtemp(prefix="labelfree-shot-")
    work = Path(tempfile.mkdtemp(prefix="labelfree-watch-shot-"))

    import pyqtgraph as pg
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QColor, QPainter, QPixmap
    from PySide6.QtWidgets import QApplication

    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.settings import GuiSettings
    from labelfree_app.paths import demo_image

    app = QApplication(sys.argv[:1])
    pg.setConfigOptions(imageAxisOrder="row-major")
    window = MainWindow(CoreBackend(), GuiSettings())
    window.resize(1600, 900)
    window.show()
    folder, out = work / "microscope", work / "microscope" / "predictions"
    folder.mkdir()
    state = {"dialog": None, "written": 0, "code": 1, "elapsed": 0}

    def arrive(index: int) -> None:
        name = NAMES[index]
        target = folder / (f"{name}.part" if index == 2 else name)
        shutil.copyfile(demo_image(), target)
        if target.name != name:
            os.replace(target, folder / name)
        state["written"] = index + 1

    def shoot() -> None:
        dialog = state["dialog"]
        left, right = window.grab(), dialog.grab()
        canvas = QPixmap(left.width() + right.width() + 16, max(left.height(), right.height()))
        canvas.fill(QColor(235, 235, 235))
        painter = QPainter(canvas)
        painter.drawPixmap(0, 0, left)
        painter.drawPixmap(left.width() + 16, 0, right)
        painter.end()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        state["code"] = 0 if canvas.save(str(args.out), "PNG") else 1
        dialog.cancel()
        dialog.wait(30000)
        app.exit(state["code"])

    def step() -> None:
        state["elapsed"] += 200
        if state["elapsed"] > args.timeout * 1000:
            print("timed out", file=sys.stderr)
            app.exit(1)
            return
        dialog = state["dialog"]
        if dialog is None:
            if not any(m.id == MODEL for m in window.models):
                return
            window.controls.choose(MODEL)
            window.menus.watch_action.trigger()  # File ▸ Watch folder…
            dialog = state["dialog"] = window.dialogs[-1]
            dialog.folder_edit.setText(str(folder))
            dialog.out_edit.setText(str(out))
            dialog.settle_spin.setValue(3.0)
            dialog.resize(820, 900)
            dialog.start()
            return
        counts = dialog.table.statuses()
        if state["written"] == 0 and dialog.status_label.text().startswith("Watching"):
            arrive(0)
            arrive(1)
        elif state["written"] == 2 and counts.get("done", 0) >= 1:
            arrive(2)
        elif state["written"] == 3 and counts.get("predicting", 0) >= 1 and counts.get("done", 0) >= 2:
            arrive(3)
        record = window.file_list.current()
        shown = (record is not None and record.result is not None and record.state == "done"
                 and window.panels.prediction_panel.plane is not None)
        arriving = counts.get("settling", 0) or counts.get("predicting", 0)
        if state["written"] == 4 and arriving and counts.get("done", 0) >= 2 and shown:
            timer.stop()
            QTimer.singleShot(800, shoot)  # let the panels and histograms settle

    timer = QTimer()
    timer.setInterval(200)
    timer.timeout.connect(step)
    timer.start()
    code = app.exec()
    window.shut_down()
    shutil.rmtree(work, ignore_errors=True)
    print(f"{'saved' if code == 0 else 'failed'}: {args.out}")
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())

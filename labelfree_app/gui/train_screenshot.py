"""A screenshot of the Train page mid-training, on the demo image's four quadrants (for the README).

    xvfb-run -a -s "-screen 0 1600x1000x24" python -m labelfree_app.gui.train_screenshot docs/screenshots/train_page.png

User folders go to a temporary LABELFREE_HOME, so nothing is installed or left behind.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

MIN_STEP = 300  # grab once training has run this far and validated a few times
MIN_VALIDATIONS = 4


def write_demo_pairs(root: Path) -> tuple[Path, Path]:
    """bf/ and dapi/ folders: the demo image's phase contrast and its real DAPI stain, one pair a quadrant."""
    import tifffile

    from labelfree_app import paths
    from labelfree_app.io import read_image

    data = read_image(paths.demo_image()).data  # (C, Z, Y, X): phase contrast, DAPI
    half_y, half_x = data.shape[-2] // 2, data.shape[-1] // 2
    for folder in ("bf", "dapi"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index, (y, x) in enumerate(((0, 0), (0, half_x), (half_y, 0), (half_y, half_x))):
        window = (slice(y, y + half_y), slice(x, x + half_x))
        tifffile.imwrite(root / "bf" / f"field{index + 1}.tif", data[0, 0][window])
        tifffile.imwrite(root / "dapi" / f"field{index + 1}.tif", data[1, 0][window])
    return root / "bf", root / "dapi"


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/screenshots/train_page.png").resolve()
    home = Path(tempfile.mkdtemp(prefix="labelfree-shot-"))
    os.environ["LABELFREE_HOME"] = str(home)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import labelfree_app.gui  # noqa: F401 (Qt binding work-arounds)
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.train.page import LIVE, TrainDialog

    app = QApplication.instance() or QApplication([])
    bf, dapi = write_demo_pairs(home / "data")
    dialog = TrainDialog(CoreBackend())
    dialog.resize(1400, 900)
    dialog.show()
    box = dialog.setup.pairs_box
    box.input_list.add_paths([bf])
    box.target_list.add_paths([dapi])
    dialog.setup.target_edit.setText("DNA (DAPI)")
    dialog.setup.name_edit.setText("My nuclei model")
    dialog.setup.minutes_spin.setValue(10.0)
    dialog.setup.config_changes = {"val_every": 50, "max_steps": 2000}
    state = {"started": False, "saved": False}

    def poll() -> None:
        if not state["started"] and dialog.setup.ready():
            state["started"] = dialog.start()
        elif (dialog.pages.currentIndex() == LIVE and dialog.live.step >= MIN_STEP
              and len(dialog.live.val_steps) >= MIN_VALIDATIONS and not state["saved"]):
            dialog.live._redraw(force=True)
            app.processEvents()
            out.parent.mkdir(parents=True, exist_ok=True)
            state["saved"] = dialog.grab().save(str(out))
            print(f"saved {out} at step {dialog.live.step}" if state["saved"] else f"could not write {out}")
            dialog.shut_down()
            app.quit()
        elif dialog.setup.pairs_box.problem and not dialog.setup.pairs_box.checking and not state["started"]:
            print(f"the pairs were refused: {dialog.setup.pairs_box.problem}")
            app.quit()

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(200)
    QTimer.singleShot(9 * 60 * 1000, app.quit)  # never hang
    app.exec()
    return 0 if state["saved"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

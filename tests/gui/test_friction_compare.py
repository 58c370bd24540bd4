"""Issue 28 item 12: ground truth from a separate file through a picker, and the comparison saved
(PNG of the panels + JSON of the figures). Real backend, the bundled generalist, the demo's planes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelfree_app.gui.files.file_list import LOADED
from labelfree_app.gui.settings import GuiSettings
from labelfree_app.io import read_image, write_image
from labelfree_app.paths import demo_image
from tests.gui.helpers import run_and_wait, select_model

pytest.importorskip("torch")


def test_a_picked_ground_truth_file_is_compared_and_the_comparison_saves_png_and_figures(qtbot, tmp_path):
    from labelfree_app.gui.backend import CoreBackend
    from labelfree_app.gui.main_window import MainWindow
    from labelfree_app.gui.viewer.compare import CompareDialog

    demo = read_image(demo_image())
    dapi = next(i for i, n in enumerate(demo.channel_names) if "DAPI" in n)
    phase = 1 - dapi if len(demo.channel_names) == 2 else 0
    write_image(tmp_path / "phase.tif", demo.data[phase:phase + 1], "CZYX", channel_names=["phase"])
    write_image(tmp_path / "dapi.tif", demo.data[dapi:dapi + 1], "CZYX", channel_names=["DAPI"])

    window = MainWindow(CoreBackend(), GuiSettings())
    qtbot.addWidget(window)
    window.show()
    window.open_inputs([tmp_path / "phase.tif"])
    qtbot.waitUntil(lambda: bool(window.models) and window.file_list.files[0].state == LOADED, timeout=30000)
    select_model(window, "lf-nuclei-2d")
    run_and_wait(qtbot, window, timeout=120000)
    window.results.pick_ground_truth = lambda beside: tmp_path / "dapi.tif"  # the user picks the DAPI file
    assert window.results.compare_current() is None  # it reads the file, then compares
    qtbot.waitUntil(lambda: any(isinstance(d, CompareDialog) for d in window.dialogs), timeout=30000)
    dialog = next(d for d in window.dialogs if isinstance(d, CompareDialog))
    assert "dapi.tif" in dialog.summary_label.text() and dialog.pearson_r > 0.3

    (tmp_path / "out").mkdir()
    png, figures = dialog.save_to(tmp_path / "out" / "cmp.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(figures.read_text())
    assert saved["pearson_r"] == pytest.approx(dialog.pearson_r, abs=1e-4)
    assert saved["otsu_mask_dice"] == pytest.approx(dialog.mask_dice, abs=1e-4)
    assert saved["ground_truth"] == "dapi.tif" and saved["size_px"] == list(demo.data.shape[:-3:-1])
    assert str(png) in dialog.summary_label.text()
    assert np.isfinite(saved["pearson_r"])
